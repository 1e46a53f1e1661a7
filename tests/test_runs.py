"""Training plumbing both trainers share: ``step-N`` folders, pruning, a killed save's
leftovers, log truncation on resume (:mod:`liquidgen.utils.runs`), the LR schedule
(:mod:`liquidgen.utils.schedule`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from liquidgen.utils.runs import (
    prune_step_folders,
    remove_temporaries,
    step_folders,
    truncate_jsonl,
)
from liquidgen.utils.schedule import scheduled_lr


def test_step_folders_are_listed_oldest_first_and_pruned_to_the_newest(tmp_path: Path) -> None:
    for name in ("step-00000010", "step-00000002", "step-0000100", "step-x", "other"):
        (tmp_path / name).mkdir()
    (tmp_path / "step-00000003").write_text("a file, not a folder")
    (tmp_path / "step-00000100" / "sub").mkdir(parents=True)
    (tmp_path / "step-00000100" / "sub" / "done").write_text("")
    assert [s for s, _ in step_folders(tmp_path)] == [2, 10, 100, 100]
    assert [p.name for _, p in step_folders(tmp_path, min_digits=8)] == [
        "step-00000002",
        "step-00000010",
        "step-00000100",
    ]
    assert [s for s, _ in step_folders(tmp_path, required=["sub/done"])] == [100]
    assert step_folders(tmp_path / "missing") == []
    deleted = prune_step_folders(step_folders(tmp_path, min_digits=8), keep_last=2)
    assert [p.name for p in deleted] == ["step-00000002"] and not deleted[0].exists()
    assert prune_step_folders(step_folders(tmp_path, min_digits=8), keep_last=5) == []


def test_temporaries_matching_the_pattern_are_removed(tmp_path: Path) -> None:
    (tmp_path / ".step-00000004.123-abcdefgh.tmp").mkdir()
    (tmp_path / ".step-00000004.old").mkdir()
    (tmp_path / "step-00000004").mkdir()
    removed = remove_temporaries(tmp_path, re.compile(r"^\.step-.*\.tmp$"))
    assert [p.name for p in removed] == [".step-00000004.123-abcdefgh.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".step-00000004.old", "step-00000004"]


def test_truncate_jsonl_keeps_earlier_lines_unchanged(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    lines = ['{"step": 1, "loss": 2.50}', '{"kind": "note"}', "[1, 2]", '{"step": 3}', '{"step": 2']
    log.write_text("\n".join(lines) + "\n")
    truncate_jsonl(log, 2)
    assert log.read_text() == '{"step": 1, "loss": 2.50}\n{"kind": "note"}\n'
    truncate_jsonl(tmp_path / "missing.jsonl", 2)
    assert not (tmp_path / "missing.jsonl").exists()


def test_schedule_warmup_then_constant_cosine_or_wsd() -> None:
    common = {"warmup_steps": 10, "total_steps": 100, "min_lr_ratio": 0.1}
    assert scheduled_lr(0, peak=2.0, schedule="cosine", **common) == pytest.approx(0.2)
    assert scheduled_lr(9, peak=2.0, schedule="constant", **common) == 2.0
    assert scheduled_lr(99, peak=2.0, schedule="constant", **common) == 2.0
    assert scheduled_lr(55, schedule="cosine", **common) == pytest.approx(0.55)
    assert scheduled_lr(100, peak=2.0, schedule="cosine", **common) == pytest.approx(0.2)
    assert scheduled_lr(79, schedule="wsd", decay_fraction=0.2, **common) == 1.0
    assert scheduled_lr(99, schedule="wsd", decay_fraction=0.2, **common) == pytest.approx(0.1)
