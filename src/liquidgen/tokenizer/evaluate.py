"""Held-out quality of a tokenizer: ``liquidgen tokenizer eval --tokenizer DIR IMAGES...``.

Three numbers, all on images the tokenizer did not train on:

- **PSNR** (dB) between each input and its round trip ``encode -> decode``, both as the
  8-bit images a user sees (the reference post-processing: clamp, truncate to uint8),
  averaged over images; the worst image is reported too.
- **codebook usage**: the fraction of the ``n_embed`` codes that occur at least once.
- **perplexity** of the code histogram, ``exp(entropy)``: the effective number of codes in
  use (equal to ``n_embed`` only when every code is equally frequent).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from liquidgen.errors import ConfigError, ImageReadError
from liquidgen.tokenizer.images import load_image, resize_center_crop, tensor_to_pil
from liquidgen.tokenizer.vqgan import VQGAN
from liquidgen.utils.io import atomic_path
from liquidgen.utils.size import parse_size

PEAK = 255.0  # PSNR peak value of 8-bit images
MAX_PSNR = 100.0  # reported for a bit-exact round trip (MSE 0) instead of infinity
DEFAULT_BATCH = 8


def image_suffixes() -> frozenset[str]:
    """File suffixes PIL can open (``.png``, ``.jpg``, ...), used when scanning folders."""
    return frozenset(s.lower() for s in Image.registered_extensions())


def find_images(paths: Iterable[str | Path]) -> list[Path]:
    """Expand files and folders (recursively, image suffixes only, sorted) into image files.

    A file given explicitly is kept whatever its suffix (reading it will tell). Raises
    :class:`ImageReadError` for a path that does not exist or when no image is found.
    """
    suffixes = image_suffixes()
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes
            )
        elif path.is_file():
            found.append(path)
        else:
            raise ImageReadError(f"{path}: no such file or folder")
    if not found:
        raise ImageReadError(f"no images found in {', '.join(str(p) for p in paths)}")
    return found


def to_uint8_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> uint8 tensor (3, H, W)."""
    return torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)


