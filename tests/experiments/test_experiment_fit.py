"""The analyses' arithmetic on synthetic points: the power law, the frontier, steps to a loss."""

from __future__ import annotations

import math

import numpy as np
import pytest

from liquidgen.errors import ConfigError
from liquidgen.experiments.fit import fit_power_law, frontier, mean_std, steps_to_reach


def _law(compute: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return a * compute ** (-b) + c


def test_the_fit_recovers_a_known_exponent_from_exact_points() -> None:
    compute = np.geomspace(1e12, 1e16, 9)
    a = 3.0 * 1e12**0.3  # the reducible part is 3 nats at the smallest compute
    loss = _law(compute, a, 0.3, 2.0)
    fit = fit_power_law(compute, loss)
    assert fit.b == pytest.approx(0.3, abs=1e-4)
    assert fit.c == pytest.approx(2.0, abs=1e-4)
    assert fit.a == pytest.approx(a, rel=1e-3)
    assert max(abs(r) for r in fit.residuals) < 1e-6
    assert fit.predict([1e14])[0] == pytest.approx(_law(np.array(1e14), a, 0.3, 2.0), abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_fit_recovers_the_exponent_within_its_standard_error_from_noisy_points(
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    compute = np.geomspace(1e11, 1e15, 16)
    a, b, c = 2.5 * 1e11**0.25, 0.25, 1.5
    noise = 0.01
    loss = _law(compute, a, b, c) + rng.normal(0.0, noise, compute.shape)
    fit = fit_power_law(compute, loss)
    assert 0 < fit.b_se < 0.1
    assert abs(fit.b - b) < 3 * fit.b_se + 1e-3  # within 3 standard errors
    assert abs(fit.b - b) < 0.05
    assert fit.rmse == pytest.approx(noise, rel=0.6)
    assert len(fit.residuals) == 16
    assert np.allclose(fit.residuals, loss - fit.predict(compute))


def test_three_points_fit_exactly_without_standard_errors_and_fewer_are_refused() -> None:
    compute = np.array([1e10, 1e11, 1e12])
    fit = fit_power_law(compute, _law(compute, 1e3, 0.2, 1.0))
    assert math.isnan(fit.b_se) and fit.to_dict()["b_se"] is None  # JSON-safe
    with pytest.raises(ConfigError, match=">= 3 distinct"):
        fit_power_law([1e10, 1e10, 1e11], [3.0, 2.9, 2.5])


def test_the_frontier_keeps_only_points_nothing_cheaper_beats() -> None:
    compute = [1.0, 2.0, 2.0, 4.0, 8.0, 16.0]
    loss = [5.0, 4.0, 4.5, 4.2, 3.0, 3.1]
    assert frontier(compute, loss) == [0, 1, 4]


def test_steps_to_reach_interpolates_between_validations() -> None:
    curve = [(0, 6.0), (100, 4.0), (200, 3.0)]
    assert steps_to_reach(curve, 3.5) == pytest.approx(150.0)
    assert steps_to_reach(curve, 6.5) == 0.0
    assert steps_to_reach(curve, 2.0) is None


def test_mean_std_skips_missing_values() -> None:
    assert mean_std([1.0, 3.0, None, float("nan")]) == (2.0, math.sqrt(2.0), 2)
    mean, std, n = mean_std([4.0])
    assert (mean, n) == (4.0, 1) and math.isnan(std)
    assert mean_std([])[2] == 0
