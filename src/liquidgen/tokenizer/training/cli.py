"""``liquidgen tokenizer train CONFIG.yaml [key=value ...] [--until STEP] [--quiet]``."""

from __future__ import annotations

import argparse

from liquidgen.errors import ConfigError
from liquidgen.tokenizer.training.config import load_vq_config
from liquidgen.tokenizer.training.trainer import train_vqgan
from liquidgen.tokenizer.vqgan import VQGAN


def _cmd_train(args: argparse.Namespace) -> int:
    config = load_vq_config(args.config, args.overrides)
    if args.until is not None and args.until <= 0:
        raise ConfigError(f"--until must be > 0, got {args.until}")
    result = train_vqgan(config, until=args.until, progress=not args.quiet)
    if result.export_dir is None:
        print(f"stopped at step {result.step}/{config.train.steps}; run again to resume")
        return 0
    exported = VQGAN.from_pretrained(result.export_dir)  # proves the export loads
    n_params = sum(p.numel() for p in exported.parameters())
    size_mb = sum(f.stat().st_size for f in result.export_dir.iterdir()) / 2**20
    print(
        f"trained to step {result.step} in {result.seconds:.0f} s; tokenizer -> {result.export_dir} "
        f"({n_params / 1e6:.2f}M parameters, {size_mb:.1f} MB)"
    )
    if result.held_out is not None:
        print("held-out evaluation:")
        print(result.held_out.table())
    return 0


def register_train(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train`` to the ``liquidgen tokenizer`` subcommands."""
    p = subparsers.add_parser(
        "train",
        help="train a (small) VQGAN tokenizer on a folder of images or the procedural world",
        description="Train a VQGAN tokenizer from a YAML config (sections model, data, train, "
        "codebook, gan, perceptual, output; see configs/tokenizer-*.yaml and docs/tokenizer.md). "
        "Resumes automatically from the newest checkpoint in output.run_dir. At the end the "
        "tokenizer is exported (loadable with VQGAN.from_pretrained) and evaluated on held-out images.",
    )
    p.add_argument("config", help="YAML training config")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="override config values, e.g. train.steps=300 output.run_dir=runs/x data.sizes=[64]",
    )
    p.add_argument(
        "--until",
        type=int,
        default=None,
        metavar="STEP",
        help="stop after STEP with a checkpoint (resume later)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)