def uint8_to_pixels(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float (B, 3, H, W) in [-1, 1], the reference ``x / 255 * 2 - 1``."""
    return images.float() / 255.0 * 2.0 - 1.0


def crop_to_multiple(img: Image.Image, factor: int) -> Image.Image:
    """Centre-crop ``img`` to the largest size divisible by ``factor`` (no resampling)."""
    w, h = img.size
    tw, th = w - w % factor, h - h % factor
    if tw == 0 or th == 0:
        raise ImageReadError(
            f"image of {w}x{h} pixels is smaller than the tokenizer's factor {factor}"
        )
    x0, y0 = (w - tw) // 2, (h - th) // 2
    return img.crop((x0, y0, x0 + tw, y0 + th))


def psnr_db(mse: float, peak: float) -> float:
    """``10 log10(peak^2 / mse)``, capped at :data:`MAX_PSNR` for a perfect match."""
    return MAX_PSNR if mse <= 0 else min(MAX_PSNR, 10.0 * math.log10(peak * peak / mse))


def code_statistics(counts: torch.Tensor) -> tuple[float, float]:
    """Usage fraction and perplexity of a code histogram ``counts`` (n_embed,)."""
    total = float(counts.sum())
    if total == 0:
        return 0.0, 0.0
    p = counts.double() / total
    nz = p[p > 0]
    entropy = float(-(nz * nz.log()).sum())
    return float((counts > 0).double().mean()), math.exp(entropy)


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Round-trip quality of a tokenizer on a set of images."""

    images: int
    tokens: int  # codes produced in total
    psnr: float  # mean over images, dB
    psnr_min: float  # worst image, dB
    codes_used: int
    codebook_size: int
    usage: float  # codes_used / codebook_size
    perplexity: float  # exp(entropy) of the code histogram

    def to_dict(self) -> dict[str, float | int]:
        return dataclasses.asdict(self)

    def table(self) -> str:
        """Human-readable two-column summary."""
        rows = [
            ("images", f"{self.images} ({self.tokens} codes)"),
            ("PSNR", f"{self.psnr:.2f} dB mean, {self.psnr_min:.2f} dB worst"),
            (
                "codebook usage",
                f"{self.codes_used} / {self.codebook_size} = {100 * self.usage:.1f}%",
            ),
            ("perplexity", f"{self.perplexity:.1f} (max {self.codebook_size})"),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


@torch.no_grad()
def evaluate_tokenizer(
    model: VQGAN, images: Sequence[torch.Tensor], *, batch_size: int = DEFAULT_BATCH
) -> EvalResult:
    """Round-trip uint8 images (each (3, H, W), H and W divisible by the factor) and score them.

    Images of equal size are batched together; results do not depend on the batching.
    """
    if not images:
        raise ImageReadError("no images to evaluate")
    if batch_size <= 0:
        raise ConfigError(f"batch size must be > 0, got {batch_size}")
    was_training = model.training
    model.eval()
    counts = torch.zeros(model.codebook_size, dtype=torch.long)
    psnrs: list[float] = []
    tokens = 0
    by_size: dict[tuple[int, ...], list[torch.Tensor]] = {}
    for img in images:
        by_size.setdefault(tuple(img.shape), []).append(img)
    try:
        for group in by_size.values():
            for start in range(0, len(group), batch_size):
                batch = torch.stack(group[start : start + batch_size])  # (B, 3, H, W) uint8
                codes = model.encode(uint8_to_pixels(batch))  # (B, h, w)
                recon = tensor_to_pil(model.decode(codes))
                counts += torch.bincount(codes.flatten(), minlength=model.codebook_size)
                tokens += codes.numel()
                for ref, out in zip(batch, recon, strict=True):
                    diff = ref.double() - to_uint8_tensor(out).double()
                    psnrs.append(psnr_db(float(diff.pow(2).mean()), PEAK))
    finally:
        model.train(was_training)
    usage, perplexity = code_statistics(counts)
    return EvalResult(
        images=len(psnrs),
        tokens=tokens,
        psnr=float(np.mean(psnrs)),
        psnr_min=float(np.min(psnrs)),
        codes_used=int((counts > 0).sum()),
        codebook_size=model.codebook_size,
        usage=usage,
        perplexity=perplexity,
    )


def load_eval_images(
    paths: Sequence[Path], factor: int, size: tuple[int, int] | None
) -> list[torch.Tensor]:
    """Read images as uint8 (3, H, W): resized + centre-cropped to ``size`` when given,
    else centre-cropped to a multiple of ``factor`` so the tokenizer alone is measured."""
    out = []
    for path in paths:
        img = load_image(path)
        img = resize_center_crop(img, size) if size is not None else crop_to_multiple(img, factor)
        if img.width % factor or img.height % factor:
            raise ConfigError(
                f"--size {img.width}x{img.height} is not divisible by the tokenizer's factor {factor}"
            )
        out.append(to_uint8_tensor(img))
    return out


def _cmd_eval(args: argparse.Namespace) -> int:
    model = VQGAN.from_pretrained(args.tokenizer)
    size = parse_size(args.size) if args.size is not None else None
    if args.json is not None and not Path(args.json).parent.is_dir():
        raise ConfigError(f"output folder {Path(args.json).parent} does not exist")
    images = load_eval_images(find_images(args.images), model.downsample, size)
    result = evaluate_tokenizer(model, images, batch_size=args.batch_size)
    print(f"tokenizer       {args.tokenizer} ({model.codebook_size} codes, {model.downsample}x)")
    print(result.table())
    if args.json is not None:
        with atomic_path(args.json) as tmp:
            tmp.write_text(
                json.dumps({"tokenizer": str(args.tokenizer), **result.to_dict()}, indent=2) + "\n"
            )
    return 0


def register_eval(subparsers: argparse._SubParsersAction) -> None:
    """Add ``eval`` to the ``liquidgen tokenizer`` subcommands."""
    p = subparsers.add_parser(
        "eval",
        help="PSNR, codebook usage and perplexity on held-out images",
        description="Round-trip images through a tokenizer (encode -> decode) and report the mean "
        "and worst PSNR of the 8-bit results, the fraction of codebook entries used and the "
        "perplexity of the code histogram. Use images the tokenizer did not train on.",
    )
    p.add_argument(
        "--tokenizer", required=True, help="tokenizer folder (liquidgen or authors' format)"
    )
    p.add_argument("images", nargs="+", help="image files and/or folders (searched recursively)")
    p.add_argument(
        "--size",
        default=None,
        help="resize (short side, LANCZOS) + centre-crop every image to N or WxH; default: "
        "centre-crop each image to a multiple of the tokenizer's factor, no resampling",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH,
        help="images per forward pass (default: %(default)s)",
    )
    p.add_argument(
        "--json", default=None, metavar="OUT", help="also write the numbers to this JSON file"
    )
    p.set_defaults(func=_cmd_eval)
