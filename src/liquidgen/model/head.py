"""A causal LM as "decoder + (sliced) output head", with the model's own logit post-processing.

Both the trainer (:class:`liquidgen.training.loss.TargetLM`: the head only at target
positions) and the image sampler (:class:`liquidgen.inference.decoding.ImageRowLogits`:
only the image rows of the head) run the model's decoder and apply the LM head themselves.
:class:`DecoderHead` is what they share:

- the element-wise post-processing some heads apply to their logits — Gemma-2/3 final-logit
  soft-capping, Cohere's ``logit_scale``, Granite's ``logits_scaling`` — which commutes
  with slicing rows or positions, so the numbers equal the model's own;
- :meth:`DecoderHead.verify`, one short extra forward that compares the path with the
  model's own logits and refuses (``ConfigError``) a model whose head does something else.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from liquidgen.errors import ConfigError


def base_model(model: nn.Module) -> PreTrainedModel:
    """The transformers model inside an optional peft wrapper."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


class DecoderHead:
    """Mixin: the model's logit post-processing and the check of a decoder + head path.

    Subclasses call :meth:`init_head` with the model's config, compute logits through
    :meth:`project` (or the head module then :meth:`post_process`) and define
    :meth:`reference_logits` / :meth:`own_logits` for :meth:`verify`.
    """

    softcap: float | None  # Gemma-2/3 final-logit soft-capping
    multiplier: float | None  # Cohere's logit_scale
    divisor: float | None  # Granite's logits_scaling
    verify_rtol: float = 1e-4  # of the largest logit
    mismatch_hint: str = "its head post-processes logits in a way liquidgen does not reproduce"

    def init_head(self, config: PretrainedConfig) -> None:
        self.softcap = getattr(config, "final_logit_softcapping", None)
        self.multiplier = getattr(config, "logit_scale", None)
        self.divisor = getattr(config, "logits_scaling", None)

    def post_process(self, logits: torch.Tensor) -> torch.Tensor:
        """The head's element-wise post-processing, in the order transformers applies it."""
        if self.multiplier is not None:
            logits = logits * self.multiplier
        if self.divisor is not None:
            logits = logits / self.divisor
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    def project(
        self, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        """Hidden states ``(N, H)`` through head rows ``weight (K, H)`` -> logits ``(N, K)``."""
        return self.post_process(F.linear(hidden, weight, bias))

    # -- the check -----------------------------------------------------------------------
    def reference_logits(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """The model's own logits of ``ids (1, T)``, restricted like :meth:`own_logits`."""
        raise NotImplementedError

    def own_logits(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """This path's logits of ``ids (1, T)``."""
        raise NotImplementedError

    def tolerance_rtol(self) -> float:
        return self.verify_rtol

    def model_name(self) -> str:
        raise NotImplementedError

    def verify(self, probe_ids: Sequence[int], device: torch.device) -> None:
        """Refuse a model whose own logits this path does not reproduce (one short forward).

        Raises :class:`ConfigError` when the two differ by more than :meth:`tolerance_rtol`
        times the largest logit (at least 1).
        """
        ids = torch.tensor([list(probe_ids)], device=device)  # (1, T)
        positions = torch.arange(ids.shape[1], device=device)[None]  # (1, T)
        with torch.no_grad():
            reference = self.reference_logits(ids, positions).float()
            ours = self.own_logits(ids, positions).float()
        tolerance = self.tolerance_rtol() * max(1.0, float(reference.abs().max()))
        difference = float((reference - ours).abs().max())
        if difference > tolerance:
            raise ConfigError(self.mismatch_message(difference))

    def mismatch_message(self, difference: float) -> str:
        return (
            f"{self.model_name()}: the decoder + head path differs from the model's own logits "
            f"by {difference:.3g}; {self.mismatch_hint}"
        )
