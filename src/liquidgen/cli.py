"""The ``liquidgen`` command line: thin entry points mapping subcommands to library functions.

Each feature module exposes ``register(subparsers)`` which adds its subcommand(s) and
sets ``func`` on the parsed namespace. :func:`main` turns :class:`LiquidgenError`
into one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from liquidgen.errors import LiquidgenError

# Modules that contribute subcommands; each has `register(subparsers) -> None`.
_COMMAND_MODULES = [
    "liquidgen.tokenizer.cli",  # tokenizer convert | train | eval
    "liquidgen.world.cli",  # world make | parse
    "liquidgen.model.cli",  # expand, text-tokenizer
    "liquidgen.training.cli",  # data tokenize, train
    "liquidgen.inference_cli",  # generate, ask, chat
    "liquidgen.demo",  # demo
    "liquidgen.evaluation.cli",  # eval t2i | vqa | text | tokenizer | all | fid
]


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors exit with status 2 on one line (argparse's default)."""


def build_parser() -> argparse.ArgumentParser:
    """Build the full ``liquidgen`` parser with every available subcommand."""
    parser = _Parser(
        prog="liquidgen",
        description="Liquid: one LLM that generates images, answers questions about them and writes text.",
    )
    from liquidgen import __version__

    parser.add_argument("--version", action="version", version=f"liquidgen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:  # a feature module not written yet
            if e.name is not None and name.startswith(e.name):
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except LiquidgenError as e:
        print(f"liquidgen: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("liquidgen: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
