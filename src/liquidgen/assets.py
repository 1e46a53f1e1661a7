"""Where the models shipped with liquidgen live.

The repository ships small trained models under ``models/`` at its root (an editable
install, as ``make`` sets up, sees them). ``LIQUIDGEN_MODELS`` overrides the folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from liquidgen.errors import CheckpointError

TINY_MODEL = "liquidgen-tiny"  # the shipped unified model (LM + its VQGAN in vq/)


def models_dir() -> Path:
    """Folder holding the shipped models."""
    env = os.environ.get("LIQUIDGEN_MODELS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "models"


def shipped(name: str) -> Path:
    """Path of a shipped model folder; raises :class:`CheckpointError` if it is absent."""
    path = models_dir() / name
    if not path.is_dir():
        raise CheckpointError(
            f"shipped model {name!r} not found at {path} (set LIQUIDGEN_MODELS or pass --model)"
        )
    return path
