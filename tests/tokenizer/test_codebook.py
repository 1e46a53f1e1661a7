"""Keeping the codebook in use (:mod:`liquidgen.tokenizer.training.codebook`): dead-code
restarts, EMA codebook updates, and the usage statistics they are judged by."""

from __future__ import annotations

import math

import pytest
import torch

from liquidgen.errors import ConfigError
from liquidgen.tokenizer.evaluate import code_statistics
from liquidgen.tokenizer.quantizer import VectorQuantizer
from liquidgen.tokenizer.training import CodebookConfig, CodebookEMA, restart_dead_codes


def test_restart_moves_only_dead_codes_and_clears_their_moments() -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(8, 4)
    opt = torch.optim.AdamW(vq.parameters(), lr=0.1)
    vq.embedding.weight.sum().backward()
    opt.step()
    before = vq.embedding.weight.detach().clone()
    counts = torch.tensor([3, 0, 1, 0, 5, 0, 2, 2])
    pool = torch.arange(40, dtype=torch.float32).view(10, 4) + 100.0
    n = restart_dead_codes(
        vq, counts, pool, min_uses=1, generator=torch.Generator().manual_seed(0), optimizer=opt
    )
    assert n == 3
    weight = vq.embedding.weight.detach()
    dead, alive = counts == 0, counts > 0
    assert torch.equal(weight[alive], before[alive])
    moved = weight[dead]
    assert all(any(torch.equal(row, p) for p in pool) for row in moved)  # each is a pool vector
    assert len({tuple(r.tolist()) for r in moved}) == 3  # distinct targets
    state = opt.state[vq.embedding.weight]
    assert state["exp_avg"][dead].abs().sum() == 0 and state["exp_avg"][alive].abs().sum() > 0


def test_distance_restarts_skip_outputs_the_live_codes_already_serve() -> None:
    """k-means++ restarts: a pool full of copies of one (served) background vector still
    sends the dead codes to the few outputs far from every live code."""
    vq = VectorQuantizer(4, 2)
    with torch.no_grad():
        vq.embedding.weight.copy_(torch.tensor([[0.0, 0.0], [9.0, 9.0], [8.0, 8.0], [7.0, 7.0]]))
    counts = torch.tensor([10, 0, 0, 0])  # only the background code (0, 0) is alive
    pool = torch.cat([torch.zeros(60, 2), torch.tensor([[5.0, 0.0], [0.0, 5.0]])])
    n = restart_dead_codes(
        vq, counts, pool, 1, torch.Generator().manual_seed(0), sampling="distance"
    )
    assert n == 2  # two distinct far targets; the third dead code waits for the next window
    moved = {tuple(r) for r in vq.embedding.weight.detach()[1:3].tolist()}
    assert moved == {(5.0, 0.0), (0.0, 5.0)}
    with pytest.raises(ConfigError, match="restart_sampling"):
        CodebookConfig(restart_sampling="nearest")


def test_ema_codebook_moves_codes_to_the_mean_of_their_vectors() -> None:
    vq = VectorQuantizer(3, 2)
    ema = CodebookEMA(vq, decay=0.5)
    z = torch.tensor([[1.0, 3.0, 10.0], [2.0, 4.0, 10.0]]).view(1, 2, 1, 3)  # (B, D, h, w)
    codes = torch.tensor([[[0, 0, 2]]])  # code 0 <- (1, 2), (3, 4); code 2 <- (10, 10)
    start = vq.embedding.weight.detach().clone()
    ema.update(z, codes)
    # size = 0.5 * 1 + 0.5 * count, total = 0.5 * start + 0.5 * sum (then Laplace smoothing).
    expected0 = (0.5 * start[0] + 0.5 * torch.tensor([4.0, 6.0])) / 1.5
    expected2 = (0.5 * start[2] + 0.5 * torch.tensor([10.0, 10.0])) / 1.0
    torch.testing.assert_close(vq.embedding.weight[0], expected0, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(vq.embedding.weight[2], expected2, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(
        vq.embedding.weight[1], start[1], rtol=1e-4, atol=1e-4
    )  # unused: unchanged


def test_code_statistics() -> None:
    assert code_statistics(torch.tensor([5, 5, 5, 5])) == pytest.approx((1.0, 4.0))
    assert code_statistics(torch.tensor([7, 0, 0, 0])) == pytest.approx((0.25, 1.0))
    usage, ppl = code_statistics(torch.tensor([1, 3, 0, 0]))
    assert usage == 0.5 and ppl == pytest.approx(
        math.exp(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))
    )
