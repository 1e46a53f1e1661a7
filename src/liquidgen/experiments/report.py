"""``liquidgen experiment CONFIG --report``: the analyses an experiment's ``report:`` asks for.

Each works on the rows of ``results.json`` (and, for ``curves``, on the runs'
``metrics.jsonl``) and writes into the experiment's ``report_dir`` (default
``out_dir/report``); ``report.md`` gathers every table::

    report:
      scaling: {metric: val/t2i/loss, x: flops, points: frontier}   # or points: all
      mixing: {metric: eval/text_bpb, baseline: text-only, x: params_non_embedding}
      table: {rows: mixture, columns: [eval/t2i_seen, eval/vqa_world]}
      curves: {metric: t2i/loss, x: step, reach: {by: size, baseline: random, candidate: pretrained}}

- ``scaling`` — ``L(C) = a * C^-b + c`` fitted to the compute frontier (or to every run)
  and to each size's runs, with standard errors and residuals: ``scaling.json``,
  ``scaling.png``;
- ``mixing`` — per size, each mixture's metric and its difference from ``baseline`` (paired
  by seed and budget), against model size: ``mixing.json``, ``mixing.png``;
- ``table`` — mean ± standard deviation over the grouped runs (seeds): Markdown in
  ``report.md`` and ``table.json``;
- ``curves`` — the runs' validation ``metric`` against ``x`` (``liquidgen curves``):
  ``curves.png``; with ``reach``, the steps a ``candidate`` run needs to reach the final
  value of its ``baseline`` twin (same run but for the ``by`` key) and the steps saved.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from liquidgen.errors import ConfigError
from liquidgen.experiments import plots
from liquidgen.experiments.fit import (
    PowerLawFit,
    _json_float,
    fit_power_law,
    frontier,
    mean_std,
    steps_to_reach,
)
from liquidgen.experiments.grid import Experiment
from liquidgen.utils.io import atomic_path

Section = tuple[list[str], list[Path]]  # Markdown lines, files written


def _number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3g}"
        if value.is_integer() and abs(value) >= 10:  # counts averaged over runs
            return f"{value:.0f}"
        if abs(value) >= 100:  # seconds, token counts: the 4th decimal is noise
            return f"{value:.1f}"
        return f"{value:.{digits}f}"
    return str(value)


def _pm(mean: float, std: float, n: int) -> str:
    if n == 0:
        return "-"
    if math.isnan(std):
        return f"{_fmt(mean)} (n={n})"
    return f"{_fmt(mean)} ± {_fmt(std)} (n={n})"


def _write_json(path: Path, data: Any) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_json_float(data), indent=2) + "\n")
    return path


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table and the blank line after it."""
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
    ]


def _spec_keys(name: str, spec: dict[str, Any], known: set[str]) -> None:
    if not isinstance(spec, dict):
        raise ConfigError(f"report.{name} must be a mapping")
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ConfigError(f"report.{name}: unknown key(s) {unknown} (known: {sorted(known)})")


# --------------------------------------------------------------------------- analyses
def scaling(records: list[dict[str, Any]], spec: dict[str, Any], out: Path) -> Section:
    """The power law in compute, its frontier, per-size fits."""
    _spec_keys("scaling", spec, {"metric", "x", "points"})
    metric, x = spec.get("metric", "val/t2i/loss"), spec.get("x", "flops")
    mode = spec.get("points", "frontier")
    if mode not in ("frontier", "all"):
        raise ConfigError(f"report.scaling.points must be frontier or all, got {mode!r}")
    points = [
        {"run": r["run"], "size": r["size"], "x": float(r[x]), "y": float(r[metric])}
        for r in records
        if _number(r.get(x)) and _number(r.get(metric)) and r[x] > 0
    ]
    lines = [f"## Scaling: {metric} against {x}", ""]
    if not points:
        return [*lines, f"No finished run has both {x} and {metric}.", ""], []
    front = frontier([p["x"] for p in points], [p["y"] for p in points])
    fitted = front if mode == "frontier" else list(range(len(points)))
    fit: PowerLawFit | None
    try:
        fit = fit_power_law([points[i]["x"] for i in fitted], [points[i]["y"] for i in fitted])
        problem = None
    except ConfigError as e:
        fit, problem = None, str(e)
    per_size: dict[str, Any] = {}
    for size in dict.fromkeys(p["size"] for p in points):
        mine = [p for p in points if p["size"] == size]
        try:
            per_size[size] = fit_power_law([p["x"] for p in mine], [p["y"] for p in mine]).to_dict()
        except ConfigError as e:
            per_size[size] = {"error": str(e)}
    data = {
        "metric": metric,
        "x": x,
        "points": mode,
        "fit": fit.to_dict() if fit else {"error": problem},
        "fit_runs": [points[i]["run"] for i in fitted],
        "frontier": [points[i]["run"] for i in front],
        "per_size": per_size,
        "runs": points,
    }
    files = [_write_json(out / "scaling.json", data)]
    files.append(
        plots.scaling_plot(points, front, fit, fitted, out / "scaling.png", metric=metric, x=x)
    )
    if fit is None:
        lines += [f"No fit: {problem}.", ""]
    else:
        lines += [
            f"L(C) = a·C^-b + c fitted to {fit.points} points ({mode}): "
            f"**b = {fit.b:.4f} ± {_fmt(fit.b_se)}** (standard error), "
            f"a = {fit.a:.4g} ± {_fmt(fit.a_se)}, c = {fit.c:.4f} ± {_fmt(fit.c_se)}, "
            f"rmse {fit.rmse:.4f}.",
            "",
        ]
        rows = [
            [points[i]["run"], f"{points[i]['x']:.3g}", f"{points[i]['y']:.4f}",
             f"{float(fit.predict(points[i]['x'])):.4f}", f"{res:+.4f}"]
            for i, res in zip(fitted, fit.residuals, strict=True)
        ]  # fmt: skip
        lines += _table(["run", x, metric, "fit", "residual"], rows)
    size_rows = [
        [size, _fmt(f.get("b")), _fmt(f.get("b_se")), _fmt(f.get("c")), f.get("error", "")]
        for size, f in per_size.items()
    ]
    lines += ["Per size (its budgets):", ""]
    lines += _table(["size", "b", "b s.e.", "c", "note"], size_rows)
    lines += ["![scaling](scaling.png)", ""]
    return lines, files


