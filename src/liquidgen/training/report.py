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

from liquidgen.utils.io import atomic_path

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
    """Rewrite the metrics file keeping only records with ``step <= step``."""
    path = Path(path)
    if not path.is_file():
        return
    kept = [r for r in read_metrics(path) if r.get("step", 0) <= step]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))


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
    fig.tight_layout()
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return out_path
