"""Formatted sources: tokenized records read back in each of Liquid's sequence formats."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from liquidgen import formats
from liquidgen.errors import ConfigError
from liquidgen.model import load_liquid
from liquidgen.training.data import TokenizedDataset, tokenize_dataset
from liquidgen.training.inputs import TextFileSource
from liquidgen.training.sources import FormattedSource


@pytest.fixture(scope="module")
def model_parts(tiny_model: Path):
    _, tokenizer, layout = load_liquid(tiny_model)
    return tokenizer, layout


@pytest.mark.parametrize("modality", ["t2i", "caption", "vqa", "chat", "text"])
def test_each_modality_decodes_back_to_the_record(
    modality: str, model_parts, tiny_data: dict[str, Path]
) -> None:
    tokenizer, layout = model_parts
    dataset = TokenizedDataset(tiny_data["val"])
    source = FormattedSource(
        modality, modality, dataset, tokenizer, layout, max_len=512, cfg_dropout=0.0
    )
    record = dataset[3]
    example = source.example(3, random.Random(0))
    assert example.modality == modality
    assert example.input_ids == source.example(3, random.Random(0)).input_ids  # rng decides all
    decoded = formats.decode_example(example, tokenizer, layout, grid=record.codes.shape)
    if modality == "text":
        assert decoded.text.strip() == record.text
        return
    assert torch.equal(decoded.codes, torch.from_numpy(record.codes.astype("int64")))
    if modality == "t2i":
        assert decoded.text in record.captions
    elif modality == "caption":
        assert decoded.answers[0].strip() in record.captions
    elif modality == "vqa":
        assert decoded.answers[0].strip() in {a for _, a in record.qa}
    else:  # chat: every question answered, in some order
        assert sorted(a.strip() for a in decoded.answers) == sorted(a for _, a in record.qa)


def test_sources_reject_records_their_format_cannot_use(
    model_parts, tiny_data: dict[str, Path], tmp_path: Path
) -> None:
    tokenizer, layout = model_parts
    (tmp_path / "c.txt").write_text("one document\n\nanother document\n")
    text_only = TokenizedDataset(
        tokenize_dataset(
            TextFileSource(tmp_path / "c.txt"), tmp_path / "t", vqgan=None, progress=False
        )
    )
    with pytest.raises(ConfigError, match="2 of 2 records have no image"):
        FormattedSource("t2i", "t2i", text_only, tokenizer, layout, max_len=64)
    FormattedSource("text", "text", text_only, tokenizer, layout, max_len=64)  # fine as text
    other_layout = type(layout)(**{**layout.to_dict(), "codebook_size": 128})
    with pytest.raises(ConfigError, match="64-code VQGAN"):
        FormattedSource(
            "t2i", "t2i", TokenizedDataset(tiny_data["val"]), tokenizer, other_layout, max_len=64
        )


def test_text_source_covers_long_documents_with_windows(model_parts, tmp_path: Path) -> None:
    """A document longer than max_len is not cut to its beginning: its windows, in order,
    spell <bos>{document}<eos> exactly once."""
    tokenizer, layout = model_parts
    long_doc = " ".join(f"word{i}" for i in range(60))
    (tmp_path / "c.txt").write_text(f"{long_doc}\n\nshort one\n")
    dataset = TokenizedDataset(
        tokenize_dataset(
            TextFileSource(tmp_path / "c.txt"), tmp_path / "t", vqgan=None, progress=False
        )
    )
    source = FormattedSource("text", "text", dataset, tokenizer, layout, max_len=16)
    stream = formats.text_example(tokenizer, layout, long_doc, max_len=10_000).input_ids
    short = formats.text_example(tokenizer, layout, "short one", max_len=10_000).input_ids
    assert len(stream) > 3 * 16 and len(short) <= 16
    windows = [source.example(i, random.Random(0)).input_ids for i in range(len(source))]
    assert len(windows) == len(formats.text_window_starts(len(stream), 16)) + 1
    assert [t for w in windows[:-1] for t in w] == stream and windows[-1] == short
    assert all(2 <= len(w) <= 16 for w in windows)
    assert formats.text_window_starts(33, 16) == [0, 16]  # a 1-token tail predicts nothing
    assert formats.text_window_starts(34, 16) == [0, 16, 32]
    with pytest.raises(ConfigError):
        formats.text_window(short, len(short), 16)
