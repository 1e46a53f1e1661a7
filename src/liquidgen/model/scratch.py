"""A randomly initialised Hugging Face backbone for models trained from scratch.

The architecture comes from transformers (``AutoConfig.for_model``: ``qwen2``, ``llama``,
``gemma``...); only its size is ours. The vocabulary is the text tokenizer's, so the
folder written here is an ordinary HF causal-LM folder that :func:`liquidgen.model.expand`
then turns into a Liquid model, exactly as it would a pretrained LLM.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from liquidgen.errors import ConfigError
from liquidgen.utils.config import read_yaml_mapping
from liquidgen.utils.io import atomic_dir


def read_backbone_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML mapping with ``model_type`` and the architecture's hyper-parameters."""
    data = read_yaml_mapping(path)
    if "model_type" not in data:
        raise ConfigError(f"{path}: expected a mapping with a model_type (e.g. qwen2, llama)")
    return data


def init_backbone(
    config: dict[str, Any],
    tokenizer_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
) -> Path:
    """Write a random ``AutoModelForCausalLM`` sized by ``config`` with the tokenizer's vocabulary.

    ``config`` holds ``model_type`` plus keyword arguments of that architecture's config
    class (hidden_size, num_hidden_layers, ...). ``vocab_size`` and the bos/eos/pad ids are
    taken from the tokenizer and must not be given.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    params = dict(config)
    model_type = params.pop("model_type")
    for key in ("vocab_size", "bos_token_id", "eos_token_id", "pad_token_id"):
        if key in params:
            raise ConfigError(f"backbone config: {key} comes from the tokenizer; remove it")
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    try:
        hf_config = AutoConfig.for_model(
            model_type,
            vocab_size=len(tokenizer),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **params,
        )
    except (ValueError, TypeError) as e:
        raise ConfigError(f"backbone config: {e}") from e
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(hf_config)
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        # AutoTokenizer may pick the architecture's own tokenizer class over ours (transformers
        # forces it for e.g. qwen2), which adds tokens: refuse rather than shift every id.
        reloaded = AutoTokenizer.from_pretrained(str(tmp))
        if reloaded.get_vocab() != tokenizer.get_vocab():
            raise ConfigError(
                f"model_type {model_type!r}: transformers loads this folder's tokenizer as "
                f"{type(reloaded).__name__}, which changes the vocabulary; use another "
                "architecture (e.g. llama) for a from-scratch tokenizer"
            )
    return out
