"""CLI: ``liquidgen generate``, ``liquidgen ask`` and ``liquidgen chat`` (thin wrappers of
:class:`liquidgen.inference.pipeline.Pipeline`).

Everything a user can get wrong (arguments, output path, image file) is checked before the
model loads where possible (:mod:`liquidgen.inference.request`'s model-independent checks),
the rest once by :meth:`Pipeline.image_request`, and raises a :class:`~liquidgen.errors.LiquidgenError` that
``liquidgen`` prints on one line with exit status 2. Images are written atomically, so an
error never leaves a partial file. ``generate`` draws at most
:func:`~liquidgen.utils.limits.max_batch` images at a time and writes each part before the
next, so its memory does not grow with ``-n`` (docs/reliability.md).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from liquidgen.errors import ConfigError

if TYPE_CHECKING:
    from PIL import Image

    from liquidgen.inference.pipeline import Pipeline
    from liquidgen.inference.sampling import TextSampling

_REPL_PROMPT = "> "
_REPL_HELP = (
    "Type a message and press Enter. /reset clears the conversation, /exit (or Ctrl-D) quits."
)
_RESET, _EXIT = "/reset", "/exit"


# --------------------------------------------------------------------------- shared helpers
def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        metavar="DIR",
        default=None,
        help="checkpoint folder: a liquidgen checkpoint or a folder laid out like the released "
        "Liquid-7B (default: the shipped liquidgen-tiny model)",
    )
    p.add_argument(
        "--device",
        default=None,
        help="cpu, cuda or cuda:N (default: cuda if available, else cpu)",
    )
    p.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="weights dtype (default auto: bfloat16 on cuda, float32 on cpu)",
    )
    p.add_argument(
        "--quantize",
        default=None,
        choices=["int8"],
        help="weight-only int8 of the decoder's linear layers (per output channel): about half "
        "the bytes a decode step reads in bfloat16",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the one-token decode step (compiles on first use, 20-40 s on CPU; "
        "pays off for long or many generations)",
    )


def _add_text_args(p: argparse.ArgumentParser) -> None:
    from liquidgen.inference.sampling import DEFAULT_MAX_NEW_TOKENS
    from liquidgen.utils.args import finite_float_arg, seed_arg

    p.add_argument(
        "--max-new-tokens",
        type=int,
        default=DEFAULT_MAX_NEW_TOKENS,
        help=f"longest reply in tokens (default {DEFAULT_MAX_NEW_TOKENS})",
    )
    p.add_argument(
        "--sample",
        action="store_true",
        help="sample instead of greedy decoding (implied by --temperature/--top-k/--top-p)",
    )
    p.add_argument(
        "--temperature",
        type=finite_float_arg,
        default=None,
        help="sampling temperature (default 1.0)",
    )
    p.add_argument(
        "--top-k", type=int, default=None, help="keep the k most likely tokens (default 0: off)"
    )
    p.add_argument(
        "--top-p",
        type=finite_float_arg,
        default=None,
        help="nucleus sampling mass in (0, 1] (default 1.0)",
    )
    p.add_argument(
        "--seed", type=seed_arg, default=0, help="sampling seed in [0, 2**63 - 1] (default 0)"
    )


def _text_sampling(args: argparse.Namespace) -> TextSampling:
    """The text-decoding settings of ``ask``/``chat``, validated (any of --temperature,
    --top-k, --top-p implies --sample)."""
    from liquidgen.inference.sampling import TextSampling

    return TextSampling.from_options(
        sample=args.sample,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
    )


def _model_dir(args: argparse.Namespace) -> Path:
    """``--model``, or the shipped tiny model."""
    from liquidgen.assets import TINY_MODEL, shipped

    return Path(args.model) if args.model is not None else shipped(TINY_MODEL)


def _load(args: argparse.Namespace) -> Pipeline:
    """The pipeline for ``--model`` (default: the shipped tiny model), quietly."""
    from liquidgen.assets import TINY_MODEL, shipped
    from liquidgen.inference.pipeline import Pipeline
    from liquidgen.utils.device import resolve_device, resolve_dtype

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    path = Path(args.model) if args.model is not None else shipped(TINY_MODEL)
    return Pipeline.from_pretrained(
        path, device=device, dtype=dtype, quantize=args.quantize, compile=args.compile
    )


def _print_piece(piece: str) -> None:
    sys.stdout.write(piece)
    sys.stdout.flush()


# --------------------------------------------------------------------------- generate
def _save_format(path: Path) -> str:
    """PIL's format name for ``path``'s extension; ConfigError if PIL cannot write it."""
    from PIL import Image

    Image.init()
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise ConfigError(f"{path}: unsupported image extension {path.suffix or '(none)'!r}")
    return fmt


def output_paths(out: Path, n: int, grid: bool) -> list[Path]:
    """Where ``generate`` writes: ``out`` itself for one image or a grid, else ``out_0.png``..."""
    if n == 1 or grid:
        return [out]
    return [out.with_name(f"{out.stem}_{i}{out.suffix}") for i in range(n)]


def output_path(out: Path, n: int, grid: bool, index: int) -> Path:
    """``output_paths(out, n, grid)[index]`` without building the list."""
    return out if n == 1 or grid else out.with_name(f"{out.stem}_{index}{out.suffix}")


def _check_output(out: Path) -> str:
    if out.is_dir():
        raise ConfigError(f"{out}: is a folder; give an image file name such as {out / 'out.png'}")
    if not out.parent.is_dir():
        raise ConfigError(f"{out.parent}: output folder does not exist")
    return _save_format(out)


def _numbered_folder(out: Path, n: int) -> Path | None:
    """The first of ``out_0 ... out_{n-1}`` that is a folder (one listing of the folder,
    whatever ``n``), if any."""
    name = re.compile(rf"{re.escape(out.stem)}_(0|[1-9][0-9]*){re.escape(out.suffix)}")
    found: list[tuple[int, str]] = []
    with os.scandir(out.parent) as entries:
        for entry in entries:
            match = name.fullmatch(entry.name)
            if match and int(match.group(1)) < n and entry.is_dir():
                found.append((int(match.group(1)), entry.name))
    return out.with_name(min(found)[1]) if found else None


def _check_outputs(out: Path, n: int, grid: bool) -> str:
    """Before the model loads: every file ``generate`` will write can be written (the folder
    exists and takes a file, no ``out_i`` is a folder, PIL writes the extension); stale
    temporaries of killed runs are removed. Returns PIL's format name."""
    from liquidgen.errors import OutputError
    from liquidgen.utils.io import check_output_file, clean_stale_temporaries

    fmt = _check_output(out)
    first = output_path(out, n, grid, 0)
    check_output_file(first)  # not a folder; a real write probe of the folder
    if first == out:
        clean_stale_temporaries(out)
    else:
        folder = _numbered_folder(out, n)
        if folder is not None:
            raise OutputError(f"{folder}: is a folder; cannot write an image of -n {n} there")
        clean_stale_temporaries(out, numbered=True)
    return fmt


