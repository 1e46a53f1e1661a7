"""The tokenizer trainer's images: a folder decoded once, or world scenes rendered at start.

Folder images are resized and centre-cropped to the configured size closest to their aspect
ratio; world scene ``i`` has size ``sizes[i % len(sizes)]`` and depends only on
``(data.seed, stream, i)``. Everything is kept in memory as uint8 in an :class:`ImageBank`,
which draws each batch from one size (optionally as random crops, ``data.crop``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from liquidgen.errors import ConfigError
from liquidgen.tokenizer.evaluate import find_images, to_uint8_tensor
from liquidgen.tokenizer.images import load_image, resize_center_crop
from liquidgen.tokenizer.training.config import (
    _STREAM_WORLD_EVAL,
    _STREAM_WORLD_TRAIN,
    VQDataConfig,
)


class ImageBank:
    """Training images in memory as uint8, one tensor (N, 3, H, W) per (width, height)."""

    def __init__(self, buckets: dict[tuple[int, int], torch.Tensor]) -> None:
        self.buckets = {size: t for size, t in buckets.items() if len(t)}
        if not self.buckets:
            raise ConfigError("no training images")
        self._sizes = sorted(self.buckets)
        counts = np.array([len(self.buckets[s]) for s in self._sizes], dtype=np.float64)
        self._weights = counts / counts.sum()

    def __len__(self) -> int:
        return sum(len(t) for t in self.buckets.values())

    def sample(
        self, rng: np.random.Generator, batch_size: int, crop: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """A batch of one size: uint8 (B, 3, H, W); a bucket is drawn in proportion to its size.

        With ``crop`` = (width, height), each image is cut at its own random offset.
        """
        bucket = self.buckets[self._sizes[rng.choice(len(self._sizes), p=self._weights)]]
        n = len(bucket)
        idx = rng.choice(n, size=batch_size, replace=n < batch_size)
        batch = bucket[torch.from_numpy(np.sort(idx))]  # (B, 3, H, W)
        if crop is None:
            return batch
        cw, ch = crop
        _, _, h, w = batch.shape
        xs = rng.integers(0, w - cw + 1, size=batch_size)
        ys = rng.integers(0, h - ch + 1, size=batch_size)
        return torch.stack(
            [img[:, y : y + ch, x : x + cw] for img, x, y in zip(batch, xs, ys, strict=True)]
        )


def _stack_by_size(images: list[torch.Tensor]) -> dict[tuple[int, int], torch.Tensor]:
    groups: dict[tuple[int, int], list[torch.Tensor]] = {}
    for img in images:
        groups.setdefault((img.shape[2], img.shape[1]), []).append(img)
    return {size: torch.stack(g) for size, g in groups.items()}


def render_world(
    sizes: Sequence[tuple[int, int]],
    count: int,
    seed: int,
    stream: int,
    *,
    lattice: int | None = None,
    lattice_fraction: float = 0.5,
) -> list[torch.Tensor]:
    """``count`` world scenes as uint8 (3, H, W); scene ``i`` has size ``sizes[i % len(sizes)]``
    and, with ``lattice``, its centres on that lattice with probability ``lattice_fraction``."""
    # Imported here: the world package is an optional data source of this trainer.
    from liquidgen.world.render import render
    from liquidgen.world.scene import sample_scene

    out = []
    for i in range(count):
        w, h = sizes[i % len(sizes)]
        rng = np.random.default_rng([seed, stream, i])
        on_lattice = lattice if lattice and rng.random() < lattice_fraction else None
        scene = sample_scene(rng, w, h, lattice=on_lattice)
        out.append(to_uint8_tensor(render(scene)))
    return out


def nearest_size(width: int, height: int, sizes: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The configured size whose aspect ratio is closest (in log scale) to ``width/height``."""
    ratio = math.log(width / height)
    return min(sizes, key=lambda s: abs(math.log(s[0] / s[1]) - ratio))


def load_folder(
    path: str | Path, sizes: Sequence[tuple[int, int]], *, progress: bool = False
) -> list[torch.Tensor]:
    """Decode every image under ``path`` once: resized + centre-cropped to its nearest size.

    Raises :class:`~liquidgen.errors.ImageReadError` naming the first unreadable file.
    """
    files = find_images([path])
    out = []
    for file in tqdm(files, desc=f"loading {path}", disable=not progress, leave=False):
        img = load_image(file)
        out.append(to_uint8_tensor(resize_center_crop(img, nearest_size(*img.size, sizes))))
    return out


def build_data(
    cfg: VQDataConfig, *, progress: bool = False
) -> tuple[ImageBank, list[torch.Tensor]]:
    """Training bank and held-out images (uint8 (3, H, W) each; may be empty)."""
    if cfg.source == "world":
        lattice = {"lattice": cfg.lattice, "lattice_fraction": cfg.lattice_fraction}
        train = render_world(cfg.sizes, cfg.num_images, cfg.seed, _STREAM_WORLD_TRAIN, **lattice)
        held_out = render_world(cfg.sizes, cfg.eval_images, cfg.seed, _STREAM_WORLD_EVAL, **lattice)
    else:
        assert cfg.path is not None  # checked by VQDataConfig
        train = load_folder(cfg.path, cfg.sizes, progress=progress)
        held_out = load_folder(cfg.eval_path, cfg.sizes, progress=progress) if cfg.eval_path else []
    return ImageBank(_stack_by_size(train)), held_out
