"""``liquidgen train``, ``liquidgen data tokenize`` and ``liquidgen curves``: thin entry points
over the training package."""

from __future__ import annotations

import argparse
import codecs
import os
import shutil
import sys
from pathlib import Path

from liquidgen.errors import ConfigError, OutputError
from liquidgen.utils.args import positive_int_arg, size_arg
from liquidgen.utils.io import check_writable_dir
from liquidgen.utils.limits import check_batch

TEXT_SUFFIXES = (".txt", ".jsonl")  # local inputs read as UTF-8 text


def check_utf8_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> None:
    """Raise :class:`ConfigError` unless the file ``path`` is valid UTF-8 (read in chunks)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    done = 0
    with open(path, "rb") as f:
        while block := f.read(chunk):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as e:
                raise ConfigError(
                    f"{path}: not UTF-8 text (byte {done + e.start}: {e.reason})"
                ) from None
            done += len(block)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as e:
            raise ConfigError(
                f"{path}: not UTF-8 text (truncated at the end: {e.reason})"
            ) from None


def _run_train(args: argparse.Namespace) -> int:
    from liquidgen.training.config import load_config
    from liquidgen.training.trainer import train

    config = load_config(args.config, args.overrides)
    if args.print_config:
        print(config.to_yaml(), end="")
        return 0
    out_dir = Path(config.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"out_dir {out_dir} exists and is not a folder")
    check_writable_dir(out_dir)  # before the model loads
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # per-load "Loading weights" bars would interleave with ours
    result = train(config)
    if result.val and os.environ.get("RANK", "0") == "0":
        summary = ", ".join(
            f"{k} {v:.4f}" for k, v in sorted(result.val.items()) if not k.endswith("/tokens")
        )
        print(f"liquidgen: step {result.step}: {summary}")
    return 0


def _run_tokenize(args: argparse.Namespace) -> int:
    from liquidgen.training.data import tokenize_dataset
    from liquidgen.training.inputs import open_input

    # Every input and the output location are checked before any work or output.
    out_dir = Path(args.out)
    check_writable_dir(out_dir)
    check_batch(args.batch_size, "--batch-size")
    local = Path(args.input)
    if local.suffix in TEXT_SUFFIXES and local.is_file():
        check_utf8_file(local)
    source = open_input(args.input)
    vqgan = None
    if args.vqgan is not None:
        from liquidgen.tokenizer import VQGAN

        vqgan = VQGAN.from_pretrained(args.vqgan)
    elif source.has_images:
        raise ConfigError(f"{args.input} has images: pass --vqgan DIR")
    existed = out_dir.exists()
    try:
        out = tokenize_dataset(
            source,
            out_dir,
            vqgan=vqgan,
            image_size=args.size,
            preprocess=args.preprocess,
            shard_size=args.shard_size,
            batch_size=args.batch_size,
            progress=not args.quiet and sys.stderr.isatty(),  # no bar in logs and errors
        )
    except BaseException:
        # A folder this run created and in which no shard was finished is removed whole
        # (settings.json alone is not worth keeping); finished shards stay for a resume.
        if not existed and out_dir.is_dir() and not any(out_dir.glob("shard-*.json")):
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    print(f"liquidgen: {len(source)} records -> {out}")
    return 0


def _run_curves(args: argparse.Namespace) -> int:
    from liquidgen.training.report import compare_runs

    runs = []
    for spec in args.runs:
        run_dir, _, label = spec.partition("=")
        runs.append((label or os.path.basename(os.path.normpath(run_dir)), run_dir))
    out = compare_runs(runs, args.metric or ["text/loss"], args.out, x=args.x)
    print(out)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train``, ``data tokenize`` and ``curves`` to the ``liquidgen`` parser."""
    from liquidgen.training.report import X_AXES

    curves = subparsers.add_parser(
        "curves",
        help="plot validation metrics of several training runs on one figure",
        description=(
            "Compare training runs: one panel per validation metric (from each run's "
            "metrics.jsonl), against the step, the tokens trained on, or training compute "
            "6 x parameters x tokens (parameters counted in the newest checkpoint)."
        ),
    )
    curves.add_argument(
        "runs", nargs="+", metavar="RUN_DIR[=LABEL]", help="a trainer out_dir (has metrics.jsonl)"
    )
    curves.add_argument(
        "--metric",
        action="append",
        metavar="NAME",
        help="validation metric, e.g. text/loss, t2i/loss, vqa/acc (repeat; default text/loss)",
    )
    curves.add_argument("--x", choices=X_AXES, default="step", help="x axis (default: step)")
    curves.add_argument("--out", required=True, help="PNG to write")
    curves.set_defaults(func=_run_curves)

    train = subparsers.add_parser(
        "train",
        help="train a Liquid model on a data mixture (YAML recipe)",
        description=(
            "Train or fine-tune a liquidgen checkpoint on a mixture of tokenized text, text-to-image, "
            "captioning and VQA data. Resumes from the newest valid checkpoint in out_dir. "
            "Multi-process: torchrun --nproc_per_node=N -m liquidgen train CONFIG.yaml"
        ),
    )
    train.add_argument("config", help="YAML recipe (see configs/ and docs/training.md)")
    train.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="override recipe values by dotted path, e.g. optim.lr=1e-3 data.sources.0.weight=2",
    )
    train.add_argument(
        "--print-config", action="store_true", help="print the resolved config and exit"
    )
    train.set_defaults(func=_run_train)

    data = subparsers.add_parser(
        "data",
        help="prepare training data",
        description="Prepare training data for `liquidgen train`.",
    )
    data_sub = data.add_subparsers(dest="data_command", metavar="COMMAND")
    tok = data_sub.add_parser(
        "tokenize",
        help="encode a dataset's images to VQGAN codes once, into memory-mapped shards",
        description=(
            "Encode every image of a dataset to VQGAN codes and write them, with their captions, "
            "questions/answers and texts, as memory-mapped shards + an index. Re-running the same "
            "command resumes: finished shards are skipped."
        ),
    )
    tok.add_argument(
        "--input",
        required=True,
        help=(
            "the dataset: a folder with metadata.jsonl (liquidgen world), a .jsonl file "
            "({image, captions, qa, text} per line), a .txt file (blank-line separated documents), "
            "easy-vqa:train|test (the easy-vqa package), pydoc:train|validation (Python docs text) "
            "or stdlib-docs:train|validation (that + the standard library's docstrings)"
        ),
    )
    tok.add_argument("--out", required=True, help="output folder (created; resumable)")
    tok.add_argument(
        "--vqgan", help="VQGAN folder (liquidgen or authors' format); needed for images"
    )
    tok.add_argument(
        "--size",
        type=size_arg,
        help="bring every image to N or WxH pixels first (default: native size)",
    )
    tok.add_argument(
        "--preprocess",
        choices=("generation", "understanding"),
        default="generation",
        help="with --size: resize+centre-crop (generation, default) or pad to square (understanding)",
    )
    tok.add_argument(
        "--shard-size", type=positive_int_arg, default=1024, help="records per shard (default 1024)"
    )
    tok.add_argument(
        "--batch-size",
        type=positive_int_arg,
        default=16,
        help="images per VQGAN forward (default 16; at most LIQUIDGEN_MAX_BATCH, default 256)",
    )
    tok.add_argument(
        "--quiet", action="store_true", help="no progress bar (shown only on a terminal)"
    )
    tok.set_defaults(func=_run_tokenize)
    data.set_defaults(func=lambda _args: data.print_help() or 2)
