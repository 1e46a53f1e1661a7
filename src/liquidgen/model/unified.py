"""Save and load the unified Liquid model: one Hugging Face causal LM + its layout.

A liquidgen checkpoint is a folder that alone is enough to run the model (its files are
named, and the non-HF ones read and written, by :mod:`liquidgen.checkpoint`)::

    config.json, model*.safetensors, generation_config.json   the HF model
    tokenizer.json, tokenizer_config.json, ...                 the HF tokenizer
    liquid_layout.json                                         VocabLayout (offset, ids, ...)
    vq/                                                        the VQGAN (optional)

:func:`load_liquid` also opens a folder laid out like the *released* Liquid-7B, which
has no ``liquid_layout.json``: a Hugging Face Gemma folder whose tokenizer already holds
``<boi>``, ``<eoi>`` and ``<unconditional>``, with the authors' ``vqgan.yaml`` /
``vqgan.ckpt`` beside it. Its layout is derived once from the stored numbers: the
embedding has exactly text + image rows, so ``image_offset = config.vocab_size -
codebook_size`` (264192 - 8192 = 256000), and the special ids are looked up in the
tokenizer. Nothing is ever derived from ``len(tokenizer)``.

Loading never touches the network (``local_files_only``) and is strict: missing,
unexpected or mis-shaped weights, or a tokenizer that disagrees with the layout, raise
:class:`~liquidgen.errors.CheckpointError`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, AutoTokenizer, PretrainedConfig, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from liquidgen.checkpoint import (
    HF_CONFIG_FILE,
    LAYOUT_FILE,
    VQ_AUTHORS_FILES,
    VQ_LIQUIDGEN_FILES,
    VQ_SUBDIR,
    VQSpec,
    copy_vq,
    find_vq_dir,
    has_layout,
    read_layout,
    read_vq_spec,
    write_layout,
)
from liquidgen.errors import CheckpointError, ConfigError
from liquidgen.utils.io import atomic_dir
from liquidgen.vocab import BOI_TOKEN, EOI_TOKEN, UNCOND_TOKEN, VocabLayout

# The folder's names and its VQGAN helpers live in liquidgen.checkpoint; re-exported here.
__all__ = [
    "HF_CONFIG_FILE",
    "LAYOUT_FILE",
    "VQ_AUTHORS_FILES",
    "VQ_LIQUIDGEN_FILES",
    "VQ_SUBDIR",
    "VQSpec",
    "check_layout",
    "copy_vq",
    "derive_layout",
    "find_vq_dir",
    "load_liquid",
    "read_vq_spec",
    "save_liquid",
]


def save_liquid(
    out_dir: str | os.PathLike[str],
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    layout: VocabLayout,
    *,
    vq_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Write a complete liquidgen checkpoint atomically (an existing ``out_dir`` is replaced).

    ``vq_dir`` (either VQGAN format) is copied into ``out_dir/vq``.
    """
    check_layout(model, tokenizer, layout)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_layout(tmp, layout)
        if vq_dir is not None:
            copy_vq(Path(vq_dir), tmp / VQ_SUBDIR)
    return out_dir


def _token_id(tokenizer: PreTrainedTokenizerBase, token: str, source: Path) -> int:
    vocab = tokenizer.get_vocab()
    if token not in vocab:
        raise CheckpointError(f"{source}: the tokenizer has no {token} token")
    return int(vocab[token])


def derive_layout(
    config: PretrainedConfig, tokenizer: PreTrainedTokenizerBase, vq: VQSpec, *, source: Path
) -> VocabLayout:
    """The layout of a released-Liquid folder (no ``liquid_layout.json``).

    Its embedding has exactly ``text + codebook`` rows, so the image offset is
    ``config.vocab_size - codebook_size``; ``<boi>``, ``<eoi>``, ``<unconditional>``,
    bos, eos and pad come from the tokenizer (pad falls back to eos).
    """
    vocab_size = int(config.get_text_config().vocab_size)
    offset = vocab_size - vq.codebook_size
    if offset <= 0:
        raise CheckpointError(
            f"{source}: vocab_size {vocab_size} is not larger than the codebook ({vq.codebook_size})"
        )
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    try:
        return VocabLayout(
            image_offset=offset,
            codebook_size=vq.codebook_size,
            boi_id=_token_id(tokenizer, BOI_TOKEN, source),
            eoi_id=_token_id(tokenizer, EOI_TOKEN, source),
            uncond_id=_token_id(tokenizer, UNCOND_TOKEN, source),
            bos_id=tokenizer.bos_token_id,
            eos_id=tokenizer.eos_token_id,
            pad_id=pad,
            downsample=vq.downsample,
        )
    except ConfigError as e:
        raise CheckpointError(f"{source}: {e}") from e


