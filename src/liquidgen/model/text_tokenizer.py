"""Byte-level BPE text tokenizers for models trained from scratch.

A Liquid model built on a pretrained LLM reuses that LLM's tokenizer (see
:mod:`liquidgen.model.expand`). A model trained from scratch needs its own: this module
trains a byte-level BPE with the `tokenizers` library (every byte is in the initial
alphabet, so any text encodes without an unknown token) and wraps it in a
:class:`~transformers.PreTrainedTokenizerFast` that ``AutoTokenizer`` loads back from
``tokenizer.json``.

The special tokens take the first ids, in this order: ``<pad>`` 0, ``<bos>`` 1,
``<eos>`` 2, ``<boi>`` 3, ``<eoi>`` 4, ``<unconditional>`` 5. Encoding adds ``<bos>``
in front (like Gemma and Llama tokenizers), and the tokenizer carries
:data:`liquidgen.formats.PLAIN_CHAT_TEMPLATE` as its chat template.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from liquidgen.errors import ConfigError
from liquidgen.formats import PLAIN_CHAT_TEMPLATE
from liquidgen.utils.io import atomic_dir
from liquidgen.vocab import BOI_TOKEN, EOI_TOKEN, UNCOND_TOKEN

PAD_TOKEN = "<pad>"
BOS_TOKEN = "<bos>"
EOS_TOKEN = "<eos>"
SPECIAL_TOKENS: tuple[str, ...] = (
    PAD_TOKEN,
    BOS_TOKEN,
    EOS_TOKEN,
    BOI_TOKEN,
    EOI_TOKEN,
    UNCOND_TOKEN,
)
BYTE_ALPHABET_SIZE = 256  # byte-level BPE starts from every byte value
MIN_VOCAB_SIZE = BYTE_ALPHABET_SIZE + len(SPECIAL_TOKENS)


def train_text_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    *,
    min_frequency: int = 2,
    show_progress: bool = False,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``texts``.

    Args:
        texts: training documents (any iterable; consumed once).
        vocab_size: target size including the 256 byte symbols and the special tokens.
            The result can be smaller when the corpus has too few pairs to merge.
        min_frequency: a pair must occur this often to be merged.
        show_progress: show the `tokenizers` trainer's progress bar.

    Returns:
        A tokenizer whose ``bos/eos/pad`` tokens are set, with ``<boi>``, ``<eoi>`` and
        ``<unconditional>`` as special tokens and a plain chat template.
    """
    if vocab_size < MIN_VOCAB_SIZE:
        raise ConfigError(
            f"vocab_size must be >= {MIN_VOCAB_SIZE} (256 bytes + specials), got {vocab_size}"
        )
    if min_frequency < 1:
        raise ConfigError(f"min_frequency must be >= 1, got {min_frequency}")
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=show_progress,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    bos_id = backend.token_to_id(BOS_TOKEN)
    # Encoding a single text prepends <bos>; pairs are not used by liquidgen.
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A",
        pair=f"{BOS_TOKEN} $A {BOS_TOKEN} $B",
        special_tokens=[(BOS_TOKEN, bos_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        chat_template=PLAIN_CHAT_TEMPLATE,
    )


def save_text_tokenizer(
    tokenizer: PreTrainedTokenizerFast, out_dir: str | os.PathLike[str]
) -> Path:
    """Save ``tokenizer`` (``tokenizer.json`` + ``tokenizer_config.json``) atomically."""
    with atomic_dir(out_dir) as tmp:
        tokenizer.save_pretrained(tmp)
    return Path(out_dir)


def read_texts(paths: Sequence[str | os.PathLike[str]], *, text_key: str = "text") -> Iterator[str]:
    """Yield training documents from files.

    ``.jsonl`` files give one document per line, read from ``text_key``; any other file
    is plain text with one document per non-empty line.
    """
    for raw in paths:
        path = Path(raw)
        if not path.is_file():
            raise ConfigError(f"{path}: no such text file")
        with path.open(encoding="utf-8") as handle:
            for lineno, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                if path.suffix == ".jsonl":
                    try:
                        record = json.loads(line)
                        yield str(record[text_key])
                    except (json.JSONDecodeError, KeyError, TypeError) as e:
                        raise ConfigError(
                            f"{path}:{lineno}: expected a JSON object with {text_key!r} ({e})"
                        ) from e
                else:
                    yield line.rstrip("\n")
