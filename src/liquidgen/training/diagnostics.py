"""Does the model read its prompt? Text-to-image validation loss split by where it goes.

The mean T2I loss hides the one thing a small unified model struggles to learn: using the
prompt. This diagnostic scores the *same* validation images twice — once with their prompt
(conditional) and once with ``<unconditional>`` in its place (CFG's null prompt) — and
splits each image's code loss into **background cells** (codes a flat background image
gets: nothing a prompt could explain beyond the colour) and **object cells** (the rest).
A model that reads its prompt has a conditional object loss clearly below the
unconditional one; equal losses mean the text explains nothing.

Object cells are split once more: **entry cells**, the object cells that follow a
background cell in raster order (where an object, or one of its rows, begins). With local,
canonical codes the rest of an object is predictable from the cells above and beside it;
*which* object begins is what only the prompt can tell, so the prompt's gain concentrates
on entry cells and is diluted in the object mean.

Metrics (``t2i-diag/...``, in nats per image token): ``cond/object``, ``uncond/object``,
``cond/entry``, ``uncond/entry``, ``cond/background``, ``uncond/background``,
``object_gain`` = ``uncond/object - cond/object`` and ``entry_gain`` likewise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch

from liquidgen.training.mixture import IGNORE_INDEX, MicroBatch
from liquidgen.vocab import VocabLayout

# forward(batch) -> (per-target-token cross-entropy (N,), targets (N,)), in target order
TokenLosses = Callable[[MicroBatch], tuple[torch.Tensor, torch.Tensor]]
PARTS = ("object", "entry", "background")


@torch.no_grad()
def background_codes(vq: torch.nn.Module, sizes: Iterable[tuple[int, int]]) -> set[int]:
    """Every code the tokenizer gives a flat world background, at each ``(width, height)``."""
    from PIL import Image

    from liquidgen.tokenizer import pil_to_tensor
    from liquidgen.world import BACKGROUNDS

    device = next(vq.parameters()).device
    codes: set[int] = set()
    for width, height in sizes:
        images = [Image.new("RGB", (width, height), rgb) for rgb in BACKGROUNDS.values()]
        codes |= set(vq.encode(pil_to_tensor(images).to(device)).flatten().tolist())
    return codes


@torch.no_grad()
def position_losses(
    token_losses: TokenLosses,
    sets: dict[str, Sequence[MicroBatch]],
    layout: VocabLayout,
    background: set[int],
) -> dict[str, torch.Tensor]:
    """Summed loss and token count per ``"{cond|uncond}/{object|entry|background}"``: a (2,)
    float64 tensor ``[loss sum, tokens]`` each (all-reduce them before dividing)."""
    bg_ids = torch.tensor(sorted(layout.image_offset + c for c in background), dtype=torch.long)
    out: dict[str, torch.Tensor] = {}
    for condition, batches in sets.items():
        for part in PARTS:
            out[f"{condition}/{part}"] = torch.zeros(2, dtype=torch.float64)
        for batch in batches:
            if not (batch.targets != IGNORE_INDEX).any():
                continue
            ce, targets = token_losses(batch)
            ce, targets = ce.double().cpu(), targets.cpu()
            image = (targets >= layout.image_offset) & (targets < layout.image_end)
            is_bg = torch.isin(targets, bg_ids) & image
            is_object = image & ~is_bg  # (N,)
            after_object = torch.zeros_like(is_object)
            after_object[1:] = is_object[:-1]  # targets run in order, one example after another
            parts = (
                ("object", is_object),
                ("entry", is_object & ~after_object),
                ("background", is_bg),
            )
            for part, mask in parts:
                out[f"{condition}/{part}"] += torch.stack([ce[mask].sum(), mask.sum().double()])
    return out


def summarize(sums: dict[str, torch.Tensor]) -> dict[str, float]:
    """Mean losses per key and the prompt's gain on object cells."""
    metrics = {f"t2i-diag/{key}": float(v[0] / v[1]) for key, v in sums.items() if float(v[1]) > 0}
    for part in ("object", "entry"):
        cond, uncond = metrics.get(f"t2i-diag/cond/{part}"), metrics.get(f"t2i-diag/uncond/{part}")
        if cond is not None and uncond is not None:
            metrics[f"t2i-diag/{part}_gain"] = uncond - cond
    return metrics
