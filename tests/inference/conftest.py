"""Tiny checkpoint folders for the inference tests (built once, well under a second each)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from liquidgen.checkpoint import GenerationDefaults
from liquidgen.inference.pipeline import Pipeline
from liquidgen.model import load_liquid, save_liquid
from liquidgen.vocab import VocabLayout
from tiny_models import make_liquid7b_like, make_tiny_liquid

# Small sizes for the tiny VQGAN (factor 4): 16x8 pixels = a 2x4 code grid.
WIDTH, HEIGHT = 16, 8
# Multi-ratio settings written into the liquidgen-format checkpoint.
MULTI_RATIO = dict(
    width=16, height=8, understanding_size=16, size_prefix=True, buckets=[[16, 8], [8, 16]]
)
TALKATIVE_STD = 0.6


@pytest.fixture(scope="package", autouse=True)
def one_thread() -> Iterator[None]:
    """The tiny models gain nothing from threads, and on a busy 2-core machine OpenMP threads
    spinning against other processes make each step ~30x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="package")
def liquid7b_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder laid out like the released Liquid-7B (no liquid_layout.json, vqgan.* beside)."""
    return make_liquid7b_like(tmp_path_factory.mktemp("liquid7b"))


@pytest.fixture(scope="package")
def pipe(liquid7b_dir: Path) -> Pipeline:
    return Pipeline.from_pretrained(liquid7b_dir)


@pytest.fixture(scope="package")
def talker_dir(liquid7b_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Liquid-7B-like model with weights redrawn at a large scale (std 0.6), saved as a
    liquidgen checkpoint. The default initialisation (std 0.02) makes greedy decoding repeat
    one whitespace token, which would make text comparisons vacuous; this one writes varied,
    prompt-dependent tokens."""
    model, tokenizer, layout = load_liquid(liquid7b_dir)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" not in name:
                param.normal_(0.0, TALKATIVE_STD, generator=generator)
    return save_liquid(
        tmp_path_factory.mktemp("talker") / "ckpt", model, tokenizer, layout, vq_dir=liquid7b_dir
    )


@pytest.fixture(scope="package")
def talker(talker_dir: Path) -> Pipeline:
    return Pipeline.from_pretrained(talker_dir)


@pytest.fixture(scope="package")
def multi_ratio_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A liquidgen checkpoint (qwen2 backbone, VQGAN in vq/) with a multi-ratio
    liquid_generation.json."""
    path = make_tiny_liquid(tmp_path_factory.mktemp("multi") / "ckpt", family="qwen2")
    GenerationDefaults(**MULTI_RATIO).save(path)
    assert VocabLayout.load(path).downsample == 4
    return path