def mixing(records: list[dict[str, Any]], spec: dict[str, Any], out: Path) -> Section:
    """Each mixture's ``metric`` against its ``baseline`` twin, per size."""
    _spec_keys("mixing", spec, {"metric", "baseline", "x"})
    if "baseline" not in spec:
        raise ConfigError("report.mixing needs `baseline` (a mixture name)")
    metric, baseline = spec.get("metric", "eval/text_bpb"), spec["baseline"]
    x = spec.get("x", "params_non_embedding")
    lines = [f"## Mixing: {metric}, each mixture against {baseline}", ""]
    usable = [r for r in records if _number(r.get(metric))]
    mixtures = list(dict.fromkeys(r["mixture"] for r in usable))
    rows = []
    for size in dict.fromkeys(r["size"] for r in usable):
        mine = [r for r in usable if r["size"] == size]
        base = {(r["seed"], r["budget"]): r[metric] for r in mine if r["mixture"] == baseline}
        row: dict[str, Any] = {
            "size": size,
            "x": max(float(r.get(x) or 0) for r in mine),
            "means": {},
            "diffs": {},
        }
        for mixture in mixtures:
            values = [r[metric] for r in mine if r["mixture"] == mixture]
            if values:
                row["means"][mixture] = mean_std(values)[0]
            pairs = [
                r[metric] - base[(r["seed"], r["budget"])]
                for r in mine
                if r["mixture"] == mixture and (r["seed"], r["budget"]) in base
            ]
            if pairs and mixture != baseline:
                row["diffs"][mixture] = mean_std(pairs)  # mean, s.d., number of pairs
        rows.append(row)
    if not rows:
        return [*lines, f"No finished run has {metric}.", ""], []
    files = [
        _write_json(
            out / "mixing.json", {"metric": metric, "baseline": baseline, "x": x, "sizes": rows}
        ),
        plots.mixing_plot(rows, mixtures, baseline, out / "mixing.png", metric=metric, x=x),
    ]
    others = [m for m in mixtures if m != baseline]
    header = ["size", x, *mixtures, *(f"{m} - {baseline}" for m in others)]
    table = [
        [r["size"], f"{r['x']:.3g}", *(_fmt(r["means"].get(m)) for m in mixtures)]
        + [_pm(*r["diffs"][m]) if m in r["diffs"] else "-" for m in others]
        for r in sorted(rows, key=lambda r: r["x"])
    ]
    lines += [*_table(header, table), "![mixing](mixing.png)", ""]
    return lines, files


def table(records: list[dict[str, Any]], spec: dict[str, Any], out: Path) -> Section:
    """Mean ± standard deviation of ``columns`` over the runs of each ``rows`` group."""
    _spec_keys("table", spec, {"rows", "columns"})
    keys = spec.get("rows", "mixture")
    keys = [keys] if isinstance(keys, str) else list(keys)
    columns = spec.get("columns") or ["val/t2i/loss"]
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault(tuple(r.get(k) for k in keys), []).append(r)
    data, body = [], []
    for group, runs in groups.items():
        cells = {c: mean_std([r[c] for r in runs if _number(r.get(c))]) for c in columns}
        data.append({"group": dict(zip(keys, group, strict=True)), "cells": cells})
        body.append([*(str(g) for g in group), *(_pm(*cells[c]) for c in columns)])
    header = ", ".join(keys)
    lines = [f"## Table: {', '.join(columns)} by {header} (mean ± s.d. over runs)", ""]
    lines += _table([*keys, *columns], body)
    return lines, [_write_json(out / "table.json", data)]


