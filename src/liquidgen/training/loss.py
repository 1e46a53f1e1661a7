"""The training objective: next-token cross-entropy on target positions only, plus z-loss.

:class:`TargetLM` runs a transformers causal LM's decoder on a batch and applies the LM
head only at the positions that carry a loss. In Liquid's formats many positions carry
none (the prompt of a text-to-image pair, the image of a caption pair), and for small
models the head (vocabulary = text + 8192 image codes) costs as much as the decoder, so
this saves a large share of the compute. Its logits equal the model's own at those
positions (tested for Llama, Qwen2, Gemma and Gemma-2, including Gemma-2's final logit
soft-capping).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from transformers import PreTrainedModel


def _base_model(model: nn.Module) -> PreTrainedModel:
    """The transformers model inside an optional peft wrapper."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


class TargetLM(nn.Module):
    """Wraps a causal LM: ``(input_ids, position_ids, target_index) -> logits (N, V)``.

    ``target_index`` holds flat indices into the ``B*T`` positions whose logits are
    needed. The wrapped model is the only registered child (``self.lm``), so DDP/FSDP2
    wrap this module and every parameter has one name.
    """

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm
        config = _base_model(lm).config
        self.softcap: float | None = getattr(config, "final_logit_softcapping", None)

    def forward(
        self,
        input_ids: torch.Tensor,  # (B, T)
        position_ids: torch.Tensor,  # (B, T)
        target_index: torch.Tensor,  # (N,) flat positions in [0, B*T)
    ) -> torch.Tensor:
        base = _base_model(self.lm)
        out = base.get_decoder()(input_ids=input_ids, position_ids=position_ids, use_cache=False)
        hidden = out.last_hidden_state  # (B, T, H)
        hidden = hidden.reshape(-1, hidden.shape[-1]).index_select(0, target_index)  # (N, H)
        logits = base.get_output_embeddings()(hidden)  # (N, V)
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits


@dataclasses.dataclass
class LossSums:
    """Sums over target tokens (divide by the token count for means)."""

    ce: torch.Tensor  # () summed cross-entropy, differentiable
    z: torch.Tensor  # () summed logsumexp(logits)^2, differentiable
    correct: torch.Tensor | None  # () argmax hits (no grad), when requested


def loss_sums(logits: torch.Tensor, targets: torch.Tensor, *, accuracy: bool = False) -> LossSums:
    """Cross-entropy and z-loss sums in float32 for ``logits (N, V)``, ``targets (N,)``.

    The z-loss term (PaLM) is ``logsumexp(logits)^2``; weighting it by ~1e-4 keeps the
    softmax normaliser near 1 and damps the loss spikes of large models.
    """
    logits = logits.float()
    lse = torch.logsumexp(logits, dim=-1)  # (N,)
    target_logit = logits.gather(1, targets.unsqueeze(1)).squeeze(1)  # (N,)
    correct = None
    if accuracy:
        with torch.no_grad():
            correct = (logits.argmax(dim=-1) == targets).sum()
    return LossSums(ce=(lse - target_logit).sum(), z=lse.square().sum(), correct=correct)
