"""liquidgen: Liquid (arXiv 2412.04332) — one decoder-only LLM that reads and writes images.

The pipeline, one module per stage:

- :mod:`liquidgen.tokenizer` — the VQGAN image tokenizer (pixels <-> discrete codes).
- :mod:`liquidgen.vocab` — the vocabulary layout (text ids, image offset, special ids).
- :mod:`liquidgen.world` — a procedural image-text world with exact scorers.
"""

from liquidgen.errors import LiquidgenError

__version__ = "0.1.0"
__all__ = ["LiquidgenError", "__version__"]
