"""Fréchet distance between two image sets, with a pluggable feature network.

FID (Heusel et al. 2017) fits a Gaussian to the features of each set and reports

    d^2 = |mu_1 - mu_2|^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)),

the formula of pytorch-fid and torchmetrics (means, unbiased covariances). The trace of the
matrix square root is computed as ``sum(sqrt(eig(S_1^(1/2) S_2 S_1^(1/2))))``: that matrix
is symmetric positive semi-definite with the same eigenvalues as ``S_1 S_2``, so the result
is real and stable even when a covariance is singular (fewer images than feature dimensions).

A feature network is any Python callable ``features(images: list[PIL.Image]) -> ndarray
(N, D)``, named on the command line as ``MODULE:ATTR`` (``liquidgen eval fid --features
my_package.my_module:features``) or ``path/to/file.py:ATTR``. Two weight-free ones ship here:

- :func:`color_edge_features` (the default, 128 dimensions, any image): joint colour
  histogram, a coarse colour layout and gradient orientation / magnitude histograms;
- :func:`scene_features` (24 dimensions, world images): what the world's parser reads —
  object counts per shape, colour and size, mean position and the background.

Numbers from these are comparable only with each other, not with published FIDs, which use
Inception-v3 features (see docs/evaluation.md for plugging in pytorch-fid's Inception).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from liquidgen.errors import ConfigError

FeatureFn = Callable[[list[Image.Image]], np.ndarray]

DEFAULT_ATTR = "features"  # attribute used when ``--features`` names only a module
DEFAULT_FEATURE_BATCH = 64  # images per call of the feature function
MIN_IMAGES = 2  # a covariance needs at least two samples

# color_edge_features
FEATURE_SIDE = 64  # images are resized to FEATURE_SIDE x FEATURE_SIDE (bilinear)
COLOR_LEVELS = 4  # per channel: 4^3 = 64 joint colour bins
LAYOUT_GRID = 4  # 4 x 4 cells x mean RGB = 48 layout values
ORIENTATION_BINS = 8  # unsigned gradient orientations in [0, pi), weighted by magnitude
# Sobel magnitude bin edges on [0, 1] luminance (the maximum is 4 * sqrt(2)).
MAGNITUDE_EDGES = (0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, np.inf)
LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601


def color_edge_features(images: list[Image.Image]) -> np.ndarray:
    """Weight-free global features (N, 128): colour histogram (64), colour layout (48),
    gradient orientation (8) and magnitude (8) histograms, on a 64x64 bilinear resize."""
    side = FEATURE_SIDE
    pixels = (
        np.stack(
            [np.asarray(im.convert("RGB").resize((side, side), Image.BILINEAR)) for im in images]
        ).astype(np.float64)
        / 255.0
    )  # (N, S, S, 3)
    n = len(images)
    levels = np.minimum((pixels * COLOR_LEVELS).astype(np.int64), COLOR_LEVELS - 1)
    bins = (levels[..., 0] * COLOR_LEVELS + levels[..., 1]) * COLOR_LEVELS + levels[..., 2]
    colour = np.stack([np.bincount(b.ravel(), minlength=COLOR_LEVELS**3) for b in bins]) / (
        side * side
    )  # (N, 64)
    cell = side // LAYOUT_GRID
    layout = pixels.reshape(n, LAYOUT_GRID, cell, LAYOUT_GRID, cell, 3).mean(axis=(2, 4))
    luma = pixels @ LUMA  # (N, S, S)
    gx = ndimage.sobel(luma, axis=2)
    gy = ndimage.sobel(luma, axis=1)
    magnitude = np.hypot(gx, gy).reshape(n, -1)  # (N, S*S)
    angle = np.mod(np.arctan2(gy, gx), np.pi).reshape(n, -1)
    which = np.minimum((angle / np.pi * ORIENTATION_BINS).astype(np.int64), ORIENTATION_BINS - 1)
    orientation = np.stack(
        [
            np.bincount(w, weights=m, minlength=ORIENTATION_BINS)
            for w, m in zip(which, magnitude, strict=True)
        ]
    ) / (side * side)  # (N, 8)
    strength = np.stack([np.histogram(m, bins=MAGNITUDE_EDGES)[0] for m in magnitude]) / (
        side * side
    )  # (N, 8)
    return np.concatenate([colour, layout.reshape(n, -1), orientation, strength], axis=1)


def scene_features(images: list[Image.Image]) -> np.ndarray:
    """World features (N, 24) from the parser: objects per shape (6), colour (8) and size (2),
    object count, mean centre as fractions of width and height (0.5 without objects),
    background one-hot (5; all zero when the parser cannot read the image)."""
    from liquidgen.evaluation.t2i import parse_generated
    from liquidgen.world import BACKGROUNDS, COLORS, SHAPES, SIZES

    rows = []
    for image in images:
        scene = parse_generated(image)
        objects = () if isinstance(scene, str) else scene.objects
        background = None if isinstance(scene, str) else scene.background
        row = [sum(o.shape == s for o in objects) for s in SHAPES]
        row += [sum(o.color == c for o in objects) for c in COLORS]
        row += [sum(o.size == z for o in objects) for z in SIZES]
        row.append(len(objects))
        row.append(np.mean([o.cx / image.width for o in objects]) if objects else 0.5)
        row.append(np.mean([o.cy / image.height for o in objects]) if objects else 0.5)
        row += [float(background == b) for b in BACKGROUNDS]
        rows.append(row)
    return np.asarray(rows, dtype=np.float64)


def load_feature_fn(spec: str) -> FeatureFn:
    """Resolve ``MODULE:ATTR``, ``file.py:ATTR`` or ``MODULE`` (attribute ``features``)."""
    target, _, attr = spec.partition(":")
    attr = attr or DEFAULT_ATTR
    if not target:
        raise ConfigError(f"--features {spec!r}: expected MODULE:ATTR")
    if target.endswith(".py") or os.sep in target:
        path = Path(target)
        if not path.is_file():
            raise ConfigError(f"--features {spec!r}: no such file {path}")
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        if module_spec is None or module_spec.loader is None:
            raise ConfigError(f"--features {spec!r}: cannot load {path} as Python")
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as e:
            raise ConfigError(f"--features {spec!r}: no module named {e.name!r}") from e
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"--features {spec!r}: {target} has no callable {attr!r}")
    return fn


def compute_features(
    fn: FeatureFn, images: Sequence[Image.Image], *, batch_size: int = DEFAULT_FEATURE_BATCH
) -> np.ndarray:
    """``fn`` over ``images`` in batches -> float64 (N, D), checked for shape and finiteness."""
    if batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    parts = []
    for start in range(0, len(images), batch_size):
        chunk = list(images[start : start + batch_size])
        out = np.asarray(fn(chunk), dtype=np.float64)
        if out.ndim != 2 or out.shape[0] != len(chunk):
            raise ConfigError(
                f"the feature function returned shape {out.shape} for {len(chunk)} images; "
                "expected (N, D)"
            )
        if parts and out.shape[1] != parts[0].shape[1]:
            raise ConfigError(
                f"the feature function returned {out.shape[1]} dimensions, then {parts[0].shape[1]}"
            )
        if not np.isfinite(out).all():
            raise ConfigError("the feature function returned NaN or infinite values")
        parts.append(out)
    if not parts:
        raise ConfigError("no images to compute features of")
    return np.concatenate(parts)


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), as pytorch-fid fits them."""
    if features.ndim != 2 or features.shape[0] < MIN_IMAGES:
        raise ConfigError(
            f"FID needs at least {MIN_IMAGES} images per set, got {features.shape[0]}"
        )
    return features.mean(axis=0), np.atleast_2d(np.cov(features, rowvar=False))


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (negative rounding clipped)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """``|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))`` (>= 0; rounding below 0 gives 0)."""
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ConfigError(
            f"feature statistics differ in shape: {mu1.shape}/{sigma1.shape} "
            f"vs {mu2.shape}/{sigma2.shape}"
        )
    root = _psd_sqrt(sigma1)
    middle = root @ sigma2 @ root  # (D, D), same eigenvalues as S1 S2
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())
    diff = mu1 - mu2
    distance = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)
    return max(distance, 0.0)


def fid(
    real: Sequence[Image.Image],
    fake: Sequence[Image.Image],
    features: FeatureFn = color_edge_features,
    *,
    batch_size: int = DEFAULT_FEATURE_BATCH,
) -> float:
    """Fréchet distance between the feature distributions of two image sets."""
    stats_real = gaussian_statistics(compute_features(features, real, batch_size=batch_size))
    stats_fake = gaussian_statistics(compute_features(features, fake, batch_size=batch_size))
    return frechet_distance(*stats_real, *stats_fake)
