"""Render a :class:`~liquidgen.world.scene.Scene` to an anti-aliased RGB image.

Shapes are drawn with PIL at ``SUPERSAMPLE`` times the target resolution and reduced with
a box filter, so every pixel holds the exact mix of object and background colour that
covers it (coverage-correct anti-aliasing, a few hundred microseconds a scene).
"""

from __future__ import annotations

from PIL import Image, ImageDraw

from liquidgen.world import shapes
from liquidgen.world.scene import BACKGROUNDS, COLORS, Scene

SUPERSAMPLE = 4


def render(scene: Scene, *, supersample: int = SUPERSAMPLE) -> Image.Image:
    """Draw ``scene`` as a ``scene.width x scene.height`` RGB image."""
    canvas = Image.new(
        "RGB",
        (scene.width * supersample, scene.height * supersample),
        BACKGROUNDS[scene.background],
    )
    draw = ImageDraw.Draw(canvas)
    for obj in scene.objects:
        box = tuple(v * supersample for v in obj.bbox)
        shapes.draw(draw, obj.shape, box, COLORS[obj.color])  # type: ignore[arg-type]
    return canvas.reduce(supersample) if supersample > 1 else canvas
