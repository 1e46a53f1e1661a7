"""Shape geometry shared by the renderer and the parser.

Every shape is defined inside the unit box ``[-1, 1] x [-1, 1]`` (``y`` pointing down, as
in images) and touches all four sides of it, so an object's bounding box is exactly the
``d x d`` square around its centre and the parser can fit a template to any box.
The circle is an ellipse in that box; every other shape is a polygon.

Shapes were chosen to stay apart after a VQ decoder's blur: they differ in how much of
their box they fill (circle 0.79, square 1.0, triangle and diamond 0.5, plus 0.54, star
about 0.33) and, where the fill is alike, in where the mass sits (the triangle's is low,
the diamond's central) or in concavity (plus, star).
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
PLUS = "plus"
STAR = "star"
GEOMETRIES: tuple[str, ...] = (CIRCLE, SQUARE, TRIANGLE, DIAMOND, PLUS, STAR)

PLUS_HALF_WIDTH = 0.34  # half the arm width of the plus, in unit-box coordinates
STAR_POINTS = 5
STAR_INNER_RATIO = 0.48  # inner/outer radius; fatter than a "regular" star (0.38) to survive blur
CIRCLE_POLYGON_SIDES = 96  # only for area/centroid constants; rendering uses a true ellipse

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


def _plus_vertices() -> Vertices:
    h = PLUS_HALF_WIDTH
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


def _circle_vertices() -> Vertices:
    n = CIRCLE_POLYGON_SIDES
    return tuple(
        (math.cos(2 * math.pi * k / n), math.sin(2 * math.pi * k / n)) for k in range(n)
    )


POLYGONS: dict[str, Vertices] = {
    SQUARE: ((-1, -1), (1, -1), (1, 1), (-1, 1)),
    TRIANGLE: ((0, -1), (1, 1), (-1, 1)),  # apex up, base as wide as it is high
    DIAMOND: ((0, -1), (1, 0), (0, 1), (-1, 0)),
    PLUS: _plus_vertices(),
    STAR: _star_vertices(),
}


def _polygon_moments(vertices: Vertices) -> tuple[float, float]:
    """Area and centroid ``y`` of a simple polygon (shoelace formula)."""
    area = cy = 0.0
    for (x0, y0), (x1, y1) in zip(vertices, vertices[1:] + vertices[:1], strict=True):
        cross = x0 * y1 - x1 * y0
        area += cross
        cy += (y0 + y1) * cross
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


def draw(
    canvas: ImageDraw.ImageDraw,
    geometry: str,
    box: tuple[float, float, float, float],
    fill: tuple[int, int, int] | int,
) -> None:
    """Draw ``geometry`` filling ``box = (x0, y0, x1, y1)`` (pixel-corner coordinates)."""
    x0, y0, x1, y1 = box
    if geometry == CIRCLE:
        canvas.ellipse(box, fill=fill)
        return
    half_w, half_h = (x1 - x0) / 2, (y1 - y0) / 2
    cx, cy = x0 + half_w, y0 + half_h
    canvas.polygon([(cx + u * half_w, cy + v * half_h) for u, v in POLYGONS[geometry]], fill=fill)


def coverage(geometry: str, width: int, height: int, supersample: int = 4) -> np.ndarray:
    """Anti-aliased coverage in ``[0, 1]`` of ``geometry`` stretched over a ``width x height`` box.

    Returns a float32 array of shape ``(height, width)``; used by the parser as a template.
    """
    img = Image.new("L", (width * supersample, height * supersample), 0)
    draw(ImageDraw.Draw(img), geometry, (0, 0, width * supersample, height * supersample), 255)
    return np.asarray(img.reduce(supersample), dtype=np.float32) / 255.0  # (H, W)
