"""Image tokenizer quality on fixed world renders: PSNR and scene round trip, per size.

For ``scenes_per_size`` fixed scenes at every size (scene ``i`` of size ``s`` comes from
``default_rng([TOKENIZER_SEED, size index, i])``) the render goes through the VQGAN at its
own size, ``decode(encode(render(scene)))``, and three things are measured:

- **PSNR** (dB) between render and reconstruction as 8-bit images (capped at 100 dB);
- **round trip**: the parser reads the reconstruction as the scene that was drawn,
  ``scenes_match(scene, parse(reconstruction))`` (same objects, same attributes, centres
  within 2.5% of the short side) — a tokenizer that loses a shape, a colour or a position
  cannot serve generation;
- **parser on renders**: the same check on the renders themselves, the ceiling of the round
  trip (the parser's own accuracy on clean images).

Codebook usage and code perplexity (see :mod:`liquidgen.tokenizer.evaluate`) are reported
over all sizes together.

:func:`evaluate_locality` measures what a language model over the codes needs beyond a good
reconstruction — that the codes are *local* and *canonical*, so the same content always
gets the same tokens:

- **far-code change**: remove one object from a scene and re-encode; the fraction of codes
  whose cell lies >= ``FAR_DISTANCE`` pixels from that object that change (0 for a local
  tokenizer; a GroupNorm/attention encoder changes codes everywhere);
- **re-encode stability**: the fraction of codes with ``encode(decode(codes)) == codes``;
- **flat background codes**: distinct codes in the image of one flat background colour
  (at every size); 1 is ideal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from liquidgen.errors import ConfigError
from liquidgen.evaluation.t2i import parse_generated, size_name
from liquidgen.tokenizer import VQGAN, pil_to_tensor, tensor_to_pil
from liquidgen.tokenizer.evaluate import PEAK, code_statistics, psnr_db
from liquidgen.world import BACKGROUNDS, Scene, render, sample_scene, scenes_match

DEFAULT_SCENES_PER_SIZE = 50
FAR_DISTANCE = 32.0  # pixels between a code's cell and the removed object for "far"
DEFAULT_TOKENIZER_BATCH = 8
TOKENIZER_SEED = 630_001  # seed of the fixed renders; never change it


@dataclasses.dataclass(frozen=True)
class RoundTripRecord:
    """One render's round trip through the tokenizer."""

    size: str
    scene: int  # index of the scene among those of its size
    psnr: float
    roundtrip: bool  # parse(decode(encode(render))) matches the scene
    parser: bool  # parse(render) matches the scene

    def to_dict(self) -> dict[str, Any]:
        return {"task": "tokenizer", **dataclasses.asdict(self)}


def _reads_as(scene: Scene, image: Image.Image) -> bool:
    """Whether the parser reads ``image`` as ``scene`` (an unreadable image does not)."""
    found = parse_generated(image)
    return not isinstance(found, str) and scenes_match(scene, found)


@torch.no_grad()
def evaluate_roundtrip(
    vq: VQGAN,
    sizes: Sequence[tuple[int, int]],
    *,
    scenes_per_size: int = DEFAULT_SCENES_PER_SIZE,
    batch_size: int = DEFAULT_TOKENIZER_BATCH,
    progress: bool = True,
) -> tuple[list[RoundTripRecord], dict[str, float]]:
    """Round-trip the fixed renders of every size; returns the records and the code statistics
    (``codes_used``, ``usage``, ``perplexity``) over all of them."""
    if scenes_per_size < 1:
        raise ConfigError(f"scenes per size must be >= 1, got {scenes_per_size}")
    if batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    if not sizes:
        raise ConfigError("no image size to evaluate")
    device = next(vq.parameters()).device
    was_training = vq.training
    vq.eval()
    counts = torch.zeros(vq.codebook_size, dtype=torch.long)  # (n_embed,)
    records: list[RoundTripRecord] = []
    try:
        with tqdm(
            total=len(sizes) * scenes_per_size, unit="img", desc="tokenizer", disable=not progress
        ) as bar:
            for s, (width, height) in enumerate(sizes):
                if width % vq.downsample or height % vq.downsample:
                    raise ConfigError(
                        f"size {size_name((width, height))} is not a multiple of the "
                        f"tokenizer's factor {vq.downsample}"
                    )
                scenes = [
                    sample_scene(np.random.default_rng([TOKENIZER_SEED, s, i]), width, height)
                    for i in range(scenes_per_size)
                ]
                for start in range(0, scenes_per_size, batch_size):
                    batch = scenes[start : start + batch_size]
                    renders = [render(scene) for scene in batch]
                    pixels = pil_to_tensor(renders).to(device)  # (B, 3, H, W)
                    codes = vq.encode(pixels)  # (B, h, w)
                    counts += torch.bincount(codes.flatten().cpu(), minlength=vq.codebook_size)
                    recons = tensor_to_pil(vq.decode(codes))
                    for k, (scene, image, recon) in enumerate(
                        zip(batch, renders, recons, strict=True)
                    ):
                        diff = np.asarray(image, np.float64) - np.asarray(recon, np.float64)
                        records.append(
                            RoundTripRecord(
                                size=size_name((width, height)),
                                scene=start + k,
                                psnr=psnr_db(float(np.mean(diff**2)), PEAK),
                                roundtrip=_reads_as(scene, recon),
                                parser=_reads_as(scene, image),
                            )
                        )
                    bar.update(len(batch))
    finally:
        vq.train(was_training)
    usage, perplexity = code_statistics(counts)
    stats = {"codes_used": int((counts > 0).sum()), "usage": usage, "perplexity": perplexity}
    return records, stats


