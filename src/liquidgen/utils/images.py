"""Image files in and out: the one image loader of liquidgen, and tiling for previews.

:func:`open_image` is the loader every path uses (the tokenizer's ``load_image``, the world
parser, the inference pipeline, the datasets): it decodes a file fully, in its own mode,
within the decoding limit of :mod:`liquidgen.utils.limits` (the header is checked before any
pixel is decoded, so a decompression bomb is refused in one line), and turns any failure
into a one-line :class:`~liquidgen.errors.ImageReadError`. Callers convert the mode as their
task needs (``liquidgen.tokenizer.to_rgb`` for the VQGAN).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from PIL import Image

from liquidgen.errors import ConfigError
from liquidgen.utils.limits import open_image

_FILL = (0, 0, 0)  # colour of empty cells in :func:`image_grid`


def image_grid(images: Sequence[Image.Image]) -> Image.Image:
    """Tile equally sized images row by row into a near-square grid (``ceil(sqrt(n))`` columns)."""
    if not images:
        raise ConfigError("no images to tile")
    width, height = images[0].size
    cols = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    canvas = Image.new("RGB", (cols * width, rows * height), _FILL)
    for i, img in enumerate(images):
        canvas.paste(img, ((i % cols) * width, (i // cols) * height))
    return canvas


__all__ = ["image_grid", "open_image"]
