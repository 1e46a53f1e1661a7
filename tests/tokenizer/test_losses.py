"""The tokenizer trainer's losses (:mod:`liquidgen.tokenizer.losses`): foreground-weighted
reconstruction, the PatchGAN discriminator and hinge losses, LPIPS from local weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from liquidgen.errors import CheckpointError
from liquidgen.tokenizer.losses import (
    PatchDiscriminator,
    PerceptualLoss,
    foreground_weights,
    hinge_d_loss,
    hinge_g_loss,
    reconstruction_losses,
)


def test_foreground_weights_pick_out_objects_and_weight_the_losses() -> None:
    x = torch.full((1, 3, 8, 8), 0.9)  # light ground
    x[:, :, 2:4, 2:4] = torch.tensor([-0.5, 0.2, 0.8])[:, None, None]  # a 2x2 object
    w = foreground_weights(x, 4.0)
    assert w.shape == (1, 1, 8, 8)
    assert w[0, 0, 2:4, 2:4].eq(5.0).all() and w.sum() == 64 + 4 * 4
    assert foreground_weights(x, 0.0).eq(1.0).all()
    # an error on the object costs more than the same error on the ground
    on_object, on_ground = x.clone(), x.clone()
    on_object[:, :, 2, 2] += 0.5
    on_ground[:, :, 6, 6] += 0.5
    l1_obj, l2_obj = reconstruction_losses(on_object, x, w)
    l1_gnd, l2_gnd = reconstruction_losses(on_ground, x, w)
    assert l1_obj == pytest.approx(5 * l1_gnd) and l2_obj == pytest.approx(5 * l2_gnd)
    # uniform weights reproduce the unweighted means
    plain = reconstruction_losses(on_object, x)
    same = reconstruction_losses(on_object, x, torch.ones(1, 1, 8, 8))
    assert torch.allclose(torch.stack(plain), torch.stack(same))


def test_patch_discriminator_and_hinge_losses() -> None:
    disc = PatchDiscriminator(3, ndf=16, n_layers=2)
    logits = disc(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 1, 6, 6)  # 32 -> 16 -> 8 (stride 2) -> 7 -> 6 (stride 1, k4)
    assert hinge_d_loss(torch.full((4,), 2.0), torch.full((4,), -2.0)) == 0
    assert hinge_d_loss(torch.zeros(4), torch.zeros(4)) == pytest.approx(1.0)
    assert hinge_g_loss(torch.tensor([1.0, 3.0])) == pytest.approx(-2.0)


def test_perceptual_loss_reads_local_weights_strictly(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ref = PerceptualLoss()
    for p in ref.features.parameters():
        p.data.normal_(0, 0.05)
    vgg = {f"features.{k}": v for k, v in ref.features.state_dict().items()}
    vgg["classifier.0.weight"] = torch.zeros(2, 2)  # present in torchvision's file, ignored
    save_file(vgg, str(tmp_path / "vgg16.safetensors"))
    lin = {
        f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1)
        for k, c in enumerate((64, 128, 256, 512, 512))
    }
    torch.save(lin, tmp_path / "vgg.pth")
    loss = PerceptualLoss.from_files(tmp_path / "vgg16.safetensors", tmp_path / "vgg.pth")
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    y = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1)
    assert torch.allclose(loss(x, x), torch.zeros(2))
    d = loss(x, y)
    assert d.shape == (2,) and (d > 0).all()
    del lin["lin3.model.1.weight"]
    torch.save(lin, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"lin3\.model\.1\.weight"):
        PerceptualLoss.from_files(tmp_path / "vgg16.safetensors", tmp_path / "bad.pth")