def _summary(records: Sequence[RoundTripRecord]) -> dict[str, float | int]:
    psnrs = [r.psnr for r in records]
    return {
        "images": len(records),
        "psnr": float(np.mean(psnrs)),
        "psnr_min": float(np.min(psnrs)),
        "roundtrip": sum(r.roundtrip for r in records) / len(records),
        "parser": sum(r.parser for r in records) / len(records),
    }


def summarize_tokenizer(
    records: Sequence[RoundTripRecord], stats: dict[str, float], codebook_size: int
) -> dict[str, Any]:
    """Overall and per-size PSNR (mean, worst) and round-trip / parser accuracy, plus usage."""
    sizes = list(dict.fromkeys(r.size for r in records))
    return {
        **_summary(records),
        **stats,
        "codebook_size": codebook_size,
        "per_size": {s: _summary([r for r in records if r.size == s]) for s in sizes},
    }


def _far_cells(
    obj_bbox: tuple[float, float, float, float], grid: tuple[int, int], f: int
) -> torch.Tensor:
    """(h, w) bool: cells whose ``f x f`` pixel box is >= FAR_DISTANCE from the box."""
    h, w = grid
    x0, y0, x1, y1 = obj_bbox
    cx0 = torch.arange(w, dtype=torch.float64) * f  # (w,) cell left edges
    cy0 = torch.arange(h, dtype=torch.float64) * f  # (h,)
    gap_x = torch.clamp(torch.maximum(x0 - (cx0 + f), cx0 - x1), min=0)  # (w,)
    gap_y = torch.clamp(torch.maximum(y0 - (cy0 + f), cy0 - y1), min=0)  # (h,)
    return torch.hypot(gap_y[:, None], gap_x[None, :]) >= FAR_DISTANCE  # (h, w)


@torch.no_grad()
def evaluate_locality(
    vq: VQGAN,
    sizes: Sequence[tuple[int, int]],
    *,
    scenes_per_size: int = DEFAULT_SCENES_PER_SIZE,
) -> dict[str, Any]:
    """Far-code change, re-encode stability and flat-background codes (module docstring).

    Uses the fixed renders of :func:`evaluate_roundtrip` (same seeds); scenes with one
    object are skipped for the far-code change.
    """
    if scenes_per_size < 1:
        raise ConfigError(f"scenes per size must be >= 1, got {scenes_per_size}")
    device = next(vq.parameters()).device
    f = vq.downsample
    was_training = vq.training
    vq.eval()
    far_changed = far_total = stable = total = 0
    flat: dict[str, set[int]] = {name: set() for name in BACKGROUNDS}
    try:
        for s, (width, height) in enumerate(sizes):
            for i in range(scenes_per_size):
                scene = sample_scene(np.random.default_rng([TOKENIZER_SEED, s, i]), width, height)
                codes = vq.encode(pil_to_tensor(render(scene)).to(device))  # (1, h, w)
                again = vq.encode(vq.decode(codes).clamp(-1, 1))  # (1, h, w)
                stable += int((again == codes).sum())
                total += codes.numel()
                if len(scene.objects) < 2:
                    continue
                removed = Scene(width, height, scene.background, scene.objects[1:])
                codes_without = vq.encode(pil_to_tensor(render(removed)).to(device))
                far = _far_cells(scene.objects[0].bbox, tuple(codes.shape[1:]), f).to(device)
                far_changed += int(((codes != codes_without)[0] & far).sum())
                far_total += int(far.sum())
            for name, rgb in BACKGROUNDS.items():
                image = Image.new("RGB", (width, height), rgb)
                flat[name] |= set(vq.encode(pil_to_tensor(image).to(device)).flatten().tolist())
    finally:
        vq.train(was_training)
    counts = {name: len(codes) for name, codes in flat.items()}
    return {
        "far_change": far_changed / max(far_total, 1),
        "far_codes": far_total,
        "reencode": stable / max(total, 1),
        "flat_codes_max": max(counts.values()),
        "flat_codes": counts,
    }
