"""Atomic outputs: nothing half-written, usual permissions; inter-process file locks."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from liquidgen.utils.io import atomic_dir, atomic_path, file_lock


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_path_and_dir_use_umask_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "a.txt") as tmp:
            tmp.write_text("x")
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "f").write_text("y")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.txt") == 0o644
    assert _mode(tmp_path / "d") == 0o755


def test_failure_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "old").write_text("keep")
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "a.png") as tmp:
        tmp.write_text("partial")
        raise RuntimeError
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "d") as tmp:
        (tmp / "new").write_text("partial")
        raise RuntimeError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["old"]


@pytest.mark.skipif(os.name != "posix", reason="flock locks are POSIX")
def test_file_lock_excludes_another_holder_and_dies_with_its_process(tmp_path: Path) -> None:
    lock = tmp_path / "sub" / ".lock"
    with file_lock(lock, wait=False) as held:
        assert held and lock.is_file()
        with file_lock(lock, wait=False) as second:  # another open file: excluded
            assert not second
    with file_lock(lock, wait=False) as again:  # released at the end of the block
        assert again
    # a process that holds the lock and is killed leaves it free (no stale lock)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a'); "
         "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)", str(lock)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with file_lock(lock, wait=False) as held:
            assert not held
    finally:
        holder.kill()
        holder.wait()
    with file_lock(lock, wait=False) as held:
        assert held
