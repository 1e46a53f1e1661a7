"""The experiment figures (matplotlib, Agg backend), each written atomically as a PNG."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from liquidgen.experiments.fit import PowerLawFit
from liquidgen.utils.io import atomic_path

LABELS = {
    "flops": "training compute C = 6 N D (FLOPs, N non-embedding)",
    "flops_total": "training compute C = 6 N D + LM head (FLOPs)",
    "tokens": "tokens trained on",
    "params_non_embedding": "non-embedding parameters",
    "params": "parameters",
    "steps": "optimiser steps",
}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out: str | os.PathLike[str]) -> Path:
    plt = _pyplot()
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return out


def _fit_label(fit: PowerLawFit) -> str:
    se = "" if math.isnan(fit.b_se) else f" ± {fit.b_se:.3f}"
    return f"fit a·C^-b + c: b = {fit.b:.3f}{se}, c = {fit.c:.3f}"


def scaling_plot(
    points: Sequence[dict[str, Any]],
    frontier: Sequence[int],
    fit: PowerLawFit | None,
    fitted: Sequence[int],
    out: str | os.PathLike[str],
    *,
    metric: str,
    x: str = "flops",
) -> Path:
    """Loss against compute: every run (one colour per size, its budgets joined), the
    compute frontier, the power-law fit; right panel: the fit's residuals.

    ``points`` hold ``size``, ``x``, ``y``; ``frontier`` and ``fitted`` index into them.
    """
    plt = _pyplot()
    fig, (ax, res) = plt.subplots(
        1, 2, figsize=(11, 4.2), dpi=100, gridspec_kw={"width_ratios": [2, 1]}
    )
    sizes = list(dict.fromkeys(p["size"] for p in points))
    for size in sizes:
        mine = sorted((p["x"], p["y"]) for p in points if p["size"] == size)
        ax.plot(*zip(*mine, strict=True), marker="o", ms=5, lw=1, label=size)
    if frontier:
        front = sorted((points[i]["x"], points[i]["y"]) for i in frontier)
        ax.plot(
            *zip(*front, strict=True), color="black", lw=1.5, ls=":", marker="o", ms=9,
            mfc="none", label="compute frontier",
        )  # fmt: skip
    xs = np.array([p["x"] for p in points], dtype=float)
    if fit is not None and len(xs):
        grid = np.geomspace(xs.min() / 1.5, xs.max() * 1.5, 200)
        ax.plot(grid, fit.predict(grid), color="crimson", lw=1.5, ls="--", label=_fit_label(fit))
        fx = [points[i]["x"] for i in fitted]
        res.axhline(0.0, color="gray", lw=1)
        res.plot(fx, fit.residuals, marker="o", ls="none", color="crimson")
        res.set_xscale("log")
        res.set_title(f"residuals (observed - fit), rmse {fit.rmse:.4f}")
    else:
        res.text(0.5, 0.5, "no fit (fewer than 3 compute values)", ha="center", va="center")
        res.set_axis_off()
    ax.set_xscale("log")
    ax.set_xlabel(LABELS.get(x, x))
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    res.set_xlabel("compute (FLOPs)" if x.startswith("flops") else LABELS.get(x, x))
    res.grid(alpha=0.3)
    return _save(fig, out)


def mixing_plot(
    rows: Sequence[dict[str, Any]],
    mixtures: Sequence[str],
    baseline: str,
    out: str | os.PathLike[str],
    *,
    metric: str,
    x: str = "params_non_embedding",
) -> Path:
    """Left: ``metric`` against model size, one line per mixture; right: each mixture's
    difference from ``baseline`` (mean over seeds, error bars one standard deviation).

    ``rows`` hold ``x``, ``means`` ({mixture: value}) and ``diffs`` ({mixture: (mean, std,
    n)})."""
    plt = _pyplot()
    fig, (ax, dx) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    rows = sorted(rows, key=lambda r: r["x"])
    for mixture in mixtures:
        pts = [(r["x"], r["means"][mixture]) for r in rows if mixture in r["means"]]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", lw=1.2, label=mixture)
    for mixture in mixtures:
        if mixture == baseline:
            continue
        pts = [(r["x"], *r["diffs"][mixture][:2]) for r in rows if mixture in r["diffs"]]
        if pts:
            xs, means, stds = zip(*pts, strict=True)
            errors = [0.0 if math.isnan(s) else s for s in stds]
            dx.errorbar(xs, means, yerr=errors, marker="o", capsize=3, label=mixture)
    dx.axhline(0.0, color="gray", lw=1)
    for axis in (ax, dx):
        axis.set_xscale("log")
        axis.set_xlabel(LABELS.get(x, x))
        axis.grid(alpha=0.3, which="both")
    ax.set_ylabel(metric)
    ax.legend(fontsize=8)
    dx.set_ylabel(f"{metric}: mixture - {baseline}")
    dx.set_title("the cost of mixing against model size")
    if dx.get_legend_handles_labels()[0]:
        dx.legend(fontsize=8)
    return _save(fig, out)
