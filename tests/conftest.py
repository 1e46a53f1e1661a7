"""Shared pytest fixtures: paths to the golden reference data copied into the repo."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = FIXTURES / "golden"


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    """Folder with the authors' reference outputs (see tests/fixtures/golden/README.md)."""
    return GOLDEN
