"""Training metrics: an append-only JSONL log and the loss-curve PNG drawn from it.

Each line of ``metrics.jsonl`` is one JSON object with a ``kind``:

- ``"train"``: ``step``, ``loss`` (mean cross-entropy per target token over the steps since
  the previous record), ``z_loss``, ``lr``, ``grad_norm``, ``tokens``, ``targets``,
  ``tokens_per_s``, ``elapsed_s``;
- ``"val"``: ``step`` and, per modality, ``<modality>/loss``, ``<modality>/acc`` (next-token
  accuracy) and ``<modality>/tokens``.

On resume, records after the checkpoint's step are dropped (:func:`truncate_after`) so the
log reads as one uninterrupted run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from liquidgen.errors import ConfigError
from liquidgen.utils.io import atomic_path
from liquidgen.utils.runs import truncate_jsonl

METRICS_FILE = "metrics.jsonl"
CURVE_FILE = "loss_curve.png"


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All records of a metrics file (a torn last line from a crash is ignored)."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def truncate_after(path: str | os.PathLike[str], step: int) -> None:
    """Rewrite the metrics file keeping only records with ``step <= step`` (the shared
    :func:`liquidgen.utils.runs.truncate_jsonl`)."""
    truncate_jsonl(path, step)


class MetricsLog:
    """Appends one JSON line per record and flushes, so a crash loses at most the current step."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a")

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def plot_loss_curve(metrics_path: str | os.PathLike[str], out_path: str | os.PathLike[str]) -> Path:
    """Draw training loss and per-modality validation loss against the step (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    train = [r for r in records if r.get("kind") == "train"]
    val = [r for r in records if r.get("kind") == "val"]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train", lw=1.2)
    modalities = sorted({key.split("/")[0] for r in val for key in r if key.endswith("/loss")})
    for modality in modalities:
        points = [(r["step"], r[f"{modality}/loss"]) for r in val if f"{modality}/loss" in r]
        ax.plot(*zip(*points, strict=True), marker="o", ms=4, lw=1, label=f"val {modality}")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy per target token")
    ax.grid(alpha=0.3)
    if train or val:
        ax.legend()
    return _save_figure(fig, out_path)


def _save_figure(fig: Any, out_path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` as a PNG atomically (nothing half-written on failure) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return out_path


X_AXES = ("step", "tokens", "flops")


def run_parameters(run_dir: str | os.PathLike[str]) -> int:
    """Parameters of a training run's newest checkpoint, read from the safetensors header
    (no weights loaded); tied embeddings count once, as stored."""
    from safetensors import safe_open

    checkpoints = sorted((Path(run_dir) / "checkpoints").glob("step-*/model.safetensors"))
    if not checkpoints:
        raise ConfigError(f"{run_dir}: no checkpoints/step-*/model.safetensors to count")
    total = 0
    with safe_open(str(checkpoints[-1]), framework="pt") as f:
        names = f.keys()  # safe_open is not iterable
        for name in names:
            numel = 1
            for dim in f.get_slice(name).get_shape():
                numel *= dim
            total += numel
    return total


def compare_runs(
    runs: list[tuple[str, str | os.PathLike[str]]],
    metrics: list[str],
    out_path: str | os.PathLike[str],
    *,
    x: str = "step",
) -> Path:
    """Plot validation ``metrics`` (e.g. ``text/loss``) of several training runs on one figure,
    one panel per metric, against the step, the tokens trained on (packed, from the train
    records) or the training compute ``6 * parameters * tokens``.

    ``runs`` are ``(label, run_dir)`` with ``run_dir/metrics.jsonl`` (a trainer's ``out_dir``).
    Runs without a metric are left out of that panel; a metric no run has is an error.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    if x not in X_AXES:
        raise ConfigError(f"x axis must be one of {', '.join(X_AXES)}, got {x!r}")
    if not runs or not metrics:
        raise ConfigError("need at least one run and one metric")
    series: dict[str, list[tuple[str, list[float], list[float]]]] = {m: [] for m in metrics}
    for label, run_dir in runs:
        records = read_metrics(Path(run_dir) / METRICS_FILE)
        if not records:
            raise ConfigError(f"{run_dir}: no {METRICS_FILE} records")
        # tokens seen by the end of each step: cumulative over the train records
        seen, cumulative = 0, {0: 0}
        for r in records:
            if r.get("kind") == "train":
                seen += r["tokens"]
                cumulative[r["step"]] = seen
        scale = 6.0 * run_parameters(run_dir) if x == "flops" else 1.0
        for metric in metrics:
            points = [
                (r["step"], r[metric]) for r in records if r.get("kind") == "val" and metric in r
            ]
            points = [(s, v) for s, v in points if x == "step" or s in cumulative]
            if points:
                xs = [s if x == "step" else scale * cumulative[s] for s, _ in points]
                series[metric].append((label, xs, [v for _, v in points]))
    missing = [m for m, s in series.items() if not s]
    if missing:
        raise ConfigError(f"no run has validation metric(s) {', '.join(missing)}")
    # many runs (an experiment grid): a colour each (tab10 repeats after ten) and the legend
    # beside the axes instead of over the curves
    many = len(runs) > 6
    colours = plt.get_cmap("tab20" if len(runs) > 10 else "tab10").colors
    width = 5 * len(metrics) + (2.5 if many else 0.0)
    fig, axes = plt.subplots(1, len(metrics), figsize=(width, 3.8), dpi=100)
    axes = [axes] if len(metrics) == 1 else list(axes)
    for ax, metric in zip(axes, metrics, strict=True):
        values = []
        for i, (label, xs, ys) in enumerate(series[metric]):
            ax.plot(xs, ys, marker="o", ms=4, lw=1.2, label=label, color=colours[i % len(colours)])
            values += ys
        if min(values) > 0 and max(values) > 10 * min(values):
            ax.set_yscale("log")  # losses from initialisation to the end span decades
            ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
            ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.set_title(f"validation {metric}")
        ax.set_xlabel(
            {"step": "step", "tokens": "tokens trained on", "flops": "training FLOPs (6ND)"}[x]
        )
        ax.grid(alpha=0.3, which="both")
        if many:
            ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
        else:
            ax.legend()
    return _save_figure(fig, out_path)
