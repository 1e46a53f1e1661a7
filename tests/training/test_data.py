"""`liquidgen data tokenize`: codes equal the VQGAN's, shards are memory-mapped, runs resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from liquidgen.cli import main
from liquidgen.errors import ConfigError
from liquidgen.tokenizer import VQGAN, pil_to_tensor
from liquidgen.training.data import TokenizedDataset, tokenize_dataset
from liquidgen.training.inputs import open_input

from .conftest import ShapesSource


def test_codes_match_the_vqgan_and_texts_are_kept(
    tiny_model: Path, tiny_data: dict[str, Path]
) -> None:
    vqgan = VQGAN.from_pretrained(tiny_model / "vq")
    dataset = TokenizedDataset(tiny_data["val"])
    source = ShapesSource(24, 1)
    assert len(dataset) == 24
    for i in (0, 5, 23):
        item, record = source[i], dataset[i]
        expected = vqgan.encode(pil_to_tensor(item.image()))[0].numpy()  # (h, w)
        assert isinstance(record.codes, np.memmap) or isinstance(record.codes.base, np.memmap)
        np.testing.assert_array_equal(record.codes, expected)
        assert (
            record.captions == item.captions and record.qa == item.qa and record.text == item.text
        )


def test_rerun_skips_finished_shards_and_redoes_broken_ones(
    tiny_model: Path, tmp_path: Path
) -> None:
    vqgan = VQGAN.from_pretrained(tiny_model / "vq")
    source = ShapesSource(30, 7)
    out = tokenize_dataset(source, tmp_path / "tok", vqgan=vqgan, shard_size=10, progress=False)
    before = TokenizedDataset(out)
    reference = [before[i].codes.copy() for i in range(30)]
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*")}
    (out / "shard-00001.json").unlink()  # as if killed before the shard's index was written
    with (out / "shard-00002.codes").open("r+b") as f:  # a truncated codes file
        f.truncate(4)
    calls = []
    original = vqgan.encode

    def counting(pixels: torch.Tensor) -> torch.Tensor:
        calls.append(len(pixels))
        return original(pixels)

    vqgan.encode = counting
    tokenize_dataset(source, out, vqgan=vqgan, shard_size=10, progress=False)
    assert sum(calls) == 20  # shards 1 and 2 only
    assert (out / "shard-00000.codes").stat().st_mtime_ns == stamps["shard-00000.codes"]
    after = TokenizedDataset(out)
    for i in range(30):
        np.testing.assert_array_equal(after[i].codes, reference[i])


def test_other_settings_in_the_same_folder_are_refused(tiny_model: Path, tmp_path: Path) -> None:
    vqgan = VQGAN.from_pretrained(tiny_model / "vq")
    tokenize_dataset(ShapesSource(4, 0), tmp_path / "tok", vqgan=vqgan, progress=False)
    with pytest.raises(ConfigError, match="other settings"):
        tokenize_dataset(ShapesSource(5, 0), tmp_path / "tok", vqgan=vqgan, progress=False)


def test_cli_tokenizes_jsonl_and_text(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    source = ShapesSource(3, 2)
    lines = []
    for i in range(3):
        item = source[i]
        item.image().save(tmp_path / f"{i}.png")
        lines.append(json.dumps({"image": f"{i}.png", "captions": item.captions, "qa": item.qa}))
    (tmp_path / "data.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "corpus.txt").write_text("First document,\non two lines.\n\nSecond document.\n")
    status = main(
        [
            "data",
            "tokenize",
            "--input",
            str(tmp_path / "data.jsonl"),
            "--vqgan",
            str(tiny_model / "vq"),
            "--out",
            str(tmp_path / "img"),
            "--size",
            "32",
            "--quiet",
        ]
    )
    assert status == 0 and "3 records" in capsys.readouterr().out
    dataset = TokenizedDataset(tmp_path / "img")
    assert dataset[0].codes.shape == (8, 8)  # resized to 32x32, 4x downsampling
    assert (
        main(
            [
                "data",
                "tokenize",
                "--input",
                str(tmp_path / "corpus.txt"),
                "--out",
                str(tmp_path / "txt"),
            ]
        )
        == 0
    )
    texts = TokenizedDataset(tmp_path / "txt")
    assert [texts[i].text for i in range(2)] == [
        "First document, on two lines.",
        "Second document.",
    ]
    assert texts[0].codes is None
    status = main(
        ["data", "tokenize", "--input", str(tmp_path / "data.jsonl"), "--out", str(tmp_path / "x")]
    )
    assert status == 2 and "--vqgan" in capsys.readouterr().err


def test_open_input_rejects_unknown_inputs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"metadata\.jsonl"):
        open_input(str(tmp_path))
    (tmp_path / "bad.jsonl").write_text('{"id": 1}\n')
    with pytest.raises(ConfigError, match="needs an image"):
        open_input(str(tmp_path / "bad.jsonl"))


def test_world_prompts_condition_t2i_but_never_become_captions(
    tiny_model: Path, tmp_path: Path
) -> None:
    """The world's GenEval-style prompts are kept and drawn for T2I only."""
    import random

    from liquidgen import formats
    from liquidgen.model import load_liquid
    from liquidgen.training.sources import FormattedSource
    from liquidgen.world import write_dataset

    write_dataset(tmp_path / "world", 4, [(32, 32)], 0, "train", progress=False)
    folder = tmp_path / "tok"
    tokenize_dataset(
        open_input(str(tmp_path / "world")),
        folder,
        vqgan=VQGAN.from_pretrained(tiny_model / "vq"),
        progress=False,
    )
    dataset = TokenizedDataset(folder)
    metadata = [
        json.loads(line)
        for line in (tmp_path / "world" / "metadata.jsonl").read_text().splitlines()
    ]
    for i, row in enumerate(metadata):
        assert dataset[i].prompts == [p["prompt"] for p in row["prompts"]]
        assert dataset[i].prompts, "every world image comes with prompts"
    _, tokenizer, layout = load_liquid(tiny_model)
    texts = {m: set() for m in (formats.T2I, formats.CAPTION)}
    for modality, seen in texts.items():
        source = FormattedSource(
            "w", modality, dataset, tokenizer, layout, max_len=512, cfg_dropout=0.0
        )
        for draw in range(60):
            decoded = formats.decode_example(
                source.example(draw % len(dataset), random.Random(draw)), tokenizer, layout
            )
            seen.add((decoded.text if modality == formats.T2I else decoded.answers[0]).strip())
    prompts = {p for i in range(len(dataset)) for p in dataset[i].prompts}
    captions = {c for i in range(len(dataset)) for c in dataset[i].captions}
    assert texts[formats.T2I] & prompts, "T2I never drew a prompt"
    assert not texts[formats.CAPTION] & (prompts - captions), "a prompt became a caption target"
