"""The training objective: next-token cross-entropy on target positions only, plus z-loss.

:class:`TargetLM` runs a transformers causal LM's decoder on a batch and applies the LM
head only at the positions that carry a loss. In Liquid's formats many positions carry
none (the prompt of a text-to-image pair, the image of a caption pair), and for small
models the head (vocabulary = text + 8192 image codes) costs as much as the decoder, so
this saves a large share of the compute. Its logits equal the model's own at those
positions (tested for Llama, Qwen2, Gemma, Gemma-2, Cohere and Granite, whose heads
soft-cap or scale their logits; the trainer checks every model once with
:meth:`TargetLM.verify`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import nn
from transformers import PreTrainedModel

from liquidgen.errors import ConfigError

_VERIFY_RTOL = 1e-4  # float32 matmuls of different shapes round differently, far below this


def _base_model(model: nn.Module) -> PreTrainedModel:
    """The transformers model inside an optional peft wrapper."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


class TargetLM(nn.Module):
    """Wraps a causal LM: ``(input_ids, position_ids, target_index) -> logits (N, V)``.

    ``target_index`` holds flat indices into the ``B*T`` positions whose logits are
    needed. The wrapped model is the only registered child (``self.lm``), so DDP/FSDP2
    wrap this module and every parameter has one name. Heads that post-process logits are
    reproduced when the rule is known (Gemma-2/3 final soft-capping, Cohere's
    ``logit_scale``, Granite's ``logits_scaling``); :meth:`verify` checks any model
    against its own forward once.
    """

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm
        config = _base_model(lm).config
        self.softcap: float | None = getattr(config, "final_logit_softcapping", None)
        self.multiplier: float | None = getattr(config, "logit_scale", None)  # Cohere
        self.divisor: float | None = getattr(config, "logits_scaling", None)  # Granite

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
        if self.multiplier is not None:
            logits = logits * self.multiplier
        if self.divisor is not None:
            logits = logits / self.divisor
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    @torch.no_grad()
    def verify(self, probe_ids: Sequence[int]) -> None:
        """Refuse a model whose own logits this target-only path does not reproduce.

        Runs ``probe_ids`` through the model's forward and through :meth:`forward`; raises
        :class:`ConfigError` if they differ by more than float32 rounding.
        """
        device = next(self.lm.parameters()).device
        ids = torch.tensor([list(probe_ids)], device=device)  # (1, T)
        positions = torch.arange(ids.shape[1], device=device)[None]  # (1, T)
        reference = (
            self.lm(input_ids=ids, position_ids=positions, use_cache=False).logits[0].float()
        )
        ours = self(ids, positions, torch.arange(ids.shape[1], device=device)).float()
        tolerance = _VERIFY_RTOL * max(1.0, float(reference.abs().max()))
        difference = float((reference - ours).abs().max())
        if difference > tolerance:
            raise ConfigError(
                f"{type(_base_model(self.lm)).__name__}: the trainer's target-only LM head differs "
                f"from the model's own logits by {difference:.3g}; its head post-processes logits "
                "in a way liquidgen does not reproduce"
            )


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
