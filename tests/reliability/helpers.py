"""Helpers of the reliability suite: run the real CLI in a subprocess, snapshot folders."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

NOBODY = 65534  # uid/gid the read-only cases run as when the suite runs as root


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess: one thread, no colour, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIQUIDGEN_")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", NO_COLOR="1", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def run_cli(
    *args: str | os.PathLike[str],
    cwd: str | os.PathLike[str],
    env: dict[str, str] | None = None,
    address_space: int | None = None,
    as_nobody: bool = False,
    timeout: float = 120,
    stdin: bytes | None = None,
) -> Result:
    """``python -m liquidgen ARGS`` in ``cwd``; optionally under ``prlimit --as`` (bytes) or
    as the ``nobody`` user (so that a read-only folder is read-only even for root), with
    ``stdin`` as its standard input (default: none). A ``str`` argument holding surrogate
    escapes (``"\udcff"``) reaches the command as the raw byte (0xff), as from a shell."""
    command = [sys.executable, "-m", "liquidgen", *map(str, args)]
    if address_space is not None:
        command = ["prlimit", f"--as={address_space}", "--", *command]
    if as_nobody:
        command = [
            "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *command
        ]  # fmt: skip
    proc = subprocess.run(
        command,
        cwd=cwd,
        env=env or cli_env(HOME=str(cwd)),
        capture_output=True,
        timeout=timeout,
        **({"stdin": subprocess.DEVNULL} if stdin is None else {"input": stdin}),
    )
    out, err = (data.decode("utf-8", "replace") for data in (proc.stdout, proc.stderr))
    return Result(proc.returncode, out, err)


def assert_one_line_error(result: Result, *fragments: str) -> str:
    """Exit status 2, exactly one line on stderr, no traceback; the line holds ``fragments``."""
    lines = result.err.splitlines()
    assert result.code == 2, (result.code, result.err[-3000:])
    assert len(lines) == 1, result.err[-3000:]
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def snapshot(root: str | os.PathLike[str]) -> dict[str, tuple[str, int]]:
    """Every entry under ``root`` (hidden ones too): relative path -> (content hash, mode)."""
    root = Path(root)
    state: dict[str, tuple[str, int]] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            state[rel] = ("link:" + os.readlink(path), 0)
        elif path.is_dir():
            state[rel] = ("dir", path.stat().st_mode & 0o777)
        else:
            state[rel] = (
                hashlib.sha256(path.read_bytes()).hexdigest(),
                path.stat().st_mode & 0o777,
            )
    return state


def can_drop_privileges() -> bool:
    """Whether read-only cases can run: as non-root, or as root with ``setpriv``."""
    return os.geteuid() != 0 or shutil.which("setpriv") is not None
