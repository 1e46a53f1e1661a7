"""Reference pre-/post-processing of images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from liquidgen.errors import ImageReadError
from liquidgen.tokenizer import (
    PAD_COLOR,
    load_image,
    pad_to_square,
    pil_to_tensor,
    preprocess_generation,
    preprocess_understanding,
    resize_center_crop,
    tensor_to_pil,
    to_rgb,
)


def test_rgba_blended_on_white() -> None:
    arr = np.zeros((4, 4, 4), dtype=np.uint8)
    arr[..., 0] = 200  # red channel
    arr[..., 3] = 0  # fully transparent in the top half ...
    arr[2:, :, 3] = 255  # ... opaque in the bottom half
    arr[0, 0, 3] = 128  # half transparent
    out = np.asarray(to_rgb(Image.fromarray(arr, "RGBA")))
    assert out[1, 1].tolist() == [255, 255, 255]
    assert out[3, 3].tolist() == [200, 0, 0]
    a = 128 / 255
    expected = [int((1 - a) * 255 + a * 200), int((1 - a) * 255), int((1 - a) * 255)]
    assert out[0, 0].tolist() == expected


def test_palette_greyscale_and_16bit() -> None:
    pal = Image.new("P", (3, 3))
    pal.putpalette([10, 20, 30] * 256)
    assert np.asarray(to_rgb(pal))[0, 0].tolist() == [10, 20, 30]
    grey = Image.new("L", (2, 2), 77)
    assert np.asarray(to_rgb(grey))[1, 1].tolist() == [77, 77, 77]
    deep = Image.fromarray(np.full((2, 2), 1000, dtype=np.uint16))
    assert to_rgb(deep).mode == "RGB"


def test_resize_center_crop_matches_reference_formula() -> None:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (50, 80, 3), dtype=np.uint8))
    out = resize_center_crop(img, 32)
    # The reference: short side -> 32 with LANCZOS at round(scale * size), then centre crop.
    scale = 32 / 50
    ref = img.resize((round(80 * scale), round(50 * scale)), Image.LANCZOS)
    x0 = (ref.width - 32) // 2
    ref = ref.crop((x0, 0, x0 + 32, 32))
    assert np.array_equal(np.asarray(out), np.asarray(ref))
    wide = resize_center_crop(img, (48, 16))
    assert wide.size == (48, 16)


def test_pad_to_square_uses_reference_colour() -> None:
    img = Image.new("RGB", (10, 4), (0, 0, 0))
    sq = pad_to_square(img)
    assert sq.size == (10, 10)
    assert np.asarray(sq)[0, 0].tolist() == list(PAD_COLOR)
    assert np.asarray(sq)[5, 5].tolist() == [0, 0, 0]
    assert preprocess_understanding(img, 16).size == (16, 16)
    assert preprocess_generation(img, 16).size == (16, 16)


def test_tensor_conversions() -> None:
    img = Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3))
    x = pil_to_tensor(img)
    assert x.shape == (1, 3, 4, 4) and x.dtype == torch.float32
    assert torch.isclose(x.min(), torch.tensor(-1.0)) and x.max() <= 1.0
    back = tensor_to_pil(x)[0]
    diff = np.abs(np.asarray(back).astype(int) - np.asarray(img).astype(int))
    assert diff.max() <= 1  # truncation as in the reference, not rounding
    over = tensor_to_pil(torch.full((3, 2, 2), 5.0))[0]
    assert np.asarray(over).max() == 255  # clamped


def test_load_image_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="no such file"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(ImageReadError, match="not an image"):
        load_image(tmp_path / "text.png")
    Image.new("RGB", (64, 64), (1, 2, 3)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="unreadable"):
        load_image(tmp_path / "trunc.png")
    assert load_image(tmp_path / "ok.png").mode == "RGB"
