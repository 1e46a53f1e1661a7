"""Validation of a training run: fixed held-out micro-batches per modality and the
prompt-reading diagnostic (:mod:`liquidgen.training.diagnostics`).

:func:`build_validation` cuts every source's validation split into this rank's
micro-batches once (the same examples at every evaluation) and, for the first
text-to-image source, conditional and unconditional copies of the same examples;
:func:`validation_metrics` runs them and reduces over ranks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from liquidgen.checkpoint import VQ_LIQUIDGEN_FILES, VQ_SUBDIR
from liquidgen.training import diagnostics
from liquidgen.training import dist as D
from liquidgen.training.config import TrainConfig
from liquidgen.training.dist import DistInfo
from liquidgen.training.loss import LossSums
from liquidgen.training.mixture import IGNORE_INDEX, MicroBatch, validation_batches
from liquidgen.training.setup import formatted_source
from liquidgen.training.sources import FormattedSource
from liquidgen.vocab import VocabLayout


@dataclasses.dataclass
class ValidationData:
    """This rank's fixed validation micro-batches."""

    sets: dict[str, list[list[MicroBatch]]]  # modality -> one batch list per source
    diag: dict[str, list[MicroBatch]]  # "cond" / "uncond" copies of the diagnostic examples
    background: set[int]  # codes of flat backgrounds (from the model's vq/), for the diagnostic


def _batches(
    config: TrainConfig, source: FormattedSource, info: DistInfo, pad_id: int
) -> list[MicroBatch]:
    data = config.data
    return validation_batches(
        source,
        count=data.val_examples,
        seq_len=data.seq_len,
        micro_batch=config.micro_batch,
        rank=info.rank,
        world_size=info.world_size,
        pad_id=pad_id,
        seed=data.seed,
    )


def build_validation(
    config: TrainConfig, tokenizer: Any, layout: VocabLayout, info: DistInfo, model_source: Path
) -> ValidationData:
    """The validation sets of every source with a ``val`` split, and the diagnostic sets."""
    data = config.data
    sets: dict[str, list[list[MicroBatch]]] = {}
    for s in data.sources:
        if s.val is None or data.val_examples == 0:
            continue
        source = formatted_source(data, s.name, s.modality, s.val, tokenizer, layout)
        sets.setdefault(s.modality, []).append(_batches(config, source, info, layout.padding_id))
    diag, background = _diagnostic_sets(config, tokenizer, layout, info, model_source)
    return ValidationData(sets, diag, background)


def _diagnostic_sets(
    config: TrainConfig, tokenizer: Any, layout: VocabLayout, info: DistInfo, model_source: Path
) -> tuple[dict[str, list[MicroBatch]], set[int]]:
    """The prompt-reading diagnostic on the first T2I source's validation images: conditional
    and unconditional copies of the same examples, and the flat-background codes."""
    data = config.data
    diag: dict[str, list[MicroBatch]] = {}
    source = next((s for s in data.sources if s.modality == "t2i" and s.val is not None), None)
    if source is None or data.val_examples == 0:
        return diag, set()
    sizes = set()
    for condition, dropout in (("cond", 0.0), ("uncond", 1.0)):
        formatted = formatted_source(
            data, source.name, source.modality, source.val, tokenizer, layout, cfg_dropout=dropout
        )
        diag[condition] = _batches(config, formatted, info, layout.padding_id)
        f = layout.downsample
        for i in range(min(data.val_examples, len(formatted.dataset))):
            h, w = formatted.dataset[i].codes.shape
            sizes.add((w * f, h * f))
    vq_dir = model_source / VQ_SUBDIR
    if not (vq_dir / VQ_LIQUIDGEN_FILES[0]).is_file():
        return diag, set()
    from liquidgen.tokenizer import VQGAN

    vq = VQGAN.from_pretrained(vq_dir).eval()
    return diag, diagnostics.background_codes(vq, sorted(sizes))


@torch.no_grad()
def validation_metrics(
    model: nn.Module,
    data: ValidationData,
    *,
    forward_sums: Callable[[MicroBatch, bool], LossSums],
    token_losses: Callable[[MicroBatch], tuple[torch.Tensor, torch.Tensor]],
    layout: VocabLayout,
    info: DistInfo,
) -> dict[str, float]:
    """Per-modality mean loss and next-token accuracy over the fixed validation examples
    (and the diagnostic's metrics), summed over ranks. ``model`` (the wrapped one) is in
    eval mode for the duration."""
    model.eval()
    modalities = sorted(data.sets)
    totals = torch.zeros(len(modalities), 3, dtype=torch.float64, device=info.device)
    # rows: modalities; columns: summed loss, correct predictions, target tokens
    for m, modality in enumerate(modalities):
        for batches in data.sets[modality]:
            for batch in batches:
                out = forward_sums(batch, True)
                count = (batch.targets != IGNORE_INDEX).sum().to(info.device)
                totals[m] += torch.stack([out.ce, out.correct, count]).double()
    D.all_reduce_sum(totals, info)
    model.train()
    metrics = {}
    for m, modality in enumerate(modalities):
        ce, correct, count = totals[m].tolist()
        metrics[f"{modality}/loss"] = ce / max(count, 1)
        metrics[f"{modality}/acc"] = correct / max(count, 1)
        metrics[f"{modality}/tokens"] = int(count)
    if data.diag:
        model.eval()
        sums = diagnostics.position_losses(token_losses, data.diag, layout, data.background)
        model.train()
        sums = {k: v.to(info.device) for k, v in sums.items()}
        for value in sums.values():
            D.all_reduce_sum(value, info)
        metrics.update(diagnostics.summarize(sums))
    return metrics
