"""--report's analyses on synthetic results (no training): fit, frontier, mixing, table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from liquidgen.errors import ConfigError
from liquidgen.experiments.grid import Experiment


def _records() -> list[dict]:
    """Three sizes x three budgets on a known law, two mixtures, two seeds."""
    rows = []
    for size, params in (("s", 1e5), ("m", 1e6), ("l", 1e7)):
        for budget in (100, 200, 400):
            for mixture in ("text-only", "mixed"):
                for seed in (0, 1):
                    flops = 6 * params * budget * 4096
                    rows.append(
                        {
                            "run": f"{size}_{mixture}_s{seed}_b{budget}",
                            "size": size,
                            "mixture": mixture,
                            "seed": seed,
                            "budget": budget,
                            "params_non_embedding": params,
                            "flops": flops,
                            "val/t2i/loss": 40.0 * flops**-0.1 + 1.0 + 0.001 * seed,
                            # the cost of mixing shrinks with size: 0.3, 0.2, 0.1 bits per byte
                            "eval/text_bpb": 2.0 + (mixture == "mixed") * {"s": 0.3, "m": 0.2, "l": 0.1}[size],
                        }
                    )  # fmt: skip
    return rows


def test_the_report_fits_plots_and_tabulates(tmp_path: Path) -> None:
    from liquidgen.experiments.report import write_report

    exp = Experiment(
        name="synthetic",
        data_from="unused.yaml",
        out_dir=str(tmp_path),
        sizes=["s", "m", "l"],
        budgets=[100, 200, 400],
        mixtures=["text-only", "mixed"],
        seeds=[0, 1],
        report={
            "scaling": {"metric": "val/t2i/loss", "points": "all"},
            "mixing": {"metric": "eval/text_bpb", "baseline": "text-only"},
            "table": {"rows": ["mixture"], "columns": ["eval/text_bpb"]},
        },
    )
    files = write_report(exp, _records())
    names = {f.name for f in files}
    assert {"scaling.png", "scaling.json", "mixing.png", "mixing.json", "table.json"} < names
    for png in ("scaling.png", "mixing.png"):
        assert (tmp_path / "report" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    scaling = json.loads((tmp_path / "report" / "scaling.json").read_text())
    assert scaling["fit"]["b"] == pytest.approx(0.1, abs=0.01)
    assert len(scaling["fit"]["residuals"]) == 36
    mixing = json.loads((tmp_path / "report" / "mixing.json").read_text())
    diffs = {row["size"]: row["diffs"]["mixed"][0] for row in mixing["sizes"]}
    assert diffs == pytest.approx({"s": 0.3, "m": 0.2, "l": 0.1})
    report = (tmp_path / "report" / "report.md").read_text()
    assert "**b = 0.1" in report and "| mixed |" in report and "![mixing](mixing.png)" in report


def test_unknown_analyses_and_a_mixing_without_baseline_are_refused(tmp_path: Path) -> None:
    from liquidgen.experiments.report import write_report

    base = {"name": "x", "data_from": "r.yaml", "out_dir": str(tmp_path), "sizes": ["s"], "budgets": [1]}  # fmt: skip
    with pytest.raises(ConfigError, match="unknown analysis"):
        write_report(Experiment(**base, report={"fits": {}}), _records())
    with pytest.raises(ConfigError, match="needs `baseline`"):
        write_report(Experiment(**base, report={"mixing": {}}), _records())
