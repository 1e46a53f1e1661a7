"""Opening a checkpoint folder for inference: what :meth:`Pipeline.from_pretrained
<liquidgen.inference.pipeline.Pipeline.from_pretrained>` wraps.

:func:`load_checkpoint` resolves the device and dtype once (:mod:`liquidgen.utils.device`),
loads the language model, tokenizer and layout (:func:`liquidgen.model.load_liquid`),
optionally quantizes the decoder, and reads the VQGAN and the generation defaults through
:mod:`liquidgen.checkpoint`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch
from transformers import PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from liquidgen.checkpoint import GenerationDefaults, find_vq_dir
from liquidgen.errors import CheckpointError, ConfigError
from liquidgen.inference.quantize import QUANTIZE_CHOICES, apply_quantization
from liquidgen.model import load_liquid
from liquidgen.tokenizer import VQGAN
from liquidgen.utils.device import quiet_loading, resolve_device, resolve_dtype
from liquidgen.vocab import VocabLayout

# The VQGAN always runs in float32: nearest-code search and decoding stay reference-exact.
VQ_DTYPE = torch.float32


@dataclasses.dataclass
class LoadedCheckpoint:
    """The parts of a checkpoint a :class:`~liquidgen.inference.pipeline.Pipeline` holds."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    layout: VocabLayout
    vq: VQGAN | None  # None: a text-only checkpoint
    defaults: GenerationDefaults


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    vq_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
    quantize: str | None = None,
) -> LoadedCheckpoint:
    """Load the checkpoint folder ``path`` (arguments as in ``Pipeline.from_pretrained``).

    Raises:
        CheckpointError: the folder is missing, incomplete, corrupt or inconsistent.
        ConfigError: an unknown or unavailable device or dtype, an unknown quantization.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: model folder not found")
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    if quantize is not None and quantize not in QUANTIZE_CHOICES:
        raise ConfigError(
            f"unknown quantization {quantize!r} (known: {', '.join(QUANTIZE_CHOICES)})"
        )
    with quiet_loading(not progress):
        model, tokenizer, layout = load_liquid(path, device=device, dtype=dtype, vq_dir=vq_dir)
    apply_quantization(model, quantize)
    vq_path = Path(vq_dir) if vq_dir is not None else find_vq_dir(path)
    vq = None if vq_path is None else VQGAN.from_pretrained(vq_path, device=device, dtype=VQ_DTYPE)
    defaults = GenerationDefaults.load(path, layout)
    return LoadedCheckpoint(model, tokenizer, layout, vq, defaults)
