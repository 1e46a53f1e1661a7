"""Shape geometry shared by the renderer and the parser.

Every shape is defined inside the unit box ``[-1, 1] x [-1, 1]`` (``y`` pointing down, as
in images) and touches all four sides of it, so an object's bounding box is exactly the
``d x d`` square around its centre and the parser can fit a template to any box.
The circle is an ellipse in that box; every other shape is a polygon.

Shapes were chosen to stay apart after a VQ decoder's blur: they differ in how much of
their box they fill (circle 0.79, square 1.0, triangle and diamond 0.5, cross 0.36, star
0.44) and, where the fill is alike, in where the mass sits (the triangle's is low,
the diamond's central) or in concavity (cross, star).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from PIL import Image, ImageDraw

CIRCLE = "circle"
SQUARE = "square"
TRIANGLE = "triangle"
DIAMOND = "diamond"
CROSS = "cross"
STAR = "star"
GEOMETRIES: tuple[str, ...] = (CIRCLE, SQUARE, TRIANGLE, DIAMOND, CROSS, STAR)

CROSS_HALF_WIDTH = 0.2  # half arm width (unit box): thin arms keep it unlike a blurred diamond
STAR_POINTS = 5
STAR_INNER_RATIO = 0.52  # inner/outer radius; fatter than a regular star (0.38) so it survives blur

Vertices = tuple[tuple[float, float], ...]


def _star_vertices() -> Vertices:
    """A five-pointed star pointing up, stretched so that it touches all sides of the box."""
    pts = []
    for k in range(2 * STAR_POINTS):
        radius = 1.0 if k % 2 == 0 else STAR_INNER_RATIO
        angle = -math.pi / 2 + k * math.pi / STAR_POINTS
        pts.append((radius * math.cos(angle), radius * math.sin(angle)))
    xs, ys = zip(*pts, strict=True)
    x_lo, x_hi, y_lo, y_hi = min(xs), max(xs), min(ys), max(ys)
    return tuple(
        (2 * (x - x_lo) / (x_hi - x_lo) - 1, 2 * (y - y_lo) / (y_hi - y_lo) - 1) for x, y in pts
    )


def _cross_vertices() -> Vertices:
    h = CROSS_HALF_WIDTH
    return (
        (-h, -1),
        (h, -1),
        (h, -h),
        (1, -h),
        (1, h),
        (h, h),
        (h, 1),
        (-h, 1),
        (-h, h),
        (-1, h),
        (-1, -h),
        (-h, -h),
    )


POLYGONS: dict[str, Vertices] = {
    SQUARE: ((-1, -1), (1, -1), (1, 1), (-1, 1)),
    TRIANGLE: ((0, -1), (1, 1), (-1, 1)),  # apex up, base as wide as it is high
    DIAMOND: ((0, -1), (1, 0), (0, 1), (-1, 0)),
    CROSS: _cross_vertices(),
    STAR: _star_vertices(),
}


def _polygon_moments(vertices: Vertices) -> tuple[float, float]:
    """Area and centroid ``y`` of a simple polygon (shoelace formula)."""
    area = cy = 0.0
    for (x0, y0), (x1, y1) in zip(vertices, vertices[1:] + vertices[:1], strict=True):
        det = x0 * y1 - x1 * y0
        area += det
        cy += (y0 + y1) * det
    area /= 2
    return abs(area), cy / (6 * area)


@functools.cache
def fill_fraction(geometry: str) -> float:
    """Fraction of its ``d x d`` bounding box the shape covers."""
    if geometry == CIRCLE:
        return math.pi / 4
    return _polygon_moments(POLYGONS[geometry])[0] / 4


@functools.cache
def centroid_offset(geometry: str) -> float:
    """Centroid ``y`` minus box-centre ``y``, in units of the box side ``d`` (down is +)."""
    if geometry == CIRCLE:
        return 0.0
    return _polygon_moments(POLYGONS[geometry])[1] / 2


PIL_OUTLINE_INSET = 0.5  # PIL fills pixels on the outline too: half a pixel too wide per side


def draw(
    canvas: ImageDraw.ImageDraw,
    geometry: str,
    box: tuple[float, float, float, float],
    fill: tuple[int, int, int] | int,
) -> None:
    """Draw ``geometry`` filling ``box = (x0, y0, x1, y1)`` (pixel-corner coordinates).

    The box is inset by :data:`PIL_OUTLINE_INSET` so the filled area matches the box's
    (PIL also fills the pixels the outline passes through).
    """
    inset = PIL_OUTLINE_INSET
    x0, y0, x1, y1 = box[0] + inset, box[1] + inset, box[2] - inset, box[3] - inset
    if geometry == CIRCLE:
        canvas.ellipse((x0, y0, x1, y1), fill=fill)
        return
    half_w, half_h = (x1 - x0) / 2, (y1 - y0) / 2
    cx, cy = x0 + half_w, y0 + half_h
    canvas.polygon([(cx + u * half_w, cy + v * half_h) for u, v in POLYGONS[geometry]], fill=fill)


def coverage(
    geometry: str,
    box: tuple[float, float, float, float],
    canvas: tuple[int, int],
    supersample: int = 4,
) -> np.ndarray:
    """Anti-aliased coverage in ``[0, 1]`` of ``geometry`` filling ``box`` on a canvas.

    ``canvas`` is ``(height, width)`` in pixels; returns float32 of that shape. The parser
    draws its shape hypotheses with this, exactly as the renderer draws objects.
    """
    height, width = canvas
    img = Image.new("L", (width * supersample, height * supersample), 0)
    draw(ImageDraw.Draw(img), geometry, tuple(v * supersample for v in box), 255)  # type: ignore[arg-type]
    return np.asarray(img.reduce(supersample), dtype=np.float32) / 255.0  # (H, W)
