"""`liquidgen expand`: offsets, special tokens, mean rows, tied weights, unchanged text logits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from liquidgen.cli import main
from liquidgen.errors import CheckpointError, ConfigError
from liquidgen.model import expand, load_liquid
from liquidgen.vocab import BOI_TOKEN, EOI_TOKEN, UNCOND_TOKEN, VocabLayout
from tiny_models import FAMILIES, make_tiny_backbone

TEXT = "The blue circle is on the left, and a red square sits near the top."
CODEBOOK = 64  # the session VQGAN's size


def _text_logits(model: torch.nn.Module, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]  # (T, V)


@pytest.mark.parametrize("family", FAMILIES)
def test_expand_layout_and_unchanged_text_logits(
    family: str, backbones: dict[str, Path], liquids: dict[str, Path]
) -> None:
    base = AutoModelForCausalLM.from_pretrained(backbones[family])
    base_tok = AutoTokenizer.from_pretrained(backbones[family])
    text_rows = base.config.vocab_size
    model, tok, layout = load_liquid(liquids[family])

    # The offset is the base embedding's rows; the vocabulary grows by exactly the codebook.
    assert layout.image_offset == text_rows
    assert layout.codebook_size == CODEBOOK and layout.downsample == 4
    assert model.get_input_embeddings().num_embeddings == text_rows + CODEBOOK
    assert model.config.vocab_size == text_rows + CODEBOOK
    assert VocabLayout.load(liquids[family]) == layout
    ids = [tok.convert_tokens_to_ids(t) for t in (BOI_TOKEN, EOI_TOKEN, UNCOND_TOKEN)]
    assert ids == [layout.boi_id, layout.eoi_id, layout.uncond_id]
    assert all(i < layout.image_offset for i in ids)
    assert (layout.bos_id, layout.eos_id) == (base_tok.bos_token_id, base_tok.eos_token_id)

    # Tied embeddings stay tied (same tensor), and the new rows start at the old mean.
    emb = model.get_input_embeddings().weight
    assert model.get_output_embeddings().weight.data_ptr() == emb.data_ptr()
    old_mean = base.get_input_embeddings().weight.mean(0)
    torch.testing.assert_close(emb[text_rows:], old_mean.expand(CODEBOOK, -1), atol=1e-4, rtol=0)
    torch.testing.assert_close(emb[:text_rows], base.get_input_embeddings().weight, atol=0, rtol=0)

    # Text-only inputs: the logits of every old id are unchanged (new tokens encode the same text).
    text_ids = tok(TEXT)["input_ids"]
    assert text_ids == base_tok(TEXT)["input_ids"]
    before = _text_logits(base, text_ids)
    after = _text_logits(model, text_ids)
    assert after.shape == (len(text_ids), text_rows + CODEBOOK)
    torch.testing.assert_close(after[:, :text_rows], before, atol=1e-5, rtol=1e-5)


def test_gemma_reuses_unused_slots_like_liquid7b(
    liquids: dict[str, Path], backbones: dict[str, Path]
) -> None:
    _, tok, layout = load_liquid(liquids["gemma"])
    assert (layout.boi_id, layout.eoi_id, layout.uncond_id) == (7, 8, 9)
    assert tok.convert_ids_to_tokens([7, 8, 9]) == [BOI_TOKEN, EOI_TOKEN, UNCOND_TOKEN]
    base_tok = AutoTokenizer.from_pretrained(backbones["gemma"])
    assert base_tok.convert_ids_to_tokens([7, 8, 9]) == ["<unused0>", "<unused1>", "<unused2>"]
    assert len(tok) == len(base_tok)  # renamed, nothing added
    # The renamed tokens are whole special tokens in text and in the saved tokenizer.json.
    assert tok("<boi><eoi>", add_special_tokens=False)["input_ids"] == [7, 8]
    saved = json.loads((liquids["gemma"] / "tokenizer.json").read_text())
    contents = {entry["id"]: entry["content"] for entry in saved["added_tokens"]}
    assert [contents[i] for i in (7, 8, 9)] == [BOI_TOKEN, EOI_TOKEN, UNCOND_TOKEN]
    assert "<unused0>" not in tok.get_vocab()


def test_llama_reuses_reserved_special_tokens(
    liquids: dict[str, Path], backbones: dict[str, Path]
) -> None:
    base_tok = AutoTokenizer.from_pretrained(backbones["llama"])
    _, tok, layout = load_liquid(liquids["llama"])
    reserved = base_tok.convert_tokens_to_ids([f"<|reserved_special_token_{i}|>" for i in range(3)])
    assert [layout.boi_id, layout.eoi_id, layout.uncond_id] == reserved
    assert len(tok) == len(base_tok)


def test_qwen2_adds_tokens_into_padding_rows(
    liquids: dict[str, Path], backbones: dict[str, Path]
) -> None:
    """Qwen2.5-like: len(tokenizer) < config.vocab_size; the new tokens fill padding rows."""
    base_tok = AutoTokenizer.from_pretrained(backbones["qwen2"])
    base_rows = AutoConfig.from_pretrained(backbones["qwen2"]).vocab_size
    assert len(base_tok) + 3 <= base_rows
    _, _, layout = load_liquid(liquids["qwen2"])
    assert layout.image_offset == base_rows  # not len(tokenizer)
    assert [layout.boi_id, layout.eoi_id, layout.uncond_id] == [
        len(base_tok),
        len(base_tok) + 1,
        len(base_tok) + 2,
    ]
    assert layout.bos_id is None and layout.pad_id == base_tok.pad_token_id


@pytest.mark.parametrize("family", ["gemma", "llama"])
def test_no_spare_slot_grows_the_text_part(family: str, tmp_path: Path, vq_dir: Path) -> None:
    """No unused slot and no padding row: the specials are appended and the offset follows them."""
    base = make_tiny_backbone(
        tmp_path / "base", family, spare_slots=False, tie_word_embeddings=False
    )
    base_model = AutoModelForCausalLM.from_pretrained(base)
    rows = base_model.config.vocab_size
    assert len(AutoTokenizer.from_pretrained(base)) == rows
    layout = expand(base, vq_dir, tmp_path / "out")
    assert [layout.boi_id, layout.eoi_id, layout.uncond_id] == [rows, rows + 1, rows + 2]
    assert layout.image_offset == rows + 3
    model, tok, loaded = load_liquid(tmp_path / "out")
    assert loaded == layout
    # Untied: the LM head is resized on its own and is a different tensor.
    head = model.get_output_embeddings().weight
    assert head.shape[0] == rows + 3 + CODEBOOK
    assert head.data_ptr() != model.get_input_embeddings().weight.data_ptr()
    torch.testing.assert_close(
        head[:rows], base_model.get_output_embeddings().weight, atol=0, rtol=0
    )
    ids = tok(TEXT)["input_ids"]
    torch.testing.assert_close(
        _text_logits(model, ids)[:, :rows], _text_logits(base_model, ids), atol=1e-5, rtol=1e-5
    )


def test_expand_refuses_bad_inputs_and_writes_nothing(
    tmp_path: Path, backbones: dict[str, Path], liquids: dict[str, Path], vq_dir: Path
) -> None:
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="already a liquidgen checkpoint"):
        expand(liquids["llama"], vq_dir, out)
    with pytest.raises(CheckpointError, match="no VQGAN"):
        expand(backbones["llama"], tmp_path, out)
    with pytest.raises(ConfigError, match="not a Hugging Face model folder"):
        expand(tmp_path, vq_dir, out)
    assert not out.exists()
    assert not list(tmp_path.glob(".out.*"))  # no half-written temporary folder left


def test_cli_expand(
    tmp_path: Path, backbones: dict[str, Path], vq_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "liquid"
    status = main(
        ["expand", "--base", str(backbones["gemma"]), "--tokenizer", str(vq_dir), "--out", str(out)]
    )
    assert status == 0
    printed = capsys.readouterr().out
    assert "image_offset=512" in printed and "<boi>=7" in printed
    assert sorted(p.name for p in (out / "vq").iterdir()) == ["vqgan.ckpt", "vqgan.yaml"]
    assert (
        main(
            [
                "expand",
                "--base",
                str(tmp_path / "missing"),
                "--tokenizer",
                str(vq_dir),
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "liquidgen: error:" in capsys.readouterr().err
