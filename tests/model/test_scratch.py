"""`liquidgen init-backbone`: a random transformers backbone with a from-scratch BPE."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from liquidgen.errors import ConfigError
from liquidgen.model import save_text_tokenizer, train_text_tokenizer
from liquidgen.model.scratch import init_backbone
from tiny_models import tiny_corpus

SIZES = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
         "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 64}  # fmt: skip


@pytest.fixture(scope="module")
def bpe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bpe") / "tok"
    save_text_tokenizer(train_text_tokenizer(tiny_corpus(), 300), out)
    return out


def test_llama_backbone_keeps_the_tokenizer(bpe: Path, tmp_path: Path) -> None:
    out = init_backbone({"model_type": "llama", **SIZES}, bpe, tmp_path / "bb", seed=0)
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    model = AutoModelForCausalLM.from_pretrained(str(out))
    assert tokenizer.get_vocab() == AutoTokenizer.from_pretrained(str(bpe)).get_vocab()
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)
    assert model.config.bos_token_id == tokenizer.bos_token_id


def test_architecture_that_rewrites_the_tokenizer_is_refused(bpe: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="changes the vocabulary"):
        init_backbone({"model_type": "qwen2", **SIZES}, bpe, tmp_path / "bb")
    assert not (tmp_path / "bb").exists()
    with pytest.raises(ConfigError, match="comes from the tokenizer"):
        init_backbone({"model_type": "llama", "vocab_size": 5, **SIZES}, bpe, tmp_path / "bb")
