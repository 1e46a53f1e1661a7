"""The shipped recipes: the tiny smoke run trains on world data; the Liquid-7B recipe is valid."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import GemmaConfig, GemmaForCausalLM

from liquidgen.tokenizer import VQGAN
from liquidgen.training.config import load_config
from liquidgen.training.data import tokenize_dataset
from liquidgen.training.dist import decoder_layers
from liquidgen.training.inputs import open_input
from liquidgen.training.memory import GIB, estimate_fsdp2_memory
from liquidgen.training.report import read_metrics
from liquidgen.training.trainer import train
from liquidgen.world.make import write_dataset
from tiny_models import make_tiny_liquid

from .conftest import REPO

CONFIGS = REPO / "configs"
GEMMA_TEXT_VOCAB = 256000
CHAMELEON_CODES = 8192


def test_liquid_7b_recipe_parses_builds_on_meta_and_fits(capsys: pytest.CaptureFixture) -> None:
    config = load_config(CONFIGS / "liquid-7b-pretrain.yaml")
    assert config.optim.lr == 2e-5 and config.optim.grad_clip == 0.5 and config.optim.z_loss == 1e-4
    assert (config.global_batch, config.data.seq_len) == (1024, 2048)
    assert (config.distributed, config.precision) == ("fsdp2", "bf16")
    assert config.model.gradient_checkpointing and config.data.packing
    assert {s.modality for s in config.data.sources} == {"text", "t2i", "caption"}
    assert config.grad_accum(world_size=64) == 8

    gemma_7b = GemmaConfig(
        hidden_size=3072,
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=16,
        head_dim=256,
        intermediate_size=24576,
        vocab_size=GEMMA_TEXT_VOCAB + CHAMELEON_CODES,
    )
    with torch.device("meta"):
        model = GemmaForCausalLM(gemma_7b)
    assert len(decoder_layers(model)) == 28  # the FSDP2 sharding units
    params = sum(p.numel() for p in model.parameters())
    assert 8.5e9 < params < 8.6e9  # Gemma-7B (8.54B) + 8192 x 3072 image rows
    for gpus in (8, 64):
        estimate = estimate_fsdp2_memory(
            model,
            world_size=gpus,
            micro_batch=config.micro_batch,
            seq_len=config.data.seq_len,
            gradient_checkpointing=config.model.gradient_checkpointing,
        )
        print(f"Liquid-7B recipe, FSDP2 over {gpus} GPUs:\n{estimate.table()}")
        assert estimate.total < 80 * GIB  # fits an 80 GB A100/H100
    assert "total per GPU" in capsys.readouterr().out


@pytest.mark.slow
def test_tiny_smoke_recipe_lowers_validation_loss_on_every_modality(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the recipe's relative paths resolve here, as for a user
    threads = torch.get_num_threads()
    model = make_tiny_liquid(Path("runs/tiny/model"), "llama")
    vqgan = VQGAN.from_pretrained(model / "vq")
    for split, n, seed in (("train", 240, 0), ("val", 32, 1)):
        world = write_dataset(Path(f"data/world-{split}"), n, [(32, 32)], seed, progress=False)
        tokenize_dataset(
            open_input(str(world)), Path(f"data/tok/world-{split}"), vqgan=vqgan, progress=False
        )
    for split, name in (("train", "train"), ("validation", "val")):
        tokenize_dataset(
            open_input(f"pydoc:{split}"), Path(f"data/tok/pydoc-{name}"), vqgan=None, progress=False
        )
    config = load_config(CONFIGS / "tiny-smoke.yaml", ["progress=false"])
    try:
        result = train(config)
    finally:
        torch.set_num_threads(threads)
    assert result.step == config.max_steps
    vals = [r for r in read_metrics(Path(config.out_dir) / "metrics.jsonl") if r["kind"] == "val"]
    first, last = vals[0], vals[-1]
    assert first["step"] == 0 and last["step"] == config.max_steps
    for modality in ("text", "t2i", "caption", "vqa"):
        drop = first[f"{modality}/loss"] - last[f"{modality}/loss"]
        assert drop > 0.5, (modality, first[f"{modality}/loss"], last[f"{modality}/loss"])
    assert (Path(config.out_dir) / "loss_curve.png").is_file()
