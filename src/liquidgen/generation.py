"""Deprecated import path: :mod:`liquidgen.inference.generation` (kept for one release, see docs/inference.md)."""

import sys

from liquidgen.inference import generation as _module

sys.modules[__name__] = _module
