"""``liquidgen tokenizer ...``: convert, encode, decode, roundtrip, train, eval."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from liquidgen.errors import CheckpointError, CodeRangeError, ConfigError
from liquidgen.tokenizer.evaluate import parse_size
from liquidgen.tokenizer.images import (
    load_image,
    pil_to_tensor,
    preprocess_generation,
    tensor_to_pil,
)
from liquidgen.tokenizer.vqgan import VQGAN
from liquidgen.utils.io import atomic_path


def _parse_size(text: str) -> tuple[int, int]:
    """'256' or '160x96' (width x height) -> (width, height), as an argparse type."""
    try:
        return parse_size(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def _check_output_dir(path: Path) -> None:
    if not path.parent.is_dir():
        raise ConfigError(f"output folder {path.parent} does not exist")


def _load_pixels(path: Path, size: tuple[int, int] | None) -> torch.Tensor:
    img = load_image(path)
    if size is not None:
        img = preprocess_generation(img, size)
    return pil_to_tensor(img)  # (1, 3, H, W)


def _cmd_convert(args: argparse.Namespace) -> int:
    src, dst = Path(args.src), Path(args.dst)
    if not (src / "vqgan.yaml").is_file() or not (src / "vqgan.ckpt").is_file():
        raise CheckpointError(f"{src}: expected the authors' vqgan.yaml + vqgan.ckpt")
    model = VQGAN.from_pretrained(src)
    model.save_pretrained(dst)
    n = sum(p.numel() for p in model.parameters())
    print(f"converted {src} -> {dst} ({n / 1e6:.1f}M parameters, {model.codebook_size} codes)")
    return 0


def _cmd_encode(args: argparse.Namespace) -> int:
    model = VQGAN.from_pretrained(args.tokenizer)
    out = Path(args.output) if args.output else None
    if out is not None:
        _check_output_dir(out)
    records = []
    for path in args.images:
        pixels = _load_pixels(Path(path), args.size)
        codes = model.encode(pixels)[0]  # (h, w)
        records.append({"file": str(path), "grid": list(codes.shape), "codes": codes.tolist()})
    text = "".join(json.dumps(r) + "\n" for r in records)
    if out is None:
        sys.stdout.write(text)
    else:
        with atomic_path(out) as tmp:
            tmp.write_text(text)
    return 0


def _read_codes(path: Path) -> list[torch.Tensor]:
    if not path.is_file():
        raise CodeRangeError(f"{path}: no such codes file")
    grids = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            codes = torch.tensor(rec["codes"] if isinstance(rec, dict) else rec, dtype=torch.long)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise CodeRangeError(f"{path}:{lineno}: not a codes record ({e})") from e
        if codes.ndim != 2:
            raise CodeRangeError(f"{path}:{lineno}: codes must be a 2-D grid")
        grids.append(codes)
    if not grids:
        raise CodeRangeError(f"{path}: no codes")
    return grids


def _cmd_decode(args: argparse.Namespace) -> int:
    model = VQGAN.from_pretrained(args.tokenizer)
    grids = _read_codes(Path(args.codes))
    out = Path(args.output)
    _check_output_dir(out)
    targets = (
        [out]
        if len(grids) == 1
        else [out.with_name(f"{out.stem}_{i}{out.suffix}") for i in range(len(grids))]
    )
    images = [tensor_to_pil(model.decode(g))[0] for g in grids]  # decode all before writing
    for img, target in zip(images, targets, strict=True):
        with atomic_path(target) as tmp:
            img.save(tmp, format="PNG")
        print(target)
    return 0


def _cmd_roundtrip(args: argparse.Namespace) -> int:
    model = VQGAN.from_pretrained(args.tokenizer)
    out = Path(args.output)
    _check_output_dir(out)
    pixels = _load_pixels(Path(args.image), args.size)
    codes = model.encode(pixels)
    recon = model.decode(codes)
    mse = torch.mean((recon.clamp(-1, 1) - pixels) ** 2 / 4.0).item()  # on [0, 1] scale
    psnr = 10 * torch.log10(torch.tensor(1.0 / max(mse, 1e-12))).item()
    with atomic_path(out) as tmp:
        tensor_to_pil(recon)[0].save(tmp, format="PNG")
    h, w = codes.shape[-2:]
    print(f"{args.image}: {w}x{h} codes, PSNR {psnr:.2f} dB -> {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``liquidgen tokenizer`` and its subcommands."""
    p = subparsers.add_parser(
        "tokenizer", help="the VQGAN image tokenizer", description="VQGAN image tokenizer tools."
    )
    sub = p.add_subparsers(dest="tokenizer_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])

    c = sub.add_parser(
        "convert",
        help="authors' vqgan.yaml + vqgan.ckpt -> liquidgen format",
        description="Convert a tokenizer in the authors' format (vqgan.yaml + Lightning vqgan.ckpt) "
        "into liquidgen's (config.json + model.safetensors). loss.* keys are dropped.",
    )
    c.add_argument("--from", dest="src", required=True, help="folder with vqgan.yaml + vqgan.ckpt")
    c.add_argument("--to", dest="dst", required=True, help="output folder (written atomically)")
    c.set_defaults(func=_cmd_convert)

    size_help = "resize (short side, LANCZOS) + centre-crop to N or WxH first; default: use as is"
    e = sub.add_parser(
        "encode", help="images -> codes (JSON lines)", description="Encode images to code grids."
    )
    e.add_argument("--tokenizer", required=True, help="tokenizer folder (either format)")
    e.add_argument("images", nargs="+", help="image files")
    e.add_argument("--size", type=_parse_size, default=None, help=size_help)
    e.add_argument("-o", "--output", help="JSON-lines output file (default: stdout)")
    e.set_defaults(func=_cmd_encode)

    d = sub.add_parser(
        "decode", help="codes (JSON lines) -> PNG", description="Decode code grids to images."
    )
    d.add_argument("--tokenizer", required=True, help="tokenizer folder (either format)")
    d.add_argument("codes", help="JSON-lines file as written by `encode` (one grid per line)")
    d.add_argument(
        "-o", "--output", required=True, help="PNG path; several grids -> NAME_0.png, ..."
    )
    d.set_defaults(func=_cmd_decode)

    r = sub.add_parser(
        "roundtrip",
        help="image -> codes -> image",
        description="Encode and decode an image; print PSNR.",
    )
    r.add_argument("--tokenizer", required=True, help="tokenizer folder (either format)")
    r.add_argument("image", help="input image")
    r.add_argument("-o", "--output", required=True, help="output PNG")
    r.add_argument("--size", type=_parse_size, default=None, help=size_help)
    r.set_defaults(func=_cmd_roundtrip)

    for module_name, fn in (("train", "register_train"), ("evaluate", "register_eval")):
        try:
            module = __import__(f"liquidgen.tokenizer.{module_name}", fromlist=[fn])
        except ModuleNotFoundError as err:
            if err.name == f"liquidgen.tokenizer.{module_name}":
                continue
            raise
        getattr(module, fn)(sub)
