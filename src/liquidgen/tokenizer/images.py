"""PIL <-> tensor helpers with Liquid's (Chameleon's) pre- and post-processing.

- Transparency is blended onto white; other modes (L, P, CMYK, I;16...) become RGB.
- Generation data: resize the short side to the target with LANCZOS, then centre-crop.
- Understanding: pad to a square with the colour (122, 116, 104), then resize.
- Pixels map to ``x / 255 * 2 - 1``; decoded pixels are clamped to [-1, 1] and truncated
  to uint8 as ``((x + 1) / 2 * 255).astype(uint8)``, exactly as the reference does.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

from liquidgen.errors import ImageReadError, ShapeError
from liquidgen.utils.images import open_image

PAD_COLOR = (122, 116, 104)  # Liquid's square-padding colour for understanding inputs


def load_image(path: str | os.PathLike[str]) -> Image.Image:
    """Open an image file with the one loader (:func:`liquidgen.utils.images.open_image`)
    and return it as RGB.

    Raises :class:`ImageReadError` for a missing, unreadable, truncated or non-image file,
    a folder, or an image above the decoding limit of :mod:`liquidgen.utils.limits`.
    """
    img = open_image(path)
    try:
        return to_rgb(img)
    except (OSError, ValueError) as e:  # a mode PIL cannot convert
        raise ImageReadError(f"{path}: cannot convert mode {img.mode!r} to RGB ({e})") from None


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB copy of ``img``; transparent pixels are blended onto white as the reference does."""
    if img.mode == "RGB":
        return img.copy()
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        img.mode == "P" and "transparency" in img.info
    )
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # High-bit-depth greyscale: rescale to 8 bit before conversion.
        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max() if arr.size and arr.max() > 0 else 1.0
        img = Image.fromarray((arr / hi * 255.0).astype(np.uint8), "L")
    if not has_alpha:
        return img.convert("RGB")
    rgba = np.asarray(img.convert("RGBA"))
    if not (rgba[:, :, 3] < 255).any():
        return img.convert("RGB")
    alpha = rgba[:, :, 3:4] / 255.0
    rgb = (1 - alpha) * 255 + alpha * rgba[:, :, :3]
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


def resize_center_crop(img: Image.Image, size: int | tuple[int, int]) -> Image.Image:
    """Resize so the image covers ``size`` (LANCZOS), then centre-crop to it.

    ``size`` is an int (square) or ``(width, height)``. For a square target this is
    exactly the reference: the short side becomes ``size``.
    """
    tw, th = (size, size) if isinstance(size, int) else size
    if tw <= 0 or th <= 0:
        raise ShapeError(f"target size must be positive, got {tw}x{th}")
    w, h = img.size
    if w == 0 or h == 0:
        raise ShapeError("image is empty")
    scale = max(tw / w, th / h)
    new_size = (max(tw, round(scale * w)), max(th, round(scale * h)))
    if new_size != img.size:
        img = img.resize(new_size, Image.LANCZOS)
    x0 = (img.width - tw) // 2
    y0 = (img.height - th) // 2
    return img.crop((x0, y0, x0 + tw, y0 + th))


def pad_to_square(img: Image.Image, fill: tuple[int, int, int] = PAD_COLOR) -> Image.Image:
    """Centre ``img`` on a square canvas of its long side filled with ``fill``."""
    w, h = img.size
    if w == h:
        return img.copy()
    side = max(w, h)
    canvas = Image.new("RGB", (side, side), fill)
    canvas.paste(img, ((side - w) // 2, (side - h) // 2))
    return canvas


def preprocess_generation(img: Image.Image, size: int | tuple[int, int]) -> Image.Image:
    """Reference pre-processing for generation targets: RGB, resize short side, centre crop."""
    return resize_center_crop(to_rgb(img), size)


def preprocess_understanding(img: Image.Image, size: int) -> Image.Image:
    """Reference pre-processing for understanding inputs: RGB, pad to square, resize."""
    img = pad_to_square(to_rgb(img))
    if img.size != (size, size):
        img = img.resize((size, size), Image.LANCZOS)
    return img


def pil_to_tensor(images: Image.Image | list[Image.Image]) -> torch.Tensor:
    """RGB image(s) of equal size -> float (B, 3, H, W) in [-1, 1] (``x / 255 * 2 - 1``)."""
    if isinstance(images, Image.Image):
        images = [images]
    arrays = [np.asarray(to_rgb(im), dtype=np.float32) for im in images]
    if len({a.shape for a in arrays}) != 1:
        raise ShapeError("all images in a batch must have the same size")
    batch = np.stack(arrays) / 255.0 * 2.0 - 1.0  # (B, H, W, 3)
    return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()


def tensor_to_pil(pixels: torch.Tensor) -> list[Image.Image]:
    """Decoded pixels (B, 3, H, W) or (3, H, W) -> RGB images (clamp, then truncate to uint8)."""
    if pixels.ndim == 3:
        pixels = pixels[None]
    x = (pixels.detach().float().cpu().clamp(-1.0, 1.0) + 1.0) / 2.0
    arr = (x.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)  # (B, H, W, 3)
    return [Image.fromarray(a, "RGB") for a in arr]
