"""`liquidgen demo` (what `make demo` runs) on the shipped world tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from liquidgen.assets import WORLD_TOKENIZER, shipped
from liquidgen.cli import main
from liquidgen.tokenizer import VQGAN


def test_shipped_world_tokenizer_loads() -> None:
    vq = VQGAN.from_pretrained(shipped(WORLD_TOKENIZER))
    assert vq.downsample == 16 and vq.codebook_size == 512


def test_demo_writes_scene_roundtrip_and_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--seed", "0"]) == 0
    printed = capsys.readouterr().out
    assert "8x8 codes" in printed and "PSNR" in printed
    scene, recon = Image.open(out / "scene.png"), Image.open(out / "roundtrip.png")
    assert scene.size == recon.size == (128, 128)
    summary = json.loads((out / "roundtrip.json").read_text())
    assert summary["grid"] == [8, 8]
    assert summary["psnr_db"] > 15.0  # a trained tokenizer; a random one gives < 10 dB
    assert summary["scene"]["objects"], "the rendered scene has objects"


def test_demo_missing_tokenizer_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--out", str(tmp_path / "o"), "--tokenizer", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o" / "roundtrip.png").exists()
