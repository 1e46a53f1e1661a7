"""Run folders, as both trainers keep them: ``step-N`` checkpoint folders, pruned to the
newest few, and a JSONL log cut back to the step a run resumes from.

The language-model trainer (:mod:`liquidgen.training.checkpoint`) and the tokenizer trainer
(:mod:`liquidgen.tokenizer.training.checkpoint`) write different files into their
checkpoint folders and check them differently; what they share is how the folders are
named, listed and pruned, how a killed save's leftovers are removed, and how the metrics
log is made to read as one uninterrupted run after a resume.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from liquidgen.utils.io import atomic_path


def step_folders(
    root: str | os.PathLike[str], *, min_digits: int = 1, required: Sequence[str] = ()
) -> list[tuple[int, Path]]:
    """``(step, folder)`` of every ``step-N`` folder directly under ``root``, oldest first.

    ``N`` must have at least ``min_digits`` digits; with ``required`` (paths relative to the
    folder), only folders holding every one of those files count.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    pattern = re.compile(rf"^step-(\d{{{min_digits},}})$")
    found = []
    for path in root.iterdir():
        match = pattern.match(path.name)
        if match and path.is_dir() and all((path / f).is_file() for f in required):
            found.append((int(match.group(1)), path))
    return sorted(found)


def prune_step_folders(folders: Sequence[tuple[int, Path]], keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` of ``folders`` (oldest first, as
    :func:`step_folders` lists them); returns the deleted folders."""
    doomed = [path for _, path in folders[: max(len(folders) - keep_last, 0)]]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def remove_temporaries(root: str | os.PathLike[str], pattern: re.Pattern[str]) -> list[Path]:
    """Delete the folders directly under ``root`` whose names match ``pattern`` (the
    half-written checkpoints a killed save left behind); returns them."""
    root = Path(root)
    if not root.is_dir():
        return []
    stale = [p for p in root.iterdir() if pattern.match(p.name) and p.is_dir()]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def truncate_jsonl(path: str | os.PathLike[str], step: int) -> None:
    """Rewrite a JSONL log keeping only the records with ``step <= step`` (a record without
    a step counts as step 0), so that after resuming from ``step`` the log reads as one
    uninterrupted run. Lines cut short by a kill, or not holding a JSON object, are dropped;
    kept lines are copied unchanged."""
    path = Path(path)
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except (json.JSONDecodeError, AttributeError):
            continue
    with atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in kept))
