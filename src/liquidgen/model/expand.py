"""Turn a text-only Hugging Face causal LM into a Liquid model (``liquidgen expand``).

Three steps, all on the backbone's own `transformers` classes:

1. **Image offset.** ``image_offset`` starts as the number of rows of the backbone's input
   embedding (``config.vocab_size``: 256000 for Gemma, 151936 for Qwen2.5), *not*
   ``len(tokenizer)`` (151665 for Qwen2.5): ids in between are padding rows the model
   never saw as text, and image ids must not move when the tokenizer changes.
2. **Special tokens.** ``<boi>``, ``<eoi>``, ``<unconditional>`` reuse spare slots when the
   tokenizer has at least three: tokens named like ``<unused0>`` (Gemma, as the released
   Liquid-7B does), ``<|reserved_special_token_0|>`` (Llama-3) or ``[unused0]`` — the
   lowest ids first, so Gemma gets 7, 8, 9 exactly like Liquid-7B. The slot is renamed in
   the tokenizer files and keeps its id and its trained embedding row. Otherwise the
   three are added as new special tokens with ids ``len(tokenizer)``,... When these fit
   below the embedding rows (Qwen2.5's padding rows) the offset is unchanged. When they do
   not (``len(tokenizer) == config.vocab_size`` and no spare slot), the text part grows:
   ``image_offset`` becomes the new tokenizer length, so the special ids stay text ids and
   the codes follow them. Tokens already named ``<boi>``/... are kept (no double work).
3. **Image rows.** ``resize_token_embeddings(image_offset + codebook_size,
   mean_resizing=True)`` appends rows drawn around the mean of the old ones (HF samples
   them from N(mean, 1e-9 * covariance)), the input embedding and the LM head alike; tied
   weights stay tied. Old rows are untouched, so logits of text ids on text-only inputs
   are unchanged.

The result is written atomically as a complete liquidgen checkpoint (see
:mod:`liquidgen.model.unified`) with the VQGAN copied into ``vq/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from tokenizers import AddedToken
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from liquidgen.checkpoint import HF_CONFIG_FILE, LAYOUT_FILE, has_layout, read_vq_spec
from liquidgen.errors import ConfigError
from liquidgen.model.unified import save_liquid
from liquidgen.vocab import BOI_TOKEN, EOI_TOKEN, UNCOND_TOKEN, VocabLayout

IMAGE_TOKENS: tuple[str, str, str] = (BOI_TOKEN, EOI_TOKEN, UNCOND_TOKEN)
# Names of placeholder tokens that tokenizers ship unused, free to take a new meaning.
SPARE_SLOT_PATTERN = re.compile(
    r"<unused\d+>"  # Gemma
    r"|<\|reserved_special_token_\d+\|>"  # Llama-3
    r"|\[unused\d+\]"  # BERT-style vocabularies
    r"|<\|unused_?\d+\|>|<\|reserved_?\d+\|>"  # other chat tokenizers
)
_TOKENIZER_FILE = "tokenizer.json"
_SIDE_FILES = ("tokenizer_config.json", "special_tokens_map.json")


def spare_slots(tokenizer: PreTrainedTokenizerBase, text_rows: int) -> list[int]:
    """Ids (ascending) of unused placeholder tokens that have an embedding row and are not
    the tokenizer's bos/eos/pad/unk."""
    taken = {
        tokenizer.bos_token_id,
        tokenizer.eos_token_id,
        tokenizer.pad_token_id,
        tokenizer.unk_token_id,
    }
    return sorted(
        i
        for token, i in tokenizer.get_vocab().items()
        if SPARE_SLOT_PATTERN.fullmatch(token) and i < text_rows and i not in taken
    )


def _rename_in_json(value: Any, renames: dict[str, str]) -> Any:
    """Replace strings equal to an old name (lists, dict values, nested) by the new name."""
    if isinstance(value, str):
        return renames.get(value, value)
    if isinstance(value, list):
        return [_rename_in_json(v, renames) for v in value]
    if isinstance(value, dict):
        return {k: _rename_in_json(v, renames) for k, v in value.items()}
    return value


