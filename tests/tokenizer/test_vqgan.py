"""Reference parity of the VQGAN with the authors' implementation, and checkpoint loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from liquidgen.errors import CheckpointError, CodeRangeError, ShapeError
from liquidgen.tokenizer import VQGAN, VQGANConfig


@pytest.mark.parametrize("case", ["square", "wide"])
def test_golden_parity(golden_model: VQGAN, golden_cases: dict, case: str) -> None:
    pixels = golden_cases[f"{case}.input"]
    with torch.no_grad():
        latent = golden_model.encode_latents(pixels)
    codes = golden_model.encode(pixels)
    decoded = golden_model.decode(golden_cases[f"{case}.codes"])
    assert latent.shape == golden_cases[f"{case}.latent"].shape
    torch.testing.assert_close(latent, golden_cases[f"{case}.latent"], atol=1e-4, rtol=0)
    assert codes.dtype == torch.int64
    assert torch.equal(codes, golden_cases[f"{case}.codes"])
    torch.testing.assert_close(decoded, golden_cases[f"{case}.decoded"], atol=1e-4, rtol=0)


def test_full_size_matches_manifest(golden_dir: Path) -> None:
    manifest = json.loads((golden_dir / "vqgan_full.manifest.json").read_text())
    config = VQGANConfig.from_dict(manifest)
    assert config == VQGANConfig()  # our defaults are Liquid's tokenizer
    with torch.device("meta"):
        model = VQGAN(config)
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    expected = manifest["state_dict_shapes"]
    assert list(shapes) == list(expected)  # same keys, same order
    assert shapes == expected
    assert sum(v.numel() for v in model.state_dict().values()) == 68_718_467
    assert config.downsample == 16


def test_save_reload_identical_codes(
    golden_model: VQGAN, golden_cases: dict, tmp_path: Path
) -> None:
    golden_model.save_pretrained(tmp_path / "tok")
    assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]
    reloaded = VQGAN.from_pretrained(tmp_path / "tok")
    pixels = golden_cases["square.input"]
    assert torch.equal(reloaded.encode(pixels), golden_model.encode(pixels))
    assert reloaded.config == golden_model.config


def test_authors_format_loads(
    authors_folder: Path, golden_model: VQGAN, golden_cases: dict
) -> None:
    model = VQGAN.from_pretrained(authors_folder)
    pixels = golden_cases["wide.input"]
    assert torch.equal(model.encode(pixels), golden_cases["wide.codes"])
    for key, value in golden_model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_authors_missing_key_named(make_authors_folder, golden_state: dict, tmp_path: Path) -> None:
    state = dict(golden_state)
    del state["decoder.up.1.upsample.conv.bias"]
    folder = make_authors_folder(tmp_path / "a", state=state)
    with pytest.raises(
        CheckpointError, match=r"missing key 'decoder\.up\.1\.upsample\.conv\.bias'"
    ):
        VQGAN.from_pretrained(folder)


def test_authors_wrong_shape_named(make_authors_folder, golden_state: dict, tmp_path: Path) -> None:
    state = dict(golden_state)
    state["quantize.embedding.weight"] = torch.zeros(511, 32)
    folder = make_authors_folder(tmp_path / "a", state=state)
    with pytest.raises(
        CheckpointError, match=r"'quantize\.embedding\.weight' has shape \(511, 32\)"
    ):
        VQGAN.from_pretrained(folder)


def test_unexpected_key_named(liquid_folder: Path) -> None:
    weights = liquid_folder / "model.safetensors"
    state = load_file(str(weights))
    state["encoder.extra.weight"] = torch.zeros(2)
    save_file(state, str(weights))
    with pytest.raises(CheckpointError, match=r"unexpected key 'encoder\.extra\.weight'"):
        VQGAN.from_pretrained(liquid_folder)


def test_corrupt_and_missing_checkpoints(
    tmp_path: Path, liquid_folder: Path, authors_folder: Path
) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        VQGAN.from_pretrained(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"expected config\.json"):
        VQGAN.from_pretrained(tmp_path / "empty")
    weights = liquid_folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="unreadable safetensors"):
        VQGAN.from_pretrained(liquid_folder)
    ckpt = authors_folder / "vqgan.ckpt"
    ckpt.write_bytes(ckpt.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="cannot read checkpoint safely"):
        VQGAN.from_pretrained(authors_folder)


def test_ckpt_with_arbitrary_objects_is_refused(tmp_path: Path, make_authors_folder) -> None:
    folder = make_authors_folder(tmp_path / "a")
    ckpt = torch.load(folder / "vqgan.ckpt", weights_only=True)
    ckpt["callbacks"] = {"cb": Path("/x")}  # a pickled object that weights_only rejects
    torch.save(ckpt, folder / "vqgan.ckpt")
    with pytest.raises(CheckpointError, match="cannot read checkpoint safely"):
        VQGAN.from_pretrained(folder)


def test_non_square_and_sizes(golden_model: VQGAN) -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 96) * 2 - 1
    codes = golden_model.encode(x)
    assert codes.shape == (2, 2, 6)
    assert golden_model.decode(codes).shape == (2, 3, 32, 96)
    with pytest.raises(ShapeError, match="not divisible by the tokenizer's factor 16"):
        golden_model.encode(torch.zeros(1, 3, 40, 48))
    with pytest.raises(ShapeError):
        golden_model.encode(torch.zeros(3, 32, 32))


def test_decode_rejects_bad_codes(golden_model: VQGAN) -> None:
    with pytest.raises(CodeRangeError, match=r"\[0, 512\)"):
        golden_model.decode(torch.full((1, 2, 2), 512))
    with pytest.raises(CodeRangeError):
        golden_model.decode(torch.full((1, 2, 2), -1))
    with pytest.raises(CodeRangeError, match="integer"):
        golden_model.decode(torch.zeros(1, 2, 2))


def test_training_forward_has_gradients(golden_model: VQGAN) -> None:
    model = VQGAN(golden_model.config)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    recon, codes, vq_loss = model(x)
    assert recon.shape == x.shape and codes.shape == (1, 2, 2)
    ((recon - x).abs().mean() + vq_loss).backward()
    assert model.encoder.conv_in.weight.grad is not None  # straight-through reaches the encoder
    assert model.quantize.embedding.weight.grad is not None  # codebook loss reaches the codes
