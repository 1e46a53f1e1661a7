"""Image files in and out: the one image loader of liquidgen, and tiling for previews."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from liquidgen.errors import ConfigError, ImageReadError

_FILL = (0, 0, 0)  # colour of empty cells in :func:`image_grid`


def open_image(path: str | os.PathLike[str]) -> Image.Image:
    """Open an image file fully (so truncation is detected here), in its own mode.

    Raises :class:`ImageReadError` for a missing (``no such file``), undecodable
    (``not an image``) or truncated/corrupt (``unreadable image``) file. Callers convert the
    mode as their task needs (``liquidgen.tokenizer.to_rgb`` for the VQGAN).
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()
    except UnidentifiedImageError as e:
        raise ImageReadError(f"{path}: not an image") from e
    except (OSError, SyntaxError, ValueError) as e:  # truncated / corrupt data
        raise ImageReadError(f"{path}: unreadable image ({e})") from e


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
