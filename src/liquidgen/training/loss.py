"""The training objective: next-token cross-entropy on target positions only, plus z-loss.

:class:`TargetLM` runs a transformers causal LM's decoder on a batch and applies the LM
head only at the positions that carry a loss. In Liquid's formats many positions carry
none (the prompt of a text-to-image pair, the image of a caption pair), and for small
models the head (vocabulary = text + 8192 image codes) costs as much as the decoder, so
this saves a large share of the compute. Its logits equal the model's own at those
positions (tested for Llama, Qwen2, Gemma, Gemma-2, Cohere and Granite, whose heads
soft-cap or scale their logits; the trainer checks every model once with
:meth:`TargetLM.verify`). The post-processing and the check are shared with the image
sampler (:mod:`liquidgen.model.head`).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence

import torch
from torch import nn

from liquidgen.model.head import DecoderHead, base_model
from liquidgen.training.packed_attention import supports_packed_attention, use_packed_attention


class TargetLM(nn.Module, DecoderHead):
    """Wraps a causal LM: ``(input_ids, position_ids, target_index) -> logits (N, V)``.

    ``target_index`` holds flat indices into the ``B*T`` positions whose logits are
    needed. The wrapped model is the only registered child (``self.lm``), so DDP/FSDP2
    wrap this module and every parameter has one name. The head module is called as it is
    (peft may wrap its rows); its post-processing and :meth:`verify` come from
    :class:`~liquidgen.model.head.DecoderHead`.
    """

    # float32 matmuls of different shapes round differently, far below this
    verify_rtol = 1e-4

    def __init__(self, lm: nn.Module, packed: bool = False) -> None:
        super().__init__()
        self.lm = lm
        self.init_head(base_model(lm).config)
        # packed: attention one packed document at a time (liquidgen.training.packed_attention)
        # where the model's attention is plain causal attention; else its own implementation
        self.packed = packed and supports_packed_attention(base_model(lm).config)
        if packed and not self.packed:
            warnings.warn(
                f"{self.model_name()}: sliding-window, soft-capped or chunked attention; "
                "training with its own attention implementation instead of packed",
                stacklevel=2,
            )

    def forward(
        self,
        input_ids: torch.Tensor,  # (B, T)
        position_ids: torch.Tensor,  # (B, T)
        target_index: torch.Tensor,  # (N,) flat positions in [0, B*T)
    ) -> torch.Tensor:
        base = base_model(self.lm)
        decoder = base.get_decoder()
        with use_packed_attention(decoder.config, position_ids, enabled=self.packed):
            out = decoder(input_ids=input_ids, position_ids=position_ids, use_cache=False)
        hidden = out.last_hidden_state  # (B, T, H)
        hidden = hidden.reshape(-1, hidden.shape[-1]).index_select(0, target_index)  # (N, H)
        return self.post_process(base.get_output_embeddings()(hidden))  # (N, V)

    def verify(self, probe_ids: Sequence[int]) -> None:  # type: ignore[override]
        """Refuse a model whose own logits this target-only path does not reproduce.

        Runs ``probe_ids`` through the model's forward and through :meth:`forward`; raises
        :class:`ConfigError` if they differ by more than float32 rounding.
        """
        DecoderHead.verify(self, probe_ids, next(self.lm.parameters()).device)

    def reference_logits(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self.lm(input_ids=ids, position_ids=positions, use_cache=False).logits[0]

    def own_logits(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self(ids, positions, torch.arange(ids.shape[1], device=ids.device))

    def model_name(self) -> str:
        return type(base_model(self.lm)).__name__

    def mismatch_message(self, difference: float) -> str:
        return (
            f"{self.model_name()}: the trainer's target-only LM head differs from the model's "
            f"own logits by {difference:.3g}; {self.mismatch_hint}"
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