def check_layout(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, layout: VocabLayout
) -> None:
    """Raise :class:`CheckpointError` unless model, tokenizer and layout agree.

    The embedding (and an untied LM head) must have ``layout.vocab_size`` rows, every
    tokenizer id must be a text id (below ``image_offset``), and the tokenizer's
    ``<boi>``/``<eoi>``/``<unconditional>`` must have the layout's ids.
    """
    rows = model.get_input_embeddings().num_embeddings
    if rows != layout.vocab_size:
        raise CheckpointError(
            f"the embedding has {rows} rows but the layout needs {layout.vocab_size} "
            f"({layout.image_offset} text + {layout.codebook_size} image)"
        )
    head = model.get_output_embeddings()
    if head is not None and head.weight.shape[0] != layout.vocab_size:
        raise CheckpointError(
            f"the LM head has {head.weight.shape[0]} rows, the layout needs {layout.vocab_size}"
        )
    vocab = tokenizer.get_vocab()
    top = max(vocab.values())
    if top >= layout.image_offset:
        raise CheckpointError(
            f"tokenizer id {top} collides with image ids (image_offset {layout.image_offset})"
        )
    for token, expected in (
        (BOI_TOKEN, layout.boi_id),
        (EOI_TOKEN, layout.eoi_id),
        (UNCOND_TOKEN, layout.uncond_id),
    ):
        if vocab.get(token) != expected:
            raise CheckpointError(
                f"tokenizer has {token} at id {vocab.get(token)}, the layout says {expected}"
            )


def load_liquid(
    path: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    vq_dir: str | os.PathLike[str] | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, VocabLayout]:
    """Load ``(model, tokenizer, layout)`` from a liquidgen or released-Liquid folder.

    Args:
        path: the checkpoint folder (local; nothing is downloaded).
        device: where to put the model.
        dtype: parameter dtype; ``None`` keeps the stored one.
        vq_dir: only for a released-Liquid folder whose ``vqgan.yaml`` is elsewhere; the
            codebook size it states fixes the image offset.

    Raises:
        CheckpointError: the folder is missing, incomplete, corrupt or inconsistent.
    """
    path = Path(path)
    if not (path / HF_CONFIG_FILE).is_file():
        raise CheckpointError(f"{path}: no {HF_CONFIG_FILE} (not a model folder)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model, info = AutoModelForCausalLM.from_pretrained(
            path,
            dtype=dtype if dtype is not None else "auto",
            local_files_only=True,
            output_loading_info=True,
        )
    except (OSError, ValueError, KeyError, RuntimeError, AttributeError, SafetensorError) as e:
        # AttributeError: e.g. a bit flip in config.json's dtype ("torch.float22"); the first
        # line of transformers' (often multi-line) message is enough for one error line
        reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(
            f"{path}: cannot load the model or tokenizer ({type(e).__name__}: {reason})"
        ) from e
    problems = {
        key: sorted(info.get(key) or ())
        for key in ("missing_keys", "unexpected_keys", "mismatched_keys")
    }
    problems = {key: value for key, value in problems.items() if value}
    if problems:
        raise CheckpointError(f"{path}: weights do not match the config: {problems}")
    if has_layout(path):
        layout = read_layout(path)
    else:
        source = Path(vq_dir) if vq_dir is not None else find_vq_dir(path)
        if source is None:
            raise CheckpointError(
                f"{path}: no {LAYOUT_FILE} and no vqgan.yaml beside the model; "
                "run `liquidgen expand` to make a liquidgen checkpoint"
            )
        layout = derive_layout(model.config, tokenizer, read_vq_spec(source), source=path)
    check_layout(model, tokenizer, layout)
    return model.to(device), tokenizer, layout
