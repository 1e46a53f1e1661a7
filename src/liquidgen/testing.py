"""Deprecated: the tiny test-model builders moved to ``tests/tiny_models.py`` (kept for one release).

They are test fixtures, not library code. In a source checkout this module still re-exports
them (``from liquidgen.testing import make_tiny_liquid`` keeps working); use
``PYTHONPATH=tests python -c "from tiny_models import make_tiny_liquid; ..."`` instead.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

_SOURCE = Path(__file__).resolve().parents[2] / "tests" / "tiny_models.py"
if not _SOURCE.is_file():
    raise ImportError(
        "liquidgen.testing moved to tests/tiny_models.py in the source repository; "
        "it is not part of an installed liquidgen"
    )
warnings.warn(
    "liquidgen.testing is deprecated: import tiny_models from the repository's tests/ folder",
    DeprecationWarning,
    stacklevel=2,
)
_spec = importlib.util.spec_from_file_location("tiny_models", _SOURCE)
assert _spec is not None and _spec.loader is not None
_module = sys.modules.get("tiny_models") or importlib.util.module_from_spec(_spec)
if "tiny_models" not in sys.modules:
    sys.modules["tiny_models"] = _module
    _spec.loader.exec_module(_module)
sys.modules[__name__] = _module
