"""Deprecated import path: :mod:`liquidgen.inference.sampling` (kept for one release, see docs/inference.md)."""

import sys

from liquidgen.inference import sampling as _module

sys.modules[__name__] = _module
