"""Recover a :class:`~liquidgen.world.scene.Scene` from pixels with classical image processing.

No learned weights: the parser knows the world's palette and shape geometry and fits them.

1. **Background** — the median colour of the one-pixel image border (objects keep a margin).
2. **Coverage** — every pixel is explained as a mix of the background and one palette colour:
   its offset from the background is projected on each line background -> colour, the line
   with the smallest residual wins, and the projection is the pixel's coverage ``alpha``.
   This reads anti-aliased, blurred and colour-shifted edges the way they were made.
3. **Objects** — connected components of ``alpha > 0.5``; each one's region is grown by a
   few pixels (never into another object) so that blurred edges keep their mass. The
   object's colour is the median of its core pixels, named by the nearest palette colour,
   and its coverage is re-measured against that exact colour. Components with fewer
   pixels than :data:`STRAY_BLOB_FRACTION` of the smallest possible object are stray
   blobs and are dropped.
4. **Shape, size, centre** — blur, noise and colour shifts preserve a coverage map's
   *mass* and *centroid*. For each candidate shape the parser derives the box those
   moments imply (side from mass / fill fraction, centre from centroid minus the shape's
   centroid offset), draws the shape there with anti-aliasing, blurs the drawing by each
   of :data:`BLUR_HYPOTHESES` and keeps the shape whose drawing overlaps the measured
   coverage best (soft IoU); near-ties are refitted at a few box scales. The size is the
   nearer of the two sizes on a log scale (side / short side).

Edge cases (documented behaviour, tested): a blank image and any image whose short side
is below :data:`MIN_PARSE_SIDE` (e.g. one pixel) parse to a scene with no objects;
PIL images of any mode are converted to RGB (transparency is composited on white, as in
Liquid's pre-processing; a grayscale image keeps no colour, so only dark objects stand out
in it); numpy arrays must be ``uint8`` of shape ``(H, W)``,
``(H, W, 3)`` or ``(H, W, 4)`` — anything else raises :class:`~liquidgen.errors.ShapeError`
or :class:`~liquidgen.errors.ImageReadError`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.segmentation import expand_labels

from liquidgen.errors import ConfigError, ImageReadError, ShapeError
from liquidgen.utils.images import open_image
from liquidgen.utils.limits import check_image_pixels
from liquidgen.world import shapes
from liquidgen.world.scene import (
    BACKGROUNDS,
    COLORS,
    COORD_DECIMALS,
    RGB,
    SIZES,
    Scene,
    WorldObject,
)

MIN_PARSE_SIDE = 8  # pixels; smaller images cannot hold an object and parse as empty
COVERAGE_THRESHOLD = 0.5  # a pixel belongs to an object when at least half covered
CORE_COVERAGE = 0.8  # pixels this covered give the object's colour
REGION_GROWTH = 0.03  # fraction of S by which a component's region grows to catch blur
TEMPLATE_SUPERSAMPLE = 4
# Gaussian blurs (px) a template may be seen through: from a sharp render to a VQ decoder's.
BLUR_HYPOTHESES = (0.0, 0.6, 1.0, 1.4, 1.8)
SCALE_HYPOTHESES = (0.9, 1.0, 1.1)  # box scales tried when two shapes fit almost equally
REFINE_MARGIN = 0.05  # soft-IoU gap below which the best two shapes are refitted
TRANSPARENT_FILL = (255, 255, 255)  # RGBA is composited on white, as in Liquid's preprocessing


@dataclasses.dataclass(frozen=True)
class ParseVocabulary:
    """What the parser may find: colour and shape names, sizes and background tints.

    ``shapes`` maps each shape name to a geometry in :mod:`liquidgen.world.shapes` (easy-vqa's
    "rectangle" is the square geometry stretched to its box). With ``square_boxes`` objects
    are assumed to sit in square boxes (the world's rule); otherwise the box keeps the
    aspect ratio of the component's pixels.
    """

    colors: Mapping[str, RGB]
    shapes: Mapping[str, str]
    sizes: Mapping[str, float]
    backgrounds: Mapping[str, RGB]
    min_object_area: float  # fraction of S^2: components with fewer pixels are stray blobs
    square_boxes: bool = True

    def __post_init__(self) -> None:
        unknown = set(self.shapes.values()) - set(shapes.GEOMETRIES)
        if unknown:
            raise ConfigError(f"unknown geometries {sorted(unknown)}")


def _smallest_object_area() -> float:
    """Area of the world's smallest possible object, as a fraction of S^2."""
    smallest = min(SIZES.values())
    return min(shapes.fill_fraction(g) for g in shapes.GEOMETRIES) * smallest**2


STRAY_BLOB_FRACTION = 0.35  # components lighter than this share of the smallest object are noise

WORLD_VOCABULARY = ParseVocabulary(
    colors=COLORS,
    shapes={g: g for g in shapes.GEOMETRIES},
    sizes=SIZES,
    backgrounds=BACKGROUNDS,
    min_object_area=STRAY_BLOB_FRACTION * _smallest_object_area(),
)


# ---- input -----------------------------------------------------------------------------------
# The one image loader (:func:`liquidgen.utils.images.open_image`): a file decoded fully, in
# its own mode; ImageReadError if missing, unreadable, or above the decoding limit.
load_image = open_image


def to_rgb_array(image: Image.Image | np.ndarray) -> np.ndarray:
    """Any PIL image or uint8 array -> float32 RGB array of shape ``(H, W, 3)`` in [0, 255]."""
    if isinstance(image, Image.Image):
        if image.mode in ("RGBA", "LA", "PA") or (
            image.mode == "P" and "transparency" in image.info
        ):
            rgba = image.convert("RGBA")
            base = Image.new("RGBA", rgba.size, (*TRANSPARENT_FILL, 255))
            image = Image.alpha_composite(base, rgba)
        try:
            rgb = image.convert("RGB")
        except (ValueError, OSError) as e:
            raise ImageReadError(f"cannot convert image mode {image.mode!r} to RGB: {e}") from None
        return np.asarray(rgb, dtype=np.float32)
    if not isinstance(image, np.ndarray):
        raise ImageReadError(f"expected a PIL image or a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ImageReadError(f"image arrays must be uint8, got {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise ShapeError(f"image array must be (H, W), (H, W, 3) or (H, W, 4), got {image.shape}")
    if image.shape[-1] == 4:
        return to_rgb_array(Image.fromarray(image, mode="RGBA"))
    return image.astype(np.float32)


# ---- parsing -----------------------------------------------------------------------------------
def _nearest(color: np.ndarray, palette: Mapping[str, RGB]) -> str:
    names = list(palette)
    dist = np.linalg.norm(np.asarray([palette[n] for n in names], np.float32) - color, axis=-1)
    return names[int(np.argmin(dist))]


def _coverage_against(offsets: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Projection of pixel offsets ``(..., 3)`` on ``direction`` in units of its length."""
    return offsets @ direction / max(float(direction @ direction), 1e-6)


def _palette_coverage(offsets: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Coverage by the best-explaining palette colour. offsets (H, W, 3), directions (K, 3).

    The residual of projecting ``p`` on ``v`` is ``|p|^2 - (p.v)^2 / |v|^2``, so the best line
    is the one with the largest ``(p.v)^2 / |v|^2`` among those the pixel lies towards.
    """
    norms = np.maximum((directions**2).sum(-1), 1e-6)  # (K,)
    dots = offsets @ directions.T  # (H, W, K)
    explained = np.where(dots > 0, dots * dots / norms, -1.0)  # (H, W, K)
    best = np.argmax(explained, axis=-1)  # (H, W)
    return np.take_along_axis(dots, best[..., None], axis=-1)[..., 0] / norms[best]  # (H, W)


@functools.cache
def _gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian taps out to 3 sigma."""
    radius = max(1, math.ceil(3 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return (taps / taps.sum()).astype(np.float32)


def _match(template: np.ndarray, observed: np.ndarray) -> float:
    """Best soft IoU of ``template`` seen through any of the blur hypotheses."""
    best = -1.0
    for sigma in BLUR_HYPOTHESES:
        blurred = template
        if sigma > 0:
            kernel = _gaussian_kernel(sigma)
            blurred = ndimage.correlate1d(template, kernel, axis=0, mode="constant")
            blurred = ndimage.correlate1d(blurred, kernel, axis=1, mode="constant")
        iou = float(np.minimum(blurred, observed).sum() / np.maximum(blurred, observed).sum())
        best = max(best, iou)
    return best


def _fit_object(
    alpha: np.ndarray, aspect: float, vocab: ParseVocabulary
) -> tuple[str, tuple[float, float, float, float]]:
    """Choose the shape whose moment-fitted, blurred drawing best overlaps ``alpha``.

    ``alpha`` (h, w) is the object's coverage in its crop; ``aspect`` the box's width/height.
    When the two best shapes score within :data:`REFINE_MARGIN`, both are refitted at
    the box scales in :data:`SCALE_HYPOTHESES` (noise and ragged edges bias the mass).
    Returns the shape name and its box ``(x0, y0, x1, y1)`` in crop pixel coordinates.
    """
    h, w = alpha.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5  # pixel centres, (h, w)
    # Moments of the clipped coverage: noise can push raw coverage below 0 (even its sum).
    observed = np.clip(alpha, 0.0, 1.0)
    mass = max(float(observed.sum()), 1e-6)
    mx, my = float((observed * xs).sum()) / mass, float((observed * ys).sum()) / mass

    def box_for(geometry: str, scale: float) -> tuple[float, float, float, float]:
        area = mass / shapes.fill_fraction(geometry) * scale**2
        bw, bh = math.sqrt(area * aspect), math.sqrt(area / aspect)
        cy = my - shapes.centroid_offset(geometry) * bh
        return (mx - bw / 2, cy - bh / 2, mx + bw / 2, cy + bh / 2)

    def fit(name: str, scale: float) -> float:
        geometry = vocab.shapes[name]
        template = shapes.coverage(geometry, box_for(geometry, scale), (h, w), TEMPLATE_SUPERSAMPLE)
        return _match(template, observed)

    fits = sorted(((fit(name, 1.0), name) for name in vocab.shapes), reverse=True)
    if len(fits) > 1 and fits[0][0] - fits[1][0] < REFINE_MARGIN:
        fits = sorted(
            ((fit(name, scale), name) for _, name in fits[:2] for scale in SCALE_HYPOTHESES),
            reverse=True,
        )
    name = fits[0][1]
    # The reported box keeps the moment-fitted scale: it is the unbiased estimate of size.
    return name, box_for(vocab.shapes[name], 1.0)


def parse(
    image: Image.Image | np.ndarray, *, vocabulary: ParseVocabulary = WORLD_VOCABULARY
) -> Scene:
    """Recover the scene shown in ``image`` (objects sorted top-to-bottom, then left-to-right).

    See the module docstring for the method and for edge cases. Images above the pixel
    limit of :mod:`liquidgen.utils.limits` raise :class:`ShapeError` before any work.
    """
    if isinstance(image, Image.Image):
        check_image_pixels(*image.size)
    elif isinstance(image, np.ndarray) and image.ndim >= 2:
        check_image_pixels(image.shape[1], image.shape[0])
    rgb = to_rgb_array(image)  # (H, W, 3)
    height, width = rgb.shape[:2]
    if min(height, width) < MIN_PARSE_SIDE:
        corner = rgb.reshape(-1, 3)[0] if rgb.size else np.full(3, 255.0, np.float32)
        return Scene(width, height, _nearest(corner, vocabulary.backgrounds), ())
    s = min(height, width)
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])  # (2W + 2H, 3)
    bg = np.median(border, axis=0)  # (3,)
    offsets = rgb - bg  # (H, W, 3)
    palette = np.asarray(list(vocabulary.colors.values()), np.float32)  # (K, 3)
    coverage = _palette_coverage(offsets, palette - bg)  # (H, W)
    labels, count = ndimage.label(coverage > COVERAGE_THRESHOLD, structure=np.ones((3, 3)))
    regions = expand_labels(labels, distance=max(1.0, REGION_GROWTH * s))  # (H, W)
    boxes = ndimage.find_objects(regions)
    objects: list[WorldObject] = []
    for index in range(1, count + 1):
        box = boxes[index - 1]
        in_region = regions[box] == index  # (h, w)
        component = labels[box] == index  # (h, w)
        if component.sum() < vocabulary.min_object_area * s * s:
            continue  # a stray blob: too few well-covered pixels to be an object
        crop_cov = coverage[box]
        core = component & (crop_cov > CORE_COVERAGE)
        if not core.any():
            core = component & (crop_cov >= crop_cov[component].max())
        color = np.median(rgb[box][core], axis=0)  # (3,)
        alpha = np.where(in_region, _coverage_against(offsets[box], color - bg), 0.0)  # (h, w)
        ys, xs = np.nonzero(component)
        aspect = 1.0 if vocabulary.square_boxes else (np.ptp(xs) + 1) / (np.ptp(ys) + 1)
        shape, (x0, y0, x1, y1) = _fit_object(alpha, aspect, vocabulary)
        x0, x1 = x0 + box[1].start, x1 + box[1].start
        y0, y1 = y0 + box[0].start, y1 + box[0].start
        side = math.sqrt((x1 - x0) * (y1 - y0)) / s
        size = min(vocabulary.sizes, key=lambda k: abs(math.log(side / vocabulary.sizes[k])))
        bbox = tuple(round(v, COORD_DECIMALS) for v in (x0, y0, x1, y1))
        objects.append(
            WorldObject(
                shape=shape,
                color=_nearest(color, vocabulary.colors),
                size=size,
                cx=round((x0 + x1) / 2, COORD_DECIMALS),
                cy=round((y0 + y1) / 2, COORD_DECIMALS),
                bbox=bbox,  # type: ignore[arg-type]
            )
        )
    objects.sort(key=lambda o: (o.cy, o.cx))
    return Scene(width, height, _nearest(bg, vocabulary.backgrounds), tuple(objects))
