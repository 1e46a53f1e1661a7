"""``liquidgen tokenizer ...``: convert, encode, decode, roundtrip, train, eval."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from liquidgen.errors import CheckpointError, CodeRangeError, ShapeError
from liquidgen.tokenizer.images import (
    load_image,
    pil_to_tensor,
    preprocess_generation,
    tensor_to_pil,
)
from liquidgen.tokenizer.vqgan import VQGAN
from liquidgen.utils.args import size_arg
from liquidgen.utils.io import atomic_path, check_output_file, prepare_output_dir
from liquidgen.utils.limits import check_batch, check_code_grid, check_image_pixels, max_pixels

_CODES_EXAMPLE = '{"grid": [h, w], "codes": [[...], ...]}'
VQ_MARKERS = ("config.json", "model.safetensors")  # what `convert` writes, and nothing else


def _load_pixels(path: Path, size: tuple[int, int] | None) -> torch.Tensor:
    img = load_image(path)
    if size is not None:
        img = preprocess_generation(img, size)
    check_image_pixels(*img.size, f"{path}: image")  # without --size the image is used as is
    return pil_to_tensor(img)  # (1, 3, H, W)


def encode_pixels(model: VQGAN, pixels: torch.Tensor) -> torch.Tensor:
    """``model.encode`` with a :class:`ShapeError` for a size the network cannot take (e.g. a
    latent of one position, which a GroupNorm of one channel per group refuses)."""
    try:
        with torch.no_grad():
            return model.encode(pixels)
    except (ValueError, RuntimeError) as e:
        size = "x".join(map(str, pixels.shape[-2:][::-1]))
        raise ShapeError(f"cannot encode a {size} image with this tokenizer ({e})") from None


def decode_grid(model: VQGAN, codes: torch.Tensor) -> torch.Tensor:
    """``model.decode`` with a :class:`ShapeError` for a grid the network cannot take."""
    try:
        with torch.no_grad():
            return model.decode(codes)
    except (ValueError, RuntimeError) as e:
        grid = "x".join(map(str, codes.shape[-2:]))
        raise ShapeError(f"cannot decode a {grid} code grid with this tokenizer ({e})") from None


def _cmd_convert(args: argparse.Namespace) -> int:
    src, dst = Path(args.src), Path(args.dst)
    if not (src / "vqgan.yaml").is_file() or not (src / "vqgan.ckpt").is_file():
        raise CheckpointError(f"{src}: expected the authors' vqgan.yaml + vqgan.ckpt")
    prepare_output_dir(dst, VQ_MARKERS, overwrite=args.overwrite, what="tokenizer", exact=True)
    model = VQGAN.from_pretrained(src)
    model.save_pretrained(dst)
    n = sum(p.numel() for p in model.parameters())
    print(f"converted {src} -> {dst} ({n / 1e6:.1f}M parameters, {model.codebook_size} codes)")
    return 0


def _cmd_encode(args: argparse.Namespace) -> int:
    out = Path(args.output) if args.output else None
    if out is not None:
        check_output_file(out)
    model = VQGAN.from_pretrained(args.tokenizer)
    records = []
    for path in args.images:
        pixels = _load_pixels(Path(path), args.size)
        codes = encode_pixels(model, pixels)[0]  # (h, w)
        records.append({"file": str(path), "grid": list(codes.shape), "codes": codes.tolist()})
    text = "".join(json.dumps(r) + "\n" for r in records)
    if out is None:
        sys.stdout.write(text)
    else:
        with atomic_path(out) as tmp:
            tmp.write_text(text)
    return 0


def _codes_grid(rec: object, where: str) -> torch.Tensor:
    """One record (``{"grid": [h, w], "codes": [[...]]}`` or a bare list of rows) -> (h, w)."""
    rows = rec.get("codes") if isinstance(rec, dict) else rec
    if not isinstance(rows, list) or not rows or not all(isinstance(r, list) for r in rows):
        raise CodeRangeError(f"{where}: not a codes record (expected {_CODES_EXAMPLE})")
    width = len(rows[0])
    if width == 0 or any(len(r) != width for r in rows):
        raise CodeRangeError(f"{where}: codes must be a 2-D grid with rows of equal length")
    for row in rows:
        for value in row:
            if type(value) is not int:  # no floats, bools or strings
                raise CodeRangeError(f"{where}: codes must be integers, got {value!r}")
    if isinstance(rec, dict) and "grid" in rec:
        grid = rec["grid"]
        if grid != [len(rows), width]:
            raise CodeRangeError(
                f"{where}: grid {grid!r} does not match the codes ({len(rows)}x{width})"
            )
    return torch.tensor(rows, dtype=torch.long)


def _read_codes(path: Path, downsample: int) -> list[torch.Tensor]:
    """The code grids of a JSON-lines file, each checked (integers, shape, pixel limit)."""
    if path.is_dir():
        raise CodeRangeError(f"{path}: is a folder, not a codes file")
    if not path.is_file():
        raise CodeRangeError(f"{path}: no such codes file")
    # A grid decodes to at most max_pixels() pixels: bound the line before parsing it.
    max_line = 16 * max(1, max_pixels() // (downsample * downsample)) + 4096
    grids = []
    with path.open("rb") as f:
        for lineno, raw in enumerate(iter(lambda: f.readline(max_line + 1), b""), 1):
            where = f"{path}:{lineno}"
            if len(raw) > max_line:
                raise CodeRangeError(f"{where}: line too long for a grid within the pixel limit")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise CodeRangeError(
                    f"{where}: not a codes file (not UTF-8 text; expected JSON lines)"
                ) from None
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as e:
                raise CodeRangeError(f"{where}: not a codes record ({e})") from None
            grid = _codes_grid(rec, where)
            check_code_grid(*grid.shape, downsample, f"{where}: code grid")
            grids.append(grid)
            check_batch(len(grids), f"{path}: number of grids")
    if not grids:
        raise CodeRangeError(f"{path}: no codes")
    return grids


def _cmd_decode(args: argparse.Namespace) -> int:
    out = Path(args.output)
    check_output_file(out)
    model = VQGAN.from_pretrained(args.tokenizer)
    grids = _read_codes(Path(args.codes), model.downsample)
    targets = (
        [out]
        if len(grids) == 1
        else [out.with_name(f"{out.stem}_{i}{out.suffix}") for i in range(len(grids))]
    )
    images = [tensor_to_pil(decode_grid(model, g))[0] for g in grids]  # all before writing
    for img, target in zip(images, targets, strict=True):
        with atomic_path(target) as tmp:
            img.save(tmp, format="PNG")
        print(target)
    return 0


def _cmd_roundtrip(args: argparse.Namespace) -> int:
    out = Path(args.output)
    check_output_file(out)
    model = VQGAN.from_pretrained(args.tokenizer)
    pixels = _load_pixels(Path(args.image), args.size)
    codes = encode_pixels(model, pixels)
    recon = decode_grid(model, codes)
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
    c.add_argument(
        "--to",
        dest="dst",
        required=True,
        help="output folder, written atomically; an existing one is replaced only if it is "
        "empty or an earlier tokenizer (config.json + model.safetensors alone)",
    )
    c.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --to whatever it holds (a folder of other files, or a file)",
    )
    c.set_defaults(func=_cmd_convert)

    size_help = (
        "resize (short side, LANCZOS) + centre-crop to N or WxH first; default: use as is "
        "(either way at most LIQUIDGEN_MAX_MEGAPIXELS, default 4, megapixels)"
    )
    e = sub.add_parser(
        "encode", help="images -> codes (JSON lines)", description="Encode images to code grids."
    )
    e.add_argument("--tokenizer", required=True, help="tokenizer folder (either format)")
    e.add_argument("images", nargs="+", help="image files")
    e.add_argument("--size", type=size_arg, default=None, help=size_help)
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
    r.add_argument("--size", type=size_arg, default=None, help=size_help)
    r.set_defaults(func=_cmd_roundtrip)

    for module_name, fn in (("training.cli", "register_train"), ("evaluate", "register_eval")):
        try:
            module = __import__(f"liquidgen.tokenizer.{module_name}", fromlist=[fn])
        except ModuleNotFoundError as err:
            if err.name == f"liquidgen.tokenizer.{module_name}":
                continue
            raise
        getattr(module, fn)(sub)
