"""Fixtures for the tokenizer tests: the golden small VQGAN and folders in both formats."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from liquidgen.tokenizer import VQGAN, VQGANConfig
from liquidgen.tokenizer.vqgan import load_state_dict_strict


@pytest.fixture(scope="session")
def golden_config(golden_dir: Path) -> dict:
    return json.loads((golden_dir / "vqgan_small.config.json").read_text())


@pytest.fixture(scope="session")
def golden_state(golden_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(golden_dir / "vqgan_small.weights.safetensors"))


@pytest.fixture(scope="session")
def golden_cases(golden_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(golden_dir / "vqgan_small.cases.safetensors"))


@pytest.fixture(scope="session")
def golden_model(golden_config: dict, golden_state: dict[str, torch.Tensor]) -> VQGAN:
    model = VQGAN(VQGANConfig.from_dict(golden_config))
    load_state_dict_strict(model, dict(golden_state), source="golden")
    return model.eval()


def write_authors_folder(
    path: Path, config: dict, state: dict[str, torch.Tensor], *, loss_keys: bool = True
) -> Path:
    """Write ``vqgan.yaml`` + a Lightning-style ``vqgan.ckpt`` (with ``loss.*`` extras)."""
    path.mkdir(parents=True, exist_ok=True)
    params = {
        "embed_dim": config["embed_dim"],
        "n_embed": config["n_embed"],
        "ddconfig": config["ddconfig"],
        "lossconfig": {"target": "taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator"},
    }
    yaml_doc = {"model": {"target": "taming.models.vqgan.VQModel", "params": params}}
    (path / "vqgan.yaml").write_text(yaml.safe_dump(yaml_doc))
    sd = dict(state)
    if loss_keys:
        sd["loss.discriminator.main.0.weight"] = torch.zeros(4, 3, 4, 4)
        sd["loss.perceptual_loss.lin0.model.1.weight"] = torch.zeros(1, 4, 1, 1)
    ckpt = {"epoch": 3, "global_step": 1000, "pytorch-lightning_version": "1.9.0", "state_dict": sd}
    torch.save(ckpt, path / "vqgan.ckpt")
    return path


@pytest.fixture()
def make_authors_folder(
    golden_config: dict, golden_state: dict[str, torch.Tensor]
) -> Callable[..., Path]:
    """Factory: ``make_authors_folder(path, state=None, loss_keys=True)``."""

    def make(
        path: Path, state: dict[str, torch.Tensor] | None = None, loss_keys: bool = True
    ) -> Path:
        return write_authors_folder(
            path, golden_config, golden_state if state is None else state, loss_keys=loss_keys
        )

    return make


@pytest.fixture()
def authors_folder(
    tmp_path: Path, golden_config: dict, golden_state: dict[str, torch.Tensor]
) -> Path:
    return write_authors_folder(tmp_path / "authors", golden_config, golden_state)


@pytest.fixture()
def liquid_folder(tmp_path: Path, golden_model: VQGAN) -> Path:
    out = tmp_path / "liquid"
    golden_model.save_pretrained(out)
    return out
