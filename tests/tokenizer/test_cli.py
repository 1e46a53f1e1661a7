"""``liquidgen tokenizer`` commands, including every bad input (one line, exit 2, no output file)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from liquidgen.cli import main
from liquidgen.tokenizer import VQGAN


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_convert_then_roundtrip(
    capsys, authors_folder: Path, tmp_path: Path, golden_model: VQGAN
) -> None:
    dst = tmp_path / "converted"
    code, out, _ = _run(
        capsys, "tokenizer", "convert", "--from", str(authors_folder), "--to", str(dst)
    )
    assert code == 0 and "converted" in out
    for key, value in VQGAN.from_pretrained(dst).state_dict().items():
        assert np.array_equal(value.numpy(), golden_model.state_dict()[key].numpy())

    rgba = np.zeros((40, 60, 4), dtype=np.uint8)
    rgba[..., 1] = 180
    rgba[10:30, 10:50, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "in.png")
    code, out, _ = _run(
        capsys, "tokenizer", "roundtrip", "--tokenizer", str(dst), str(tmp_path / "in.png"),
        "--size", "32", "-o", str(tmp_path / "rt.png"),
    )  # fmt: skip
    assert code == 0 and "PSNR" in out
    assert Image.open(tmp_path / "rt.png").size == (32, 32)


def test_encode_decode(capsys, liquid_folder: Path, tmp_path: Path) -> None:
    Image.new("RGB", (48, 32), (200, 30, 30)).save(tmp_path / "a.png")
    codes_file = tmp_path / "codes.jsonl"
    code, _, _ = _run(
        capsys, "tokenizer", "encode", "--tokenizer", str(liquid_folder), str(tmp_path / "a.png"),
        "-o", str(codes_file),
    )  # fmt: skip
    assert code == 0
    rec = json.loads(codes_file.read_text())
    assert rec["grid"] == [2, 3]
    code, _, _ = _run(
        capsys,
        "tokenizer",
        "decode",
        "--tokenizer",
        str(liquid_folder),
        str(codes_file),
        "-o",
        str(tmp_path / "d.png"),
    )
    assert code == 0
    assert Image.open(tmp_path / "d.png").size == (48, 32)


@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing", "no such file"),
        ("text", "not an image"),
        ("truncated", "unreadable image"),
        ("bad_size", "not divisible by the tokenizer's factor 16"),
    ],
)
def test_roundtrip_bad_images(
    capsys, liquid_folder: Path, tmp_path: Path, kind: str, message: str
) -> None:
    path = tmp_path / "img.png"
    if kind == "text":
        path.write_text("not a png")
    elif kind == "truncated":
        Image.fromarray(
            np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
        ).save(path)
        path.write_bytes(path.read_bytes()[:2000])
    elif kind == "bad_size":
        Image.new("RGB", (40, 24)).save(path)
    out = tmp_path / "out.png"
    code, _, err = _run(
        capsys,
        "tokenizer",
        "roundtrip",
        "--tokenizer",
        str(liquid_folder),
        str(path),
        "-o",
        str(out),
    )
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_decode_bad_codes(capsys, liquid_folder: Path, tmp_path: Path) -> None:
    codes = tmp_path / "codes.jsonl"
    codes.write_text(json.dumps({"codes": [[0, 1], [2, 9999]]}) + "\n")
    out = tmp_path / "d.png"
    code, _, err = _run(
        capsys, "tokenizer", "decode", "--tokenizer", str(liquid_folder), str(codes), "-o", str(out)
    )
    assert code == 2 and "[0, 512)" in err and not out.exists()


def test_wrong_checkpoint_and_missing_output_dir(
    capsys, tmp_path: Path, liquid_folder: Path
) -> None:
    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    code, _, err = _run(
        capsys,
        "tokenizer",
        "roundtrip",
        "--tokenizer",
        str(tmp_path),
        str(tmp_path / "a.png"),
        "-o",
        str(tmp_path / "o.png"),
    )
    assert code == 2 and "expected config.json" in err
    code, _, err = _run(
        capsys, "tokenizer", "roundtrip", "--tokenizer", str(liquid_folder), str(tmp_path / "a.png"),
        "-o", str(tmp_path / "nodir" / "o.png"),
    )  # fmt: skip
    assert code == 2 and "does not exist" in err
    code, _, err = _run(
        capsys, "tokenizer", "convert", "--from", str(liquid_folder), "--to", str(tmp_path / "x")
    )
    assert code == 2 and "vqgan.yaml" in err and not (tmp_path / "x").exists()
