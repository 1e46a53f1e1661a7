"""The logit processors and the draw, checked against the authors' sampler (golden data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from liquidgen.errors import ConfigError, ShapeError
from liquidgen.inference.sampling import (
    apply_top_k,
    apply_top_p,
    greedy,
    image_code_probs,
    image_token_probs,
    process_logits,
    sample_from_probs,
    text_token_probs,
)

GOLDEN = Path(__file__).parents[1] / "fixtures" / "golden"
CASES = json.loads((GOLDEN / "cfg_sampling.config.json").read_text())


@pytest.fixture(scope="module")
def golden() -> dict[str, torch.Tensor]:
    return load_file(GOLDEN / "cfg_sampling.cases.safetensors")


@pytest.mark.parametrize("case", CASES, ids=[c["case"] for c in CASES])
def test_image_token_probs_match_reference(case: dict, golden: dict[str, torch.Tensor]) -> None:
    name = case["case"]
    settings = {k: v for k, v in case.items() if k != "case"}
    probs = image_token_probs(golden[f"{name}.cond"], golden[f"{name}.uncond"], **settings)
    expected = golden[f"{name}.probs"]
    assert probs.shape == expected.shape
    torch.testing.assert_close(probs, expected, atol=1e-6, rtol=0)
    # Same support: filtered ids are exactly zero.
    assert torch.equal(probs > 0, expected > 0)


def test_image_token_probs_accepts_2d_logits(golden: dict[str, torch.Tensor]) -> None:
    case = CASES[2]
    settings = {k: v for k, v in case.items() if k != "case"}
    cond, uncond = golden["c2.cond"], golden["c2.uncond"]
    three_d = image_token_probs(cond, uncond, **settings)
    two_d = image_token_probs(cond[:, 0], uncond[:, 0], **settings)
    assert torch.equal(three_d, two_d)


def test_image_code_probs_is_the_image_slice(golden: dict[str, torch.Tensor]) -> None:
    offset, size = CASES[0]["image_offset"], CASES[0]["codebook_size"]
    settings = dict(cfg_scale=2.0, temperature=1.3, top_k=100, top_p=0.9)
    cond, uncond = golden["c0.cond"], golden["c0.uncond"]
    full = image_token_probs(cond, uncond, image_offset=offset, codebook_size=size, **settings)
    sliced = image_code_probs(
        cond[..., offset : offset + size], uncond[..., offset : offset + size], **settings
    )
    assert torch.equal(full[:, offset : offset + size], sliced)
    assert float(full[:, :offset].abs().sum()) == 0.0
    torch.testing.assert_close(full.sum(-1), torch.ones(3))


def test_cfg_scale_at_most_one_ignores_uncond() -> None:
    cond = torch.randn(2, 10)
    with_uncond = image_code_probs(
        cond, torch.randn(2, 10), cfg_scale=1.0, temperature=1.0, top_k=0, top_p=1.0
    )
    without = image_code_probs(cond, None, cfg_scale=0.5, temperature=1.0, top_k=0, top_p=1.0)
    assert torch.equal(with_uncond, cond.softmax(-1))
    assert torch.equal(without, cond.softmax(-1))
    with pytest.raises(ConfigError, match="unconditional"):
        image_code_probs(cond, None, cfg_scale=3.0, temperature=1.0, top_k=0, top_p=1.0)


def test_cfg_mix_formula() -> None:
    cond, uncond = torch.randn(1, 5), torch.randn(1, 5)
    probs = image_code_probs(cond, uncond, cfg_scale=4.0, temperature=0.5, top_k=0, top_p=1.0)
    expected = ((uncond + 4.0 * (cond - uncond)) / 0.5).softmax(-1)
    torch.testing.assert_close(probs, expected, atol=1e-7, rtol=0)


def test_top_k_keeps_ties_and_caps_k() -> None:
    logits = torch.tensor([[1.0, 3.0, 2.0, 2.0, 0.0]])
    kept = apply_top_k(logits, 2)
    assert torch.isfinite(kept).tolist() == [[False, True, True, True, False]]
    assert torch.equal(apply_top_k(logits, 100), logits)  # capped to V: nothing dropped
    assert torch.equal(apply_top_k(logits, 0), logits)


def test_top_p_keeps_the_token_that_crosses_p() -> None:
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    kept = torch.isfinite(apply_top_p(probs.log(), 0.6))
    assert kept.tolist() == [[True, True, False, False]]  # 0.5 < 0.6, 0.8 crosses: kept
    kept = torch.isfinite(apply_top_p(probs.log(), 0.1))
    assert kept.tolist() == [[True, False, False, False]]  # first always kept
    assert torch.equal(apply_top_p(probs.log(), 1.0), probs.log())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(temperature=0.0), "temperature"),
        (dict(temperature=-1.0), "temperature"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=1.5), "top_p"),
        (dict(top_k=-1), "top_k"),
        (dict(cfg_scale=-0.5), "cfg_scale"),
    ],
)
def test_bad_settings_raise_config_error(kwargs: dict, message: str) -> None:
    settings = dict(cfg_scale=7.0, temperature=1.0, top_k=0, top_p=1.0) | kwargs
    logits = torch.randn(1, 1, 20)
    with pytest.raises(ConfigError, match=message):
        image_token_probs(logits, logits, image_offset=4, codebook_size=16, **settings)


def test_logits_too_narrow_for_the_layout() -> None:
    logits = torch.randn(1, 20)
    with pytest.raises(ShapeError, match="image range"):
        image_token_probs(
            logits, logits, image_offset=10, codebook_size=16, cfg_scale=2.0,
            temperature=1.0, top_k=0, top_p=1.0,
        )  # fmt: skip


def test_sample_from_probs_follows_the_distribution() -> None:
    probs = torch.tensor([[0.1, 0.0, 0.6, 0.3]]).expand(20000, 4)
    draws = sample_from_probs(probs, torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=4).double() / draws.numel()
    assert freq[1] == 0
    torch.testing.assert_close(
        freq, torch.tensor([0.1, 0.0, 0.6, 0.3], dtype=torch.double), atol=0.015, rtol=0
    )


def test_sample_from_probs_ignores_zero_padding() -> None:
    """Full-vocabulary probs (zeros around the image slice) draw the same index, shifted."""
    probs = torch.rand(8, 50).softmax(-1)
    padded = torch.cat([torch.zeros(8, 30), probs, torch.zeros(8, 7)], dim=-1)
    for seed in range(5):
        a = sample_from_probs(probs, torch.Generator().manual_seed(seed))
        b = sample_from_probs(padded, torch.Generator().manual_seed(seed))
        assert torch.equal(a + 30, b)


def test_per_row_generators_make_rows_independent_of_the_batch() -> None:
    probs = torch.rand(4, 30).softmax(-1)
    together = sample_from_probs(probs, [torch.Generator().manual_seed(s) for s in range(4)])
    alone = sample_from_probs(probs[2:3], [torch.Generator().manual_seed(2)])
    assert together[2] == alone[0]
    with pytest.raises(ShapeError):
        sample_from_probs(probs, [torch.Generator()])


def test_sample_never_draws_past_the_last_positive_token() -> None:
    probs = torch.tensor([[0.0, 1.0, 0.0, 0.0]]).expand(1000, 4)
    assert bool((sample_from_probs(probs, torch.Generator().manual_seed(1)) == 1).all())


def test_text_processing_and_greedy() -> None:
    logits = torch.tensor([[0.0, 2.0, 1.0, -1.0]])
    assert greedy(logits).tolist() == [1]
    assert greedy(logits[:, None]).tolist() == [1]
    processed = process_logits(logits, temperature=2.0, top_k=2, top_p=1.0)
    assert processed[0, :3].tolist() == [float("-inf"), 1.0, 0.5]
    probs = text_token_probs(logits, temperature=1.0, top_k=0, top_p=1.0)
    torch.testing.assert_close(probs, logits.softmax(-1))
