"""Deprecated import path: :mod:`liquidgen.inference.cli` (kept for one release, see docs/inference.md)."""

import sys

from liquidgen.inference import cli as _module

sys.modules[__name__] = _module