def _check_size(args: argparse.Namespace) -> None:
    """Before the model loads: ``--width``/``--height`` against the checkpoint's factor and
    default size (its JSON files alone) and the pixel limit. A released-Liquid folder (no
    ``liquid_layout.json``): the pixel limit only; the pipeline checks the rest."""
    from liquidgen.checkpoint import GenerationDefaults, has_layout, read_layout
    from liquidgen.inference.request import resolve_image_size
    from liquidgen.utils.limits import check_image_pixels

    width, height = args.width, args.height
    if width is None and height is None:
        return
    model = _model_dir(args)
    if model.is_dir() and has_layout(model):
        layout = read_layout(model)
        defaults = GenerationDefaults.load(model, layout)
        width, height = resolve_image_size(defaults, layout, None, width, height)
    if width is not None and height is not None:
        check_image_pixels(width, height, "--width x --height")


def _write(images: list[Image.Image], paths: list[Path], fmt: str, *, clean: bool = True) -> None:
    from liquidgen.utils.io import atomic_path

    for img, path in zip(images, paths, strict=True):
        with atomic_path(path, clean=clean) as tmp:
            img.save(tmp, format=fmt)


def _run_generate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from liquidgen.inference.request import check_image_count, check_prompt, image_sampling
    from liquidgen.inference.sampling import check_seed_range
    from liquidgen.utils.images import image_grid
    from liquidgen.utils.limits import MAX_BATCH_ENV, max_batch

    out = Path(args.output)
    settings = dict(cfg_scale=args.cfg, temperature=args.temperature, top_k=args.top_k)
    settings["top_p"] = args.top_p
    check_prompt(args.prompt)  # model-independent checks before loading the model
    check_image_count(args.n)
    check_seed_range(args.seed, args.n)
    image_sampling(**settings)
    per_part = max_batch()  # images drawn, held and written at a time
    if args.grid and args.n > per_part:
        raise ConfigError(
            f"--grid tiles at most {per_part} images (set {MAX_BATCH_ENV}), got -n {args.n}"
        )
    fmt = _check_outputs(out, args.n, args.grid)
    _check_size(args)
    pipe = _load(args)
    request = pipe.image_request(  # size, prompt length: checked once, before the bar
        args.prompt, width=args.width, height=args.height, n=args.n, seed=args.seed, **settings
    )
    width, height = request.width, request.height
    tile = args.grid and args.n > 1
    first = 0  # index of the part's first image
    with tqdm(
        total=request.total_tokens,
        unit="tok",
        desc="image tokens",
        disable=True if args.quiet else None,  # None: shown on a terminal only
    ) as bar:
        for part in request.chunks(per_part):
            base = first * request.tokens_per_image
            images = pipe.draw(
                part,
                progress=lambda done, _total, base=base: bar.update(base + done - bar.n),
                speculative=args.speculative,
            )
            if tile:  # one part: --grid takes at most max_batch() images
                _write([image_grid(images)], [out], fmt)
                break
            paths = [output_path(out, args.n, False, first + j) for j in range(len(images))]
            _write(images, paths, fmt, clean=False)  # cleaned once by _check_outputs
            for j, path in enumerate(paths):
                bar.write(f"wrote {path} ({width}x{height}, seed {args.seed + first + j})")
            first += len(images)
    if tile:
        last = args.seed + args.n - 1
        print(f"wrote {out} ({args.n} images of {width}x{height}, seeds {args.seed}-{last})")
    return 0


