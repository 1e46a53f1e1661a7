"""Autoregressive decoding with a KV cache for any transformers causal LM: every decode loop.

The loops live in three modules; this one gathers their public names (the import path of
existing callers, ``liquidgen.generation`` included):

- :mod:`liquidgen.inference.decoding` — what every loop shares, shaped like gpt-fast: the
  logits functions (:class:`FullVocabLogits`, :class:`ImageRowLogits`: the image rows of the LM
  head only), :func:`left_pad`, :func:`prefill`, :func:`decode_one_token`,
  :func:`decode_n_tokens`, and :func:`start_decoding` (a ``DynamicCache`` or the static cache
  of :mod:`liquidgen.inference.static`);
- :mod:`liquidgen.inference.image_generation` — Liquid's batched CFG sampler:
  :func:`sample_image_codes` runs a resolved :class:`~liquidgen.inference.request.ImageRequest`
  as it is, :func:`generate_image_tokens` checks raw prompt ids first, :func:`images_per_forward`
  (speculative Jacobi decoding: :mod:`liquidgen.inference.jacobi`);
- :mod:`liquidgen.inference.text_generation` — :func:`decode_until_stop` (rows until each draws
  a stop id), :func:`generate_text` (one prompt, streamed through :class:`TextStream`) and
  :func:`greedy_texts` (a batch of prompts).
"""

from __future__ import annotations

from liquidgen.inference.decoding import (
    DecodeState,
    FullVocabLogits,
    ImageRowLogits,
    LogitsFn,
    ProgressFn,
    cache_kwargs,
    decode_n_tokens,
    decode_one_token,
    left_pad,
    prefill,
    start_decoding,
)
from liquidgen.inference.image_generation import (
    DECODE_MEMORY_ENV,
    DEFAULT_DECODE_MEMORY_MB,
    DEFAULT_JACOBI_WINDOW,
    SPECULATIVE_CHOICES,
    decode_memory_budget,
    generate_image_tokens,
    images_per_forward,
    kv_bytes_per_token,
    sample_image_codes,
)
from liquidgen.inference.text_generation import (
    TextGeneration,
    TextStream,
    decode_until_stop,
    generate_text,
    greedy_texts,
    strip_leading,
)

__all__ = [
    "DECODE_MEMORY_ENV",
    "DEFAULT_DECODE_MEMORY_MB",
    "DEFAULT_JACOBI_WINDOW",
    "SPECULATIVE_CHOICES",
    "DecodeState",
    "FullVocabLogits",
    "ImageRowLogits",
    "LogitsFn",
    "ProgressFn",
    "TextGeneration",
    "TextStream",
    "cache_kwargs",
    "decode_memory_budget",
    "decode_n_tokens",
    "decode_one_token",
    "decode_until_stop",
    "generate_image_tokens",
    "generate_text",
    "greedy_texts",
    "images_per_forward",
    "kv_bytes_per_token",
    "left_pad",
    "prefill",
    "sample_image_codes",
    "start_decoding",
    "strip_leading",
]