def curves(records: list[dict[str, Any]], spec: dict[str, Any], out: Path) -> Section:
    """Validation curves of every run; the steps a candidate saves to reach a baseline."""
    from liquidgen.training.report import compare_runs, read_metrics

    _spec_keys("curves", spec, {"metric", "x", "reach"})
    metric, x = spec.get("metric", "t2i/loss"), spec.get("x", "step")
    lines = [f"## Curves: validation {metric} against {x}", ""]
    runs = [r for r in records if r.get("run_dir")]
    if not runs:
        return [*lines, "No finished run.", ""], []

    def curve(r: dict[str, Any]) -> list[tuple[float, float]]:
        metrics = read_metrics(Path(r["run_dir"]) / "train" / "metrics.jsonl")
        return [(m["step"], m[metric]) for m in metrics if m.get("kind") == "val" and metric in m]

    try:
        png = compare_runs(
            [(r["run"], Path(r["run_dir"]) / "train") for r in runs],
            [metric],
            out / "curves.png",
            x=x,
        )
    except ConfigError as e:
        return [*lines, f"No curves: {e}.", ""], []
    lines += ["![curves](curves.png)", ""]
    files = [png]
    reach = spec.get("reach")
    if reach:
        _spec_keys("curves.reach", reach, {"by", "baseline", "candidate"})
        by = reach.get("by", "size")
        twins = []
        for b in (r for r in runs if r.get(by) == reach["baseline"]):
            same = [k for k in ("size", "mixture", "seed", "budget") if k != by]
            for c in runs:
                if c.get(by) == reach["candidate"] and all(c.get(k) == b.get(k) for k in same):
                    base_curve = curve(b)
                    if not base_curve:
                        continue
                    target = base_curve[-1][1]
                    step = steps_to_reach(curve(c), target)
                    twins.append(
                        {
                            "baseline": b["run"],
                            "candidate": c["run"],
                            "target": target,
                            "baseline_steps": base_curve[-1][0],
                            "candidate_steps": step,
                            "steps_saved": None if step is None else base_curve[-1][0] - step,
                        }
                    )
        files.append(_write_json(out / "curves.json", {"metric": metric, "reach": twins}))
        lines += [
            f"Steps the {reach['candidate']} run needs to reach the final {metric} of its "
            f"{reach['baseline']} twin (linear interpolation between validations):",
            "",
        ]
        lines += _table(
            ["baseline", "candidate", f"target {metric}", "baseline steps", "candidate steps",
             "steps saved"],
            [[t["baseline"], t["candidate"], f"{t['target']:.4f}", str(t["baseline_steps"]),
              _fmt(t["candidate_steps"], 1), _fmt(t["steps_saved"], 1)] for t in twins],
        )  # fmt: skip
    return lines, files


ANALYSES: dict[str, Callable[[list[dict[str, Any]], dict[str, Any], Path], Section]] = {
    "scaling": scaling,
    "mixing": mixing,
    "table": table,
    "curves": curves,
}
SUMMARY_COLUMNS = (
    "run", "params_non_embedding", "steps", "tokens", "flops", "flops_total", "busy_seconds",
    "wall_seconds",
)  # fmt: skip


def write_report(experiment: Experiment, records: list[dict[str, Any]]) -> list[Path]:
    """Every analysis of ``experiment.report`` on ``records`` + ``report.md``; returns the
    files written (``report.md`` last)."""
    unknown = sorted(set(experiment.report) - set(ANALYSES))
    if unknown:
        raise ConfigError(f"report: unknown analysis {unknown} (known: {sorted(ANALYSES)})")
    out = experiment.reports
    out.mkdir(parents=True, exist_ok=True)
    config = experiment.path or "CONFIG.yaml"
    lines = [f"# Experiment {experiment.name}", ""]
    if experiment.description:
        lines += [experiment.description.strip(), ""]
    lines += [
        f"Regenerate: `liquidgen experiment {config}` (runs what is not done), then "
        f"`liquidgen experiment {config} --report`.",
        "",
        f"{len(records)} finished runs of {len(experiment.runs())}.",
        "",
    ]
    metrics = sorted({k for r in records for k in r if k.startswith(("val/", "eval/"))})
    shown = [m for m in metrics if m.endswith(("/loss", "_bpb", "_seen", "_world", "_easy_vqa"))]
    lines += _table(
        [*SUMMARY_COLUMNS, *shown],
        [[_fmt(r.get(c)) for c in (*SUMMARY_COLUMNS, *shown)] for r in records],
    )
    files: list[Path] = []
    for name, spec in experiment.report.items():
        section, written = ANALYSES[name](records, spec or {}, out)
        lines += section
        files += written
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text("\n".join(lines))
    return [*files, out / "report.md"]
