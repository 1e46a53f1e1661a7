"""The analyses' arithmetic: the power law in compute, the compute frontier, steps to a loss.

:func:`fit_power_law` fits ``L(C) = a * C^-b + c`` (Kaplan et al. / Hoffmann et al. form;
Liquid's Fig. 3-4) by least squares with :func:`scipy.optimize.curve_fit`. Compute spans
orders of magnitude, so the fit runs on ``x = C / C_ref`` (``C_ref`` the geometric mean of
the points) as ``L = A * x^-b + c`` and converts back (``a = A * C_ref^b``); it starts from
a small grid of exponents and floors and keeps the best. Standard errors are the square
roots of the covariance's diagonal (curve_fit scales it by the residual variance, so they
are meaningful only with more points than parameters: with exactly 3 they are ``nan``).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from liquidgen.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class PowerLawFit:
    """``L(C) = a * C^-b + c`` with standard errors, and the fit's residuals."""

    a: float
    b: float  # the exponent
    c: float  # the irreducible loss
    a_se: float
    b_se: float
    c_se: float
    c_ref: float  # compute scale of the fit: L = A * (C / c_ref)^-b + c with A = a * c_ref^-b
    residuals: list[float]  # observed - fitted, in the points' order
    rmse: float
    points: int

    def predict(self, compute: Any) -> np.ndarray:
        x = np.asarray(compute, dtype=float) / self.c_ref
        return self.a * self.c_ref ** (-self.b) * x ** (-self.b) + self.c

    def to_dict(self) -> dict[str, Any]:
        return {k: _json_float(v) for k, v in dataclasses.asdict(self).items()}


def _json_float(value: Any) -> Any:
    """``nan``/``inf`` as ``None`` (JSON has neither); lists element-wise."""
    if isinstance(value, list):
        return [_json_float(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _model(x: np.ndarray, amplitude: float, b: float, c: float) -> np.ndarray:
    return amplitude * np.power(x, -b) + c


def fit_power_law(compute: Sequence[float], loss: Sequence[float]) -> PowerLawFit:
    """Least-squares ``L(C) = a * C^-b + c`` (``a, b >= 0``, ``0 <= c <= min L``) through
    ``(compute, loss)`` points; :class:`ConfigError` with fewer than 3 distinct computes."""
    from scipy.optimize import curve_fit

    C = np.asarray(compute, dtype=float)
    L = np.asarray(loss, dtype=float)
    if C.shape != L.shape or C.ndim != 1:
        raise ConfigError("compute and loss must be two lists of the same length")
    keep = np.isfinite(C) & np.isfinite(L) & (C > 0)
    C, L = C[keep], L[keep]
    if len(np.unique(C)) < 3:
        raise ConfigError(f"a power law needs >= 3 distinct compute values, got {len(C)} points")
    c_ref = float(np.exp(np.mean(np.log(C))))
    x = C / c_ref
    low = float(L.min())
    best = None
    for b0 in (0.05, 0.15, 0.3, 0.6, 1.0):
        for share in (0.0, 0.5, 0.9):
            c0 = share * low
            amplitude0 = max(float(np.mean((L - c0) * x**b0)), 1e-12)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # OptimizeWarning: covariance not estimated
                    params, cov = curve_fit(
                        _model,
                        x,
                        L,
                        p0=(amplitude0, b0, c0),
                        bounds=([0.0, 0.0, 0.0], [np.inf, 10.0, max(low, 1e-12)]),
                        maxfev=20000,
                    )
            except (RuntimeError, ValueError):
                continue
            sse = float(np.sum((L - _model(x, *params)) ** 2))
            if best is None or sse < best[0]:
                best = (sse, params, cov)
    if best is None:
        raise ConfigError("the power-law fit did not converge from any starting point")
    sse, (amplitude, b, c), cov = best
    dof = len(L) - 3
    cov = np.asarray(cov, dtype=float)
    if dof <= 0 or not np.all(np.isfinite(cov)):
        cov = np.full((3, 3), np.nan)
    var_amp, var_b, var_c = np.diag(cov)
    # a = A * c_ref^b: delta method for its standard error
    log_ref = math.log(c_ref)
    a = float(amplitude * c_ref**b)
    var_a = (c_ref**b) ** 2 * (
        var_amp + (amplitude * log_ref) ** 2 * var_b + 2 * amplitude * log_ref * cov[0, 1]
    )
    residuals = (L - _model(x, amplitude, b, c)).tolist()
    return PowerLawFit(
        a=a,
        b=float(b),
        c=float(c),
        a_se=float(math.sqrt(var_a)) if var_a >= 0 else math.nan,
        b_se=float(math.sqrt(var_b)) if var_b >= 0 else math.nan,
        c_se=float(math.sqrt(var_c)) if var_c >= 0 else math.nan,
        c_ref=c_ref,
        residuals=[float(r) for r in residuals],
        rmse=float(math.sqrt(sse / len(L))),
        points=len(L),
    )


def frontier(compute: Sequence[float], loss: Sequence[float]) -> list[int]:
    """Indices of the compute-efficient frontier: the points no point of less or equal
    compute beats (lower loss), in increasing compute."""
    order = sorted(range(len(compute)), key=lambda i: (compute[i], loss[i]))
    best = math.inf
    out = []
    for i in order:
        if loss[i] < best:
            out.append(i)
            best = loss[i]
    return out


def steps_to_reach(curve: Sequence[tuple[float, float]], target: float) -> float | None:
    """The first step at which a ``(step, loss)`` curve reaches ``target`` (linear
    interpolation between evaluations); ``None`` if it never does."""
    points = sorted(curve)
    for i, (step, value) in enumerate(points):
        if value <= target:
            if i == 0:
                return float(step)
            s0, v0 = points[i - 1]
            return float(s0 + (step - s0) * (v0 - target) / (v0 - value))
    return None


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (``nan`` for one value) and count of the finite values."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return math.nan, math.nan, 0
    mean = sum(finite) / len(finite)
    if len(finite) < 2:
        return mean, math.nan, len(finite)
    var = sum((v - mean) ** 2 for v in finite) / (len(finite) - 1)
    return mean, math.sqrt(var), len(finite)
