"""Shared fixtures for the training tests: a tiny Liquid model and tokenized synthetic data.

Everything is built once per session in a few seconds: a 2-layer Llama-shaped liquidgen
checkpoint (64 image codes, 4x downsampling) and two tokenized folders (train / val) of
16x16 images of one coloured shape with captions, questions and a short text each.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image, ImageDraw

from liquidgen.tokenizer import VQGAN
from liquidgen.training.data import RawItem, tokenize_dataset
from tiny_models import make_tiny_liquid

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 180, 60),
    "blue": (40, 60, 220),
    "yellow": (230, 210, 40),
}
SHAPES = ("square", "circle")
IMAGE_SIZE = 16
REPO = Path(__file__).resolve().parents[2]


class ShapesSource:
    """Deterministic synthetic records: one coloured square or circle on white per image."""

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.seed = seed
        self.description = f"test-shapes:{n}:{seed}"
        self.has_images = True

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> RawItem:
        rng = np.random.default_rng((self.seed, index))
        colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
        shape = SHAPES[int(rng.integers(len(SHAPES)))]

        def draw() -> Image.Image:
            image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), "white")
            pen = ImageDraw.Draw(image)
            box = (3, 3, 12, 12)
            (pen.rectangle if shape == "square" else pen.ellipse)(box, fill=COLOURS[colour])
            return image

        return RawItem(
            id=f"{self.seed}-{index}",
            image=draw,
            captions=[f"a {colour} {shape}", f"one {colour} {shape} on white"],
            qa=[("what colour is the shape?", colour), ("what is the shape?", shape)],
            text=f"The {colour} {shape} number {index} is drawn in the middle.",
        )


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama-shaped liquidgen checkpoint with its VQGAN in ``vq/``."""
    return make_tiny_liquid(tmp_path_factory.mktemp("tiny") / "model", "llama")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> dict[str, Path]:
    """Tokenized train (160 records) and val (24 records) folders."""
    root = tmp_path_factory.mktemp("tokenized")
    vqgan = VQGAN.from_pretrained(tiny_model / "vq")
    return {
        split: tokenize_dataset(
            ShapesSource(n, seed), root / split, vqgan=vqgan, shard_size=64, progress=False
        )
        for split, n, seed in (("train", 160, 0), ("val", 24, 1))
    }


def config_dict(model: Path, data: dict[str, Path], out_dir: Path, **top: Any) -> dict[str, Any]:
    """A small training config over every modality of ``data`` (fp32, 1 thread, no bar)."""
    config: dict[str, Any] = {
        "model": {"path": str(model)},
        "data": {
            "seq_len": 64,
            "sources": [
                {"name": m, "modality": m, "train": str(data["train"]), "val": str(data["val"])}
                for m in ("text", "t2i", "caption", "vqa")
            ],
            "val_examples": 16,
        },
        "out_dir": str(out_dir),
        "max_steps": 6,
        "global_batch": 4,
        "micro_batch": 2,
        "precision": "fp32",
        "threads": 1,
        "progress": False,
        "optim": {"lr": 3.0e-3, "warmup_steps": 1},
    }
    config.update(top)
    return config


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_cli(
    args: list[str], *, torchrun: int = 0, timeout: float = 300, check: bool = True
) -> subprocess.CompletedProcess:
    """Run ``liquidgen ARGS`` in a subprocess (through torchrun with ``torchrun`` processes)."""
    prefix = [sys.executable]
    if torchrun:
        prefix += ["-m", "torch.distributed.run", f"--nproc_per_node={torchrun}", "--standalone"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [*prefix, "-m", "liquidgen", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"liquidgen {args} failed ({result.returncode}):\n{result.stderr[-3000:]}"
        )
    return result
