"""Inference: from a user's request to images and text.

- :mod:`liquidgen.inference.sampling` — logit processing and drawing (Liquid's CFG sampler);
- :mod:`liquidgen.inference.request` — a request validated once into settings the lower
  layers trust (:class:`ImageSampling`, :class:`TextSampling`, :class:`ImageRequest`);
- :mod:`liquidgen.inference.generation` — every KV-cached decode loop (image codes, text,
  batched greedy text), gathered from :mod:`~liquidgen.inference.decoding` (what the loops
  share), :mod:`~liquidgen.inference.image_generation` and
  :mod:`~liquidgen.inference.text_generation`; :mod:`~liquidgen.inference.static` and
  :mod:`~liquidgen.inference.jacobi` (static KV cache, speculative Jacobi decoding);
- :mod:`liquidgen.inference.pipeline` — :class:`Pipeline`, the user API (opening a checkpoint:
  :mod:`~liquidgen.inference.loading`; scoring text: :mod:`~liquidgen.inference.scoring`);
- :mod:`liquidgen.inference.cli` — ``liquidgen generate | ask | chat``.

Names are imported on first use, so ``import liquidgen.inference.sampling`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from liquidgen.inference.pipeline import Pipeline
    from liquidgen.inference.request import ImageRequest, ImageSampling, TextSampling

_EXPORTS = {
    "Pipeline": "liquidgen.inference.pipeline",
    "ImageRequest": "liquidgen.inference.request",
    "ImageSampling": "liquidgen.inference.request",
    "TextSampling": "liquidgen.inference.request",
}
__all__ = ["ImageRequest", "ImageSampling", "Pipeline", "TextSampling"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'liquidgen.inference' has no attribute {name!r}")