def rename_tokens(
    tokenizer: PreTrainedTokenizerBase, renames: dict[int, str], workdir: str | os.PathLike[str]
) -> PreTrainedTokenizerBase:
    """Give the tokens at the ids in ``renames`` new names (same ids), as special tokens.

    `transformers` has no API for this, so the saved files are edited: in
    ``tokenizer.json`` the model vocabulary key and the added-token entry (created if the
    slot was a plain vocabulary entry), and every exact mention of the old name in
    ``tokenizer_config.json`` / ``special_tokens_map.json``. The tokenizer is reloaded from
    ``workdir`` and checked.
    """
    workdir = Path(workdir)
    tokenizer.save_pretrained(workdir)
    old_names = {i: tokenizer.convert_ids_to_tokens(i) for i in renames}
    by_name = {old_names[i]: new for i, new in renames.items()}
    path = workdir / _TOKENIZER_FILE
    if not path.is_file():
        raise ConfigError(
            "the base tokenizer has no tokenizer.json (only fast tokenizers are supported)"
        )
    doc = json.loads(path.read_text(encoding="utf-8"))
    vocab = doc["model"].get("vocab")
    for i, new in renames.items():
        if isinstance(vocab, dict) and old_names[i] in vocab:
            vocab[new] = vocab.pop(old_names[i])
        elif isinstance(vocab, list):  # Unigram: [[piece, score], ...] indexed by id
            vocab[i][0] = new
    added = {entry["id"]: entry for entry in doc["added_tokens"]}
    for i, new in renames.items():
        entry = added.setdefault(
            i,
            {"id": i, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False},
        )
        entry.update(content=new, special=True)
    doc["added_tokens"] = [added[i] for i in sorted(added)]
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    for name in _SIDE_FILES:
        side = workdir / name
        if side.is_file():
            data = json.loads(side.read_text(encoding="utf-8"))
            side.write_text(
                json.dumps(_rename_in_json(data, by_name), ensure_ascii=False, indent=2),
                encoding="utf-8",
            )
    reloaded = AutoTokenizer.from_pretrained(workdir, local_files_only=True)
    for i, new in renames.items():
        if reloaded.convert_tokens_to_ids(new) != i:
            raise ConfigError(
                f"renaming token {i} to {new} failed (tokenizer class {type(tokenizer).__name__})"
            )
    return reloaded


def register_image_tokens(
    tokenizer: PreTrainedTokenizerBase, text_rows: int, workdir: str | os.PathLike[str]
) -> tuple[PreTrainedTokenizerBase, int]:
    """Make ``<boi>``, ``<eoi>``, ``<unconditional>`` tokens (see the module doc for the rules).

    Args:
        tokenizer: the backbone's tokenizer.
        text_rows: rows of the backbone's embedding.
        workdir: scratch folder for the renamed tokenizer files.

    Returns:
        The tokenizer holding the three tokens and the text size (the image offset):
        ``text_rows``, or more if new tokens had to be appended past the last row.
    """
    vocab = tokenizer.get_vocab()
    missing = [t for t in IMAGE_TOKENS if t not in vocab]
    if missing:
        slots = spare_slots(tokenizer, text_rows)
        if len(slots) >= len(missing):
            tokenizer = rename_tokens(tokenizer, dict(zip(slots, missing, strict=False)), workdir)
        else:
            tokenizer.add_tokens(
                [AddedToken(t, special=True, normalized=False) for t in missing],
                special_tokens=True,
            )
    top = max(tokenizer.get_vocab().values())
    return tokenizer, max(text_rows, top + 1)


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers' warnings off for the duration (e.g. advice about an argument that
    liquidgen sets on purpose); its verbosity is restored."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)


def expand(
    base_dir: str | os.PathLike[str],
    vq_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
) -> VocabLayout:
    """Add the VQGAN's codes to a local HF causal LM and write a liquidgen checkpoint.

    Args:
        base_dir: a Hugging Face model folder (config, weights, tokenizer); read offline.
        vq_dir: the VQGAN folder, liquidgen (``config.json``) or authors'
            (``vqgan.yaml``) format; only its codebook size and factor are read here, and
            its files are copied into ``out_dir/vq``.
        out_dir: the checkpoint to write (replaced atomically if it exists).
        seed: seeds the sampling of the new rows around the mean.

    Returns:
        The :class:`VocabLayout` stored in ``out_dir/liquid_layout.json``.
    """
    base_dir = Path(base_dir)
    if not (base_dir / HF_CONFIG_FILE).is_file():
        raise ConfigError(f"{base_dir}: no {HF_CONFIG_FILE} (not a Hugging Face model folder)")
    if has_layout(base_dir):
        raise ConfigError(f"{base_dir} is already a liquidgen checkpoint ({LAYOUT_FILE} present)")
    vq = read_vq_spec(vq_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(base_dir, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype="auto", local_files_only=True)
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"{base_dir}: cannot load the base model ({type(e).__name__}: {e})"
        ) from e
    text_rows = model.get_input_embeddings().num_embeddings
    top = max(tokenizer.get_vocab().values())
    if top >= text_rows:
        raise ConfigError(f"{base_dir}: tokenizer id {top} has no embedding row ({text_rows} rows)")
    with tempfile.TemporaryDirectory(prefix="liquidgen-expand-") as work:
        tokenizer, image_offset = register_image_tokens(tokenizer, text_rows, work)
        torch.manual_seed(seed)
        with _quiet_transformers():  # its "To disable this, use mean_resizing=False" notice
            model.resize_token_embeddings(image_offset + vq.codebook_size, mean_resizing=True)
        vocab = tokenizer.get_vocab()
        pad = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )
        layout = VocabLayout(
            image_offset=image_offset,
            codebook_size=vq.codebook_size,
            boi_id=vocab[BOI_TOKEN],
            eoi_id=vocab[EOI_TOKEN],
            uncond_id=vocab[UNCOND_TOKEN],
            bos_id=tokenizer.bos_token_id,
            eos_id=tokenizer.eos_token_id,
            pad_id=pad,
            downsample=vq.downsample,
        )
        save_liquid(out_dir, model, tokenizer, layout, vq_dir=vq_dir)
    return layout