# --------------------------------------------------------------------------- ask
def _run_ask(args: argparse.Namespace) -> int:
    from liquidgen.inference.request import as_rgb_image, check_prompt

    image = as_rgb_image(args.image)
    if args.question is not None:
        check_prompt(args.question, "question")
    sampling = _text_sampling(args)
    pipe = _load(args)
    if args.question is None:
        pipe.caption(image, sampling, stream=_print_piece)
    else:
        pipe.answer(image, args.question, sampling, stream=_print_piece)
    print()
    return 0


# --------------------------------------------------------------------------- chat
def _read_stdin() -> str:
    """All of stdin as text, decoded strictly as UTF-8 (a byte-order mark dropped):
    :class:`ConfigError` for bytes that are not UTF-8."""
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:  # a text stream without bytes (e.g. replaced in tests)
        return sys.stdin.read()
    data = stream.read()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"the message on stdin is not valid UTF-8 (byte 0x{data[e.start]:02x} at "
            f"offset {e.start})"
        ) from None


def _run_chat(args: argparse.Namespace) -> int:
    from liquidgen.errors import LiquidgenError
    from liquidgen.inference.request import as_rgb_image, check_prompt, check_text

    image = as_rgb_image(args.image) if args.image is not None else None
    sampling = _text_sampling(args)
    system = [{"role": "system", "content": args.system}] if args.system else []
    if args.system:
        check_text(args.system, "system message")
    interactive = sys.stdin.isatty()
    if not interactive:
        message = _read_stdin().strip()
        check_prompt(message, "message")
        pipe = _load(args)
        pipe.chat(
            [*system, {"role": "user", "content": message}],
            sampling,
            image=image,
            stream=_print_piece,
        )
        print()
        return 0

    pipe = _load(args)
    print(_REPL_HELP)
    history: list[dict[str, str]] = []
    while True:
        try:
            line = input(_REPL_PROMPT).strip()
        except EOFError:
            print()
            return 0
        except UnicodeDecodeError as e:  # a line that is not UTF-8: say so, keep the REPL
            print(f"liquidgen: error: the message is not valid UTF-8 ({e.reason})", file=sys.stderr)
            continue
        if not line:
            continue
        if line == _EXIT:
            return 0
        if line == _RESET:
            history = []
            print("(conversation cleared)")
            continue
        turn = [*history, {"role": "user", "content": line}]
        try:
            reply = pipe.chat([*system, *turn], sampling, image=image, stream=_print_piece)
        except LiquidgenError as e:  # e.g. the conversation outgrew the context: keep the REPL
            print(f"liquidgen: error: {e}", file=sys.stderr)
            continue
        print()
        history = [*turn, {"role": "assistant", "content": reply}]


