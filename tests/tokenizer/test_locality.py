"""The locality options of the VQGAN (issue 15): defaults stay the authors' architecture;
``norm=pixel``, ``mid_attn=False``, ``encoder_kernel=1`` make each code a function of a
bounded pixel window, so far-away edits leave it unchanged."""

from __future__ import annotations

import pytest
import torch

from liquidgen.errors import ConfigError
from liquidgen.evaluation.tokenizer import evaluate_locality
from liquidgen.tokenizer import VQGAN, VQGANConfig

SMALL = dict(ch=32, ch_mult=(1, 1, 2), num_res_blocks=1, z_channels=16, n_embed=64, embed_dim=8)
LOCAL = dict(norm="pixel", mid_attn=False, encoder_kernel=1)


def test_defaults_are_the_authors_and_round_trip_without_extension_keys() -> None:
    config = VQGANConfig()
    assert (config.norm, config.mid_attn, config.encoder_kernel) == ("group", True, 3)
    dd = config.to_dict()["ddconfig"]
    assert not {"norm", "mid_attn", "encoder_kernel"} & set(dd)  # the authors' keys only
    local = VQGANConfig(**SMALL, **LOCAL)
    assert VQGANConfig.from_dict(local.to_dict()) == local
    assert local.to_dict()["ddconfig"]["norm"] == "pixel"


@pytest.mark.parametrize("bad", [{"norm": "batch"}, {"encoder_kernel": 5}, {"encoder_kernel": 0}])
def test_bad_locality_options_are_config_errors(bad: dict) -> None:
    with pytest.raises(ConfigError):
        VQGANConfig(**SMALL, **bad)


def test_local_options_drop_groupnorm_and_attention_keys() -> None:
    keys = set(VQGAN(VQGANConfig(**SMALL, **LOCAL)).state_dict())
    assert not any(".attn_1." in k for k in keys)
    assert "encoder.down.0.block.0.norm1.weight" in keys  # PixelNorm keeps weight/bias
    none = set(VQGAN(VQGANConfig(**SMALL, norm="none", mid_attn=False)).state_dict())
    assert not any("norm" in k for k in none)


def _codes_after_edit(config: VQGANConfig) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    vq = VQGAN(config).eval()
    image = torch.rand(1, 3, 64, 64) * 2 - 1
    edited = image.clone()
    edited[:, :, :12, :12] = -1.0  # change the top-left corner only
    return vq.encode(image)[0], vq.encode(edited)[0]  # (16, 16) each, factor 4


def test_local_codes_ignore_far_edits_authors_codes_do_not() -> None:
    before, after = _codes_after_edit(VQGANConfig(**SMALL, **LOCAL))
    # factor 4: a code sees 4 * 2 + 1 = 9 pixels plus conv_in's border; cells from 6 on
    # (24+ px) are far from the 12 px edit
    assert torch.equal(before[6:, :], after[6:, :]) and torch.equal(before[:, 6:], after[:, 6:])
    assert not torch.equal(before, after)
    before, after = _codes_after_edit(VQGANConfig(**SMALL))
    assert not torch.equal(before[6:, 6:], after[6:, 6:])  # GroupNorm + attention: global


def test_evaluate_locality_on_a_random_local_tokenizer() -> None:
    torch.manual_seed(0)
    vq = VQGAN(VQGANConfig(**SMALL, **LOCAL)).eval()
    out = evaluate_locality(vq, [(64, 64)], scenes_per_size=4)
    assert out["far_change"] == 0.0 and out["far_codes"] > 0
    assert 0.0 <= out["reencode"] <= 1.0
    # a flat image gives at most a few codes (the border cells see zero padding)
    assert set(out["flat_codes"]) == {"white", "cream", "light gray", "light blue", "light green"}
    assert out["flat_codes_max"] <= 9
