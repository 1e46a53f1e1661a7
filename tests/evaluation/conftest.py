"""A tiny multi-ratio checkpoint for the evaluation tests (built once, about a second)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from liquidgen.checkpoint import GenerationDefaults
from liquidgen.inference.pipeline import Pipeline
from tiny_models import make_tiny_liquid

# Sizes the world can render (short side >= 32) at the tiny VQGAN's factor 4:
# 32x32 = 64 codes, 48x32 = 96 codes.
SQUARE, WIDE = (32, 32), (48, 32)


@pytest.fixture(scope="package", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models gain nothing from threads; on a busy 2-core machine OpenMP threads spinning
    against other processes make each step many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="package")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random qwen2-family liquidgen checkpoint trained (nominally) for 32x32 and 48x32."""
    path = make_tiny_liquid(tmp_path_factory.mktemp("tiny") / "ckpt", "qwen2")
    GenerationDefaults(
        width=SQUARE[0],
        height=SQUARE[1],
        understanding_size=SQUARE[0],
        size_prefix=True,
        buckets=(SQUARE, WIDE),
    ).save(path)
    return path


@pytest.fixture(scope="package")
def tiny_pipe(tiny_dir: Path) -> Pipeline:
    return Pipeline.from_pretrained(tiny_dir, device="cpu")