# --------------------------------------------------------------------------- registration
def _default_help(default: str) -> str:
    return f"(default: the checkpoint's, {default} for Liquid-7B)"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``generate``, ``ask`` and ``chat`` to the ``liquidgen`` parser."""
    from liquidgen.utils.args import finite_float_arg, seed_arg

    gen = subparsers.add_parser(
        "generate",
        help="draw images from a text prompt",
        description="Draw images from a text prompt with classifier-free guidance. "
        "Several images go to OUT_0.png, OUT_1.png, ... (or one tiled image with --grid). "
        "Sampling settings default to the checkpoint's liquid_generation.json, else to the "
        "authors' (cfg 7.0, temperature 0.99, top-k 4096, top-p 0.96). The same seed gives "
        "the same images; image j of a run uses seed + j.",
    )
    gen.add_argument("prompt", metavar="PROMPT", help="what to draw")
    gen.add_argument(
        "-o", "--output", required=True, metavar="OUT", help="output image file (.png, .jpg, ...)"
    )
    _add_model_args(gen)
    gen.add_argument(
        "--width",
        type=int,
        default=None,
        help="image width in pixels, a multiple of the tokenizer's factor " + _default_help("512"),
    )
    gen.add_argument(
        "--height", type=int, default=None, help="image height in pixels " + _default_help("512")
    )
    gen.add_argument(
        "-n",
        type=int,
        default=1,
        help="number of images (default 1); drawn and written LIQUIDGEN_MAX_BATCH (256) at a time",
    )
    gen.add_argument(
        "--cfg",
        type=finite_float_arg,
        default=None,
        help="guidance scale >= 0, <= 1 turns it off " + _default_help("7.0"),
    )
    gen.add_argument(
        "--temperature", type=finite_float_arg, default=None, help="> 0 " + _default_help("0.99")
    )
    gen.add_argument(
        "--top-k",
        type=int,
        default=None,
        help=">= 0, 0 disables, capped to the codebook " + _default_help("4096"),
    )
    gen.add_argument(
        "--top-p", type=finite_float_arg, default=None, help="in (0, 1] " + _default_help("0.96")
    )
    gen.add_argument(
        "--seed",
        type=seed_arg,
        default=0,
        help="random seed in [0, 2**63 - 1]; image j uses seed + j (default 0)",
    )
    gen.add_argument(
        "--speculative",
        default=None,
        choices=["jacobi"],
        help="speculative Jacobi decoding: several image tokens per forward, the same "
        "distribution as plain sampling (not the same images for a seed)",
    )
    gen.add_argument("--grid", action="store_true", help="tile the n images into one file")
    gen.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bar (it shows image tokens/s on a terminal)",
    )
    gen.set_defaults(func=_run_generate)

    ask = subparsers.add_parser(
        "ask",
        help="answer a question about an image (or caption it)",
        description="Answer QUESTION about IMAGE, streaming the answer to stdout (greedy unless "
        "--sample). Without QUESTION the image is captioned.",
    )
    ask.add_argument("image", metavar="IMAGE", help="image file")
    ask.add_argument("question", metavar="QUESTION", nargs="?", default=None, help="the question")
    _add_model_args(ask)
    _add_text_args(ask)
    ask.set_defaults(func=_run_ask)

    chat = subparsers.add_parser(
        "chat",
        help="chat with the model (interactive, or one turn from stdin)",
        description="Chat with the model using its chat template. On a terminal this is an "
        "interactive session (/reset clears it, /exit or Ctrl-D quits); otherwise stdin is read "
        "as one user message and the reply is printed.",
    )
    _add_model_args(chat)
    chat.add_argument(
        "--system", default=None, help="system message placed before the conversation"
    )
    chat.add_argument(
        "--image", default=None, metavar="IMAGE", help="image placed in the first user turn"
    )
    _add_text_args(chat)
    chat.set_defaults(func=_run_chat)
