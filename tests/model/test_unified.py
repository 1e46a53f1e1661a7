"""Loading and saving checkpoints: liquidgen folders, the released Liquid-7B layout, strictness."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, GemmaConfig

from liquidgen.checkpoint import LAYOUT_FILE
from liquidgen.errors import CheckpointError
from liquidgen.model import (
    check_layout,
    derive_layout,
    find_vq_dir,
    load_liquid,
    read_vq_spec,
    save_liquid,
)
from liquidgen.model.unified import VQSpec
from liquidgen.tokenizer import VQGAN
from liquidgen.vocab import VocabLayout
from tiny_models import make_liquid7b_like, make_tiny_liquid


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a socket fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def liquid7b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_liquid7b_like(tmp_path_factory.mktemp("liquid7b"), text_vocab=512, codebook_size=64)


def test_liquid7b_like_folder_loads_offline(liquid7b: Path, no_network: None) -> None:
    assert not (liquid7b / LAYOUT_FILE).exists()
    names = {p.name for p in liquid7b.iterdir()}
    assert {
        "vqgan.yaml",
        "vqgan.ckpt",
        "tokenizer.json",
        "config.json",
        "model.safetensors.index.json",
    } <= names
    assert "model.safetensors" not in names  # sharded, as released
    model, tok, layout = load_liquid(liquid7b)
    assert type(model).__name__ == "GemmaForCausalLM"
    assert model.config.vocab_size == 512 + 64
    assert layout == VocabLayout(
        image_offset=512,
        codebook_size=64,
        boi_id=7,
        eoi_id=8,
        uncond_id=9,
        bos_id=2,
        eos_id=1,
        pad_id=0,
        downsample=4,
    )
    assert tok.convert_ids_to_tokens([7, 8, 9]) == ["<boi>", "<eoi>", "<unconditional>"]
    assert len(tok) == layout.image_offset
    # The VQGAN beside the model is the authors' format and loads with the lead's class.
    assert find_vq_dir(liquid7b) == liquid7b
    vq = VQGAN.from_pretrained(liquid7b)
    assert vq.codebook_size == layout.codebook_size and vq.downsample == layout.downsample


def test_liquid7b_real_numbers_are_representable() -> None:
    """The released numbers (Gemma-7B + 8192 codes, 16x, ids 7/8/9) on the meta device."""
    config = GemmaConfig(
        vocab_size=264192,
        hidden_size=3072,
        intermediate_size=24576,
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=16,
        head_dim=256,
        bos_token_id=2,
        eos_token_id=1,
        pad_token_id=0,
    )
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)

    class ReleasedTokenizer:  # the ids of Liquid-7B's tokenizer, without 256000 strings of BPE
        bos_token_id, eos_token_id, pad_token_id = 2, 1, 0

        def get_vocab(self) -> dict[str, int]:
            return {
                "<pad>": 0,
                "<eos>": 1,
                "<bos>": 2,
                "<boi>": 7,
                "<eoi>": 8,
                "<unconditional>": 9,
                "last": 255999,
            }

    spec = VQSpec(codebook_size=8192, downsample=16, authors_format=True)
    layout = derive_layout(model.config, ReleasedTokenizer(), spec, source=Path("Liquid_V1_7B"))
    assert (layout.image_offset, layout.codebook_size, layout.vocab_size) == (256000, 8192, 264192)
    assert (layout.boi_id, layout.eoi_id, layout.uncond_id, layout.downsample) == (7, 8, 9, 16)
    assert layout.grid(512, 512) == (32, 32)
    check_layout(model, ReleasedTokenizer(), layout)
    assert int(layout.codes_to_tokens(torch.tensor([0, 8191])).max()) == 264191


def test_read_vq_spec_authors_yaml_with_chameleon_numbers(tmp_path: Path) -> None:
    ddconfig = {"ch": 128, "ch_mult": [1, 1, 2, 2, 4], "z_channels": 256, "num_res_blocks": 2}
    doc = {"model": {"params": {"n_embed": 8192, "embed_dim": 256, "ddconfig": ddconfig}}}
    (tmp_path / "vqgan.yaml").write_text(yaml.safe_dump(doc))
    assert read_vq_spec(tmp_path) == VQSpec(8192, 16, True)
    (tmp_path / "vqgan.yaml").write_text("model: {params: {embed_dim: 256}}")
    with pytest.raises(CheckpointError, match="n_embed"):
        read_vq_spec(tmp_path)


def test_save_load_round_trip(tmp_path: Path) -> None:
    ckpt = make_tiny_liquid(tmp_path / "tiny", "qwen2", codebook_size=32, downsample=2)
    model, tok, layout = load_liquid(ckpt, dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
    assert layout.codebook_size == 32 and layout.downsample == 2
    assert find_vq_dir(ckpt) == ckpt / "vq"
    assert VQGAN.from_pretrained(ckpt / "vq").codebook_size == 32
    again = save_liquid(tmp_path / "copy", model, tok, layout, vq_dir=ckpt / "vq")
    model2, _, layout2 = load_liquid(again)
    assert layout2 == layout
    for (name, a), (_, b) in zip(
        model.state_dict().items(), model2.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_strict_loading_errors(tmp_path: Path, liquid7b: Path) -> None:
    with pytest.raises(CheckpointError, match=r"no config\.json"):
        load_liquid(tmp_path / "missing")

    bare = tmp_path / "bare"  # a released-style folder without its VQGAN
    shutil.copytree(liquid7b, bare, ignore=shutil.ignore_patterns("vqgan.*"))
    with pytest.raises(CheckpointError, match=r"no vqgan\.yaml"):
        load_liquid(bare)
    _, _, layout = load_liquid(bare, vq_dir=liquid7b)  # the yaml can live elsewhere
    assert layout.image_offset == 512

    wrong = tmp_path / "wrong"  # a layout that disagrees with the weights
    shutil.copytree(bare, wrong)
    VocabLayout(image_offset=500, codebook_size=76, boi_id=7, eoi_id=8, uncond_id=9).save(wrong)
    with pytest.raises(CheckpointError, match="collides with image ids"):
        load_liquid(wrong)
    VocabLayout(image_offset=512, codebook_size=64, boi_id=8, eoi_id=7, uncond_id=9).save(wrong)
    with pytest.raises(CheckpointError, match="<boi> at id 7"):
        load_liquid(wrong)
    VocabLayout(image_offset=512, codebook_size=32, boi_id=7, eoi_id=8, uncond_id=9).save(wrong)
    with pytest.raises(CheckpointError, match="embedding has 576 rows"):
        load_liquid(wrong)

    truncated = tmp_path / "truncated"
    shutil.copytree(liquid7b, truncated)
    weights = truncated / "model-00001-of-00002.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cannot load"):
        load_liquid(truncated)

    missing_key = tmp_path / "missing_key"  # a config with one more layer than the weights
    shutil.copytree(liquid7b, missing_key)
    config = json.loads((missing_key / "config.json").read_text())
    config["num_hidden_layers"] += 1
    config.pop("layer_types", None)
    (missing_key / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="missing_keys"):
        load_liquid(missing_key)
