"""Scoring text: summed next-token negative log-likelihood of id sequences.

:func:`sequence_loss` is what :meth:`Pipeline.sequence_loss
<liquidgen.inference.pipeline.Pipeline.sequence_loss>`, ``text_loss`` and ``perplexity``
run, and what ``liquidgen eval text`` sums over a corpus.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch
from transformers import PreTrainedModel

from liquidgen.errors import ConfigError

PERPLEXITY_BATCH = 8  # texts per forward in Pipeline.text_loss


@dataclasses.dataclass(frozen=True)
class TextLoss:
    """Summed next-token negative log-likelihood of texts and the number of predicted tokens."""

    nll: float  # nats, summed over every predicted token
    tokens: int

    @property
    def perplexity(self) -> float:
        return math.exp(self.nll / self.tokens)


def sequence_loss(
    model: PreTrainedModel,
    sequences: Sequence[Sequence[int]],
    *,
    batch_size: int = PERPLEXITY_BATCH,
) -> TextLoss:
    """Summed negative log-likelihood of every token after the first of each id sequence,
    ``batch_size`` sequences per forward (right-padded)."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    total_nll, total_tokens = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(sequences), batch_size):
            batch = sequences[start : start + batch_size]
            length = max(len(s) for s in batch)
            ids = torch.zeros((len(batch), length), dtype=torch.long)
            mask = torch.zeros((len(batch), length), dtype=torch.long)
            for i, s in enumerate(batch):  # right padding: positions of real tokens unchanged
                ids[i, : len(s)] = torch.tensor(s)
                mask[i, : len(s)] = 1
            ids, mask = ids.to(model.device), mask.to(model.device)
            logits = model(input_ids=ids, attention_mask=mask).logits  # (B, T, V)
            logprobs = logits[:, :-1].float().log_softmax(dim=-1)  # (B, T-1, V)
            target = ids[:, 1:]  # (B, T-1)
            nll = -logprobs.gather(-1, target[..., None])[..., 0]  # (B, T-1)
            keep = mask[:, 1:].bool()
            total_nll += float(nll[keep].sum())
            total_tokens += int(keep.sum())
    return TextLoss(nll=total_nll, tokens=total_tokens)
