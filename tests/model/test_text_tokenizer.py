"""Byte-level BPE training for from-scratch models: specials, round trips, files, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from liquidgen.cli import main
from liquidgen.errors import ConfigError
from liquidgen.model.text_tokenizer import (
    SPECIAL_TOKENS,
    read_texts,
    save_text_tokenizer,
    train_text_tokenizer,
)
from tiny_models import tiny_corpus

ROUND_TRIPS = [
    "a red circle on the left of the picture.",
    "  two  spaces,\ttabs\nand new lines\n\n",
    "Unicode: héllo wörld — 日本語 🙂",
    "literal specials stay text: <boi> <eos>",
    "",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tokenizer = train_text_tokenizer(tiny_corpus(), vocab_size=400)
    return save_text_tokenizer(tokenizer, tmp_path_factory.mktemp("tok") / "bpe")


@pytest.mark.parametrize(
    "loader", [PreTrainedTokenizerFast.from_pretrained, AutoTokenizer.from_pretrained]
)
def test_trained_tokenizer_loads_and_round_trips(trained: Path, loader) -> None:
    assert (trained / "tokenizer.json").is_file()
    tok = loader(trained)
    assert 300 < len(tok) <= 400  # merges were learned
    assert tok.convert_tokens_to_ids(list(SPECIAL_TOKENS)) == [0, 1, 2, 3, 4, 5]
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    ids = tok("a red circle")["input_ids"]
    assert ids[0] == tok.bos_token_id and len(ids) <= 4  # bos + merged words
    for text in ROUND_TRIPS:
        plain = tok(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        assert tok.decode(plain) == text
        assert all(i > 5 for i in plain)  # byte-level: no unknown token, specials never from text
    assert tok("<boi>", add_special_tokens=False)["input_ids"] == [3]


def test_chat_template_renders(trained: Path) -> None:
    tok = AutoTokenizer.from_pretrained(trained)
    messages = [
        {"role": "user", "content": "what shape?"},
        {"role": "assistant", "content": "a star"},
    ]
    rendered = tok.apply_chat_template(messages, tokenize=False)
    assert rendered == "<bos>USER: what shape?\nASSISTANT: a star<eos>"
    prompt = tok.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert rendered.startswith(prompt) and prompt.endswith("ASSISTANT:")


def test_training_is_deterministic() -> None:
    a = train_text_tokenizer(tiny_corpus(), vocab_size=350)
    b = train_text_tokenizer(tiny_corpus(), vocab_size=350)
    assert a.get_vocab() == b.get_vocab()


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="vocab_size"):
        train_text_tokenizer(["x"], vocab_size=100)
    with pytest.raises(ConfigError, match="min_frequency"):
        train_text_tokenizer(["x"], vocab_size=300, min_frequency=0)


def test_read_texts(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("first doc\n\nsecond doc\n")
    (tmp_path / "b.jsonl").write_text(
        json.dumps({"text": "third"}) + "\n" + json.dumps({"body": "x"}) + "\n"
    )
    texts = read_texts([tmp_path / "a.txt"])
    assert list(texts) == ["first doc", "second doc"]
    with pytest.raises(ConfigError, match=r"b\.jsonl:2"):
        list(read_texts([tmp_path / "b.jsonl"]))
    with pytest.raises(ConfigError, match="no such text file"):
        list(read_texts([tmp_path / "missing.txt"]))


def test_cli_train(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(tiny_corpus()))
    docs = tmp_path / "docs.jsonl"
    docs.write_text("\n".join(json.dumps({"content": t}) for t in tiny_corpus()[:20]))
    out = tmp_path / "tok"
    args = ["text-tokenizer", "train", "--input", str(corpus), str(docs), "--text-key", "content"]
    assert main([*args, "--vocab-size", "320", "--out", str(out), "--quiet"]) == 0
    assert "byte-level BPE" in capsys.readouterr().out
    assert len(AutoTokenizer.from_pretrained(out)) == 320
    assert main([*args, "--vocab-size", "10", "--out", str(out), "--quiet"]) == 2
    assert "vocab_size must be >=" in capsys.readouterr().err
