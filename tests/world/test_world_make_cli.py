"""Datasets in memory and on disk, and the ``liquidgen world`` commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from liquidgen.cli import main
from liquidgen.errors import ConfigError, OutputError
from liquidgen.world.make import (
    MANIFEST_FILE,
    METADATA_FILE,
    WorldDataset,
    make_example,
    read_metadata,
    stream,
    write_dataset,
)
from liquidgen.world.parse import parse
from liquidgen.world.scene import Scene, scenes_match
from liquidgen.world.score import score_scene
from liquidgen.world.text import PromptSpec

SIZES = [(128, 128), (160, 96), (96, 160)]


def test_dataset_is_deterministic_and_round_robin() -> None:
    data = WorldDataset(6, SIZES, seed=3)
    assert len(data) == 6
    assert [data[i].image.size for i in range(6)] == [(128, 128), (160, 96), (96, 160)] * 2
    assert data[4].scene == make_example(4, 3, (160, 96)).scene
    assert data[-1].scene == data[5].scene
    assert data[1].scene != WorldDataset(6, SIZES, seed=4)[1].scene
    first = [e.scene for _, e in zip(range(4), stream(3, SIZES), strict=False)]
    assert first == [data[i].scene for i in range(4)]
    with pytest.raises(IndexError):
        data[6]
    with pytest.raises(ConfigError):
        WorldDataset(2, [(16, 16)], seed=0)


def test_write_dataset_files_and_records(tmp_path: Path) -> None:
    out = write_dataset(tmp_path / "ds", 9, SIZES, seed=5, progress=False)
    records = read_metadata(out)
    assert len(records) == 9
    assert json.loads((out / MANIFEST_FILE).read_text())["seed"] == 5
    for record in records:
        image = Image.open(out / record["file"])
        scene = Scene.from_dict(record["scene"])
        assert image.size == (scene.width, scene.height) == (record["width"], record["height"])
        assert scenes_match(scene, parse(image))
        assert record["captions"] and record["questions"]
        for spec in record["prompts"]:
            assert score_scene(PromptSpec.from_dict(spec), scene)
        assert {"question", "answer", "type"} <= set(record["questions"][0])
    # same arguments, same bytes
    again = write_dataset(tmp_path / "ds2", 9, SIZES, seed=5, progress=False)
    assert (again / METADATA_FILE).read_bytes() == (out / METADATA_FILE).read_bytes()
    assert (again / "000003.png").read_bytes() == (out / "000003.png").read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


def test_write_dataset_refuses_foreign_folders(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError, match="not an earlier world dataset"):
        write_dataset(folder, 2, SIZES, seed=0, progress=False)
    assert (folder / "notes.txt").read_text() == "keep me"
    write_dataset(tmp_path / "ds", 2, SIZES, seed=0, progress=False)
    write_dataset(tmp_path / "ds", 3, SIZES, seed=0, progress=False)  # replaces its own kind
    assert len(read_metadata(tmp_path / "ds")) == 3


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_make_then_parse(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ds"
    code, stdout, err = _run(
        capsys,
        "world",
        "make",
        "--n",
        "4",
        "--size",
        "128x128,160x96",
        "--seed",
        "1",
        "--out",
        str(out),
    )
    assert code == 0 and "wrote 4 images" in stdout
    assert "img/s" in err  # progress bar with rate
    records = read_metadata(out)
    files = [str(out / r["file"]) for r in records]
    code, stdout, _ = _run(capsys, "world", "parse", *files)
    assert code == 0
    lines = stdout.strip().splitlines()
    assert len(lines) == 4
    for line, record in zip(lines, records, strict=True):
        assert scenes_match(Scene.from_dict(record["scene"]), Scene.from_json(line))


def test_cli_errors_are_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG garbage")
    Image.new("RGB", (64, 64), "white").save(tmp_path / "blank.png")
    code, stdout, err = _run(capsys, "world", "parse", str(tmp_path / "blank.png"), str(bad))
    assert code == 2 and stdout == "" and len(err.strip().splitlines()) == 1
    code, stdout, _ = _run(capsys, "world", "parse", str(tmp_path / "blank.png"))
    assert code == 0 and json.loads(stdout)["objects"] == []
    code, _, err = _run(
        capsys,
        "world",
        "make",
        "--n",
        "2",
        "--size",
        "12x12",
        "--seed",
        "0",
        "--out",
        str(tmp_path / "x"),
    )
    assert code == 2 and "too small" in err and not (tmp_path / "x").exists()
    code, _, err = _run(
        capsys,
        "world",
        "make",
        "--n",
        "2",
        "--size",
        "big",
        "--seed",
        "0",
        "--out",
        str(tmp_path / "x"),
    )
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_cli_parse_easy_vqa_vocabulary(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("easy_vqa")
    from liquidgen.corpora.easy_vqa import image_attributes, image_paths

    attrs = image_attributes("test")
    known = [i for i, a in attrs.items() if a.shape and a.color][:3]
    paths = image_paths("test")
    code, stdout, _ = _run(
        capsys, "world", "parse", "--vocabulary", "easy-vqa", *(paths[i] for i in known)
    )
    assert code == 0
    for line, i in zip(stdout.strip().splitlines(), known, strict=True):
        (obj,) = json.loads(line)["objects"]
        assert (obj["shape"], obj["color"]) == (attrs[i].shape, attrs[i].color)


def test_images_are_saved_losslessly(tmp_path: Path) -> None:
    example = make_example(0, 9, (96, 160))
    path = tmp_path / "x.png"
    example.image.save(path)
    assert np.array_equal(np.asarray(Image.open(path)), np.asarray(example.image))
