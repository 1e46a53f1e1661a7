"""liquidgen: Liquid (arXiv 2412.04332) — one decoder-only LLM that reads and writes images.

The pipeline, one module per stage:

- :mod:`liquidgen.tokenizer` — the VQGAN image tokenizer (pixels <-> discrete codes).
- :mod:`liquidgen.vocab` — the vocabulary layout (text ids, image offset, special ids).
- :mod:`liquidgen.world` — a procedural image-text world with exact scorers.
- :mod:`liquidgen.checkpoint` — the checkpoint folder (layout, generation defaults, VQGAN).
- :mod:`liquidgen.inference` — sampling, decode loops, requests, the CLI, and
  :class:`liquidgen.Pipeline`, the inference API (images, answers, chat); imported on first
  use so that ``import liquidgen`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from liquidgen.errors import LiquidgenError

if TYPE_CHECKING:
    from liquidgen.inference.pipeline import Pipeline

__version__ = "0.1.0"
__all__ = ["LiquidgenError", "Pipeline", "__version__"]


def __getattr__(name: str) -> Any:
    """Import :class:`~liquidgen.inference.pipeline.Pipeline` (torch, transformers) only when asked for."""
    if name == "Pipeline":
        from liquidgen.inference.pipeline import Pipeline

        return Pipeline
    raise AttributeError(f"module 'liquidgen' has no attribute {name!r}")
