"""Deprecated import path: :mod:`liquidgen.inference.pipeline` (kept for one release, see docs/inference.md)."""

import sys

from liquidgen.inference import pipeline as _module

sys.modules[__name__] = _module
