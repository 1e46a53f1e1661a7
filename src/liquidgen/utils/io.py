"""Safe output: atomic files and folders, and the rules for what a command may replace.

- :func:`atomic_path` / :func:`atomic_dir` write to a temporary sibling, then rename it into
  place, so a failure (or a kill) leaves either the old output or the new one, never half.
  Temporary siblings are named ``.NAME.<pid>-<random>[.SUFFIX].tmp``; the next run that writes
  the same output removes the ones whose process is gone (a killed run's leftovers).
  Files written inside an atomic folder get the usual permissions (``0666 & ~umask``), even
  when a writer creates them private (safetensors writes 0600).
- :func:`prepare_output_dir` is the one rule for replacing a folder: a command replaces
  only an empty folder, its own earlier output (recognised by the marker files it writes),
  or anything the user allowed with ``--overwrite``; and it checks that the location is
  writable before any work starts.
- :func:`check_output_file` does the same for a single output file (``-o out.png``).
- :func:`file_lock` is an advisory lock between processes (``flock``), released by the
  kernel when its holder exits or is killed, so no stale lock outlives a crash.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from liquidgen.errors import OutputError

TMP_SUFFIX = ".tmp"
LEGACY_STALE_SECONDS = 24 * 3600  # temporaries without a pid (older versions): stale after a day
OVERWRITE_HINT = "pass --overwrite to replace it, or choose another path"


def _umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process (or not a pid): leave its files alone
    return True


def clean_stale_temporaries(
    path: str | os.PathLike[str], *, folder: bool = False, numbered: bool = False
) -> list[Path]:
    """Remove temporary siblings of ``path`` left by killed runs; returns what was removed.

    Only names of our own pattern (``.KEY.<pid>-<random>...tmp``, KEY the folder's name or
    the file's stem) whose process no longer runs are removed, plus pid-less ones
    (``.KEY.<random>...tmp``, written by older versions) more than a day old. A live run's
    temporaries are never touched. ``numbered``: those of the numbered siblings instead
    (KEY ``STEM_0``, ``STEM_1``, ...: ``generate -n``'s ``out_0.png``...), found in one
    listing of the folder.
    """
    path = Path(path)
    key = path.name if folder else path.stem
    removed: list[Path] = []
    try:
        glob_key = glob_escape(key) + ("_*" if numbered else "")
        candidates = list(path.parent.glob(f".{glob_key}.*{TMP_SUFFIX}"))
    except OSError:
        return removed
    key_pattern = re.escape(key) + (r"_\d+" if numbered else "")
    pattern = re.compile(rf"^\.{key_pattern}\.(?:(\d+)-)?[a-z0-9_]{{8}}.*\.tmp$")
    now = time.time()
    for candidate in candidates:
        match = pattern.match(candidate.name)
        if match is None:
            continue
        try:
            if match.group(1) is not None:
                if _pid_alive(int(match.group(1))):
                    continue
            elif now - candidate.lstat().st_mtime < LEGACY_STALE_SECONDS:
                continue
            if candidate.is_dir() and not candidate.is_symlink():
                shutil.rmtree(candidate)
            else:
                candidate.unlink()
            removed.append(candidate)
        except OSError:
            continue  # not ours to fight over: leave it
    return removed


def glob_escape(text: str) -> str:
    """``text`` with glob metacharacters escaped."""
    return re.sub(r"([*?\[])", r"[\1]", text)


def _normalise_permissions(root: Path) -> None:
    """Give every file and folder under ``root`` the usual umask permissions."""
    mask = _umask()
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(Path(folder) / name, 0o777 & ~mask)
        for name in files:
            file = Path(folder) / name
            if not file.is_symlink():
                executable = os.stat(file).st_mode & 0o100
                os.chmod(file, (0o777 if executable else 0o666) & ~mask)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, clean: bool = True) -> Iterator[Path]:
    """Yield a temporary file path next to ``path``; rename it onto ``path`` on success.

    The temporary file keeps the target's suffix so that writers that dispatch on the
    extension (PIL) still work. On any exception the temporary file is removed. ``clean``:
    first remove stale temporaries of ``path`` (:func:`clean_stale_temporaries`; a caller
    writing many files cleans them once, before it starts).
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path} is a folder; give a file name")
    if clean:
        clean_stale_temporaries(path)
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.stem}.{os.getpid()}-",
            suffix=f"{path.suffix}{TMP_SUFFIX}",
            dir=path.parent,
        )
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp (and some writers) make 0600
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary directory next to ``path``; on success it replaces ``path``.

    The old entry (a folder, or a file when the caller allowed that, see
    :func:`prepare_output_dir`) is moved aside and deleted only after the new one is in place,
    so a crash at any point leaves either the old or the new folder.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create {path.parent}: {e.strerror or e}") from None
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise OutputError(f"{path} already exists")
    clean_stale_temporaries(path, folder=True)
    old = path.parent / f".{path.name}.old"
    if old.exists() and path.exists():  # a previous run was killed after its swap: finish it
        _remove(old)
    try:
        tmp = Path(
            tempfile.mkdtemp(
                prefix=f".{path.name}.{os.getpid()}-", suffix=TMP_SUFFIX, dir=path.parent
            )
        )
    except OSError as e:
        raise OutputError(f"cannot write in {path.parent}: {e.strerror or e}") from None
    try:
        yield tmp
        _normalise_permissions(tmp)
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    moved = False
    if path.exists() or path.is_symlink():
        _remove(old)
        os.replace(path, old)
        moved = True
    os.replace(tmp, path)
    if moved:
        _remove(old)


def _probe_writable(folder: Path) -> None:
    """Raise :class:`OutputError` unless a file can be created in ``folder`` (tried for real:
    permission bits say nothing about read-only mounts, and root ignores them)."""
    try:
        fd, probe = tempfile.mkstemp(
            prefix=f".liquidgen.{os.getpid()}-", suffix=TMP_SUFFIX, dir=folder
        )
    except OSError as e:
        raise OutputError(f"cannot write in {folder}: {e.strerror or e}") from None
    os.close(fd)
    os.unlink(probe)


def _nearest_existing(folder: Path) -> Path:
    folder = folder.absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _check_parent(path: Path) -> None:
    """The folder that will hold ``path`` exists (or can be made) and is writable."""
    parent = path.absolute().parent
    base = _nearest_existing(parent)
    if not base.is_dir():
        raise OutputError(f"cannot write {path}: {base} is not a folder")
    _probe_writable(base)


def is_own_output(
    path: str | os.PathLike[str], markers: Sequence[str], *, exact: bool = False
) -> bool:
    """Whether the folder ``path`` holds every one of ``markers`` (files a command writes);
    with ``exact``, nothing else either."""
    path = Path(path)
    if not markers or not all((path / m).exists() for m in markers):
        return False
    return not exact or {p.name for p in path.iterdir()} <= set(markers)


def prepare_output_dir(
    path: str | os.PathLike[str],
    markers: Sequence[str],
    *,
    overwrite: bool = False,
    what: str = "output folder",
    exact: bool = False,
) -> Path:
    """Check, before any work, that the folder ``path`` may be (re)written; returns it.

    Allowed: ``path`` does not exist, is an empty folder, or is a folder holding all of
    ``markers`` (this command's earlier output; with ``exact``, nothing but them). Anything else (a folder of other files,
    a regular file) only with ``overwrite``. The folder that will hold ``path`` must be
    writable. Raises :class:`OutputError` (one line) otherwise. Stale temporaries of killed
    runs are removed. The caller then writes with :func:`atomic_dir`.
    """
    path = Path(path)
    if path.exists() or path.is_symlink():
        if not path.is_dir() or path.is_symlink():
            if not overwrite:
                raise OutputError(f"{path} exists and is not a folder; {OVERWRITE_HINT}")
        elif (
            any(path.iterdir()) and not is_own_output(path, markers, exact=exact) and not overwrite
        ):
            if not markers:
                raise OutputError(f"{path} is a folder that is not empty; {OVERWRITE_HINT}")
            only = " only" if exact else ""
            raise OutputError(
                f"{path} is a folder of other files (not an earlier {what} with{only} "
                f"{', '.join(markers)}); {OVERWRITE_HINT}"
            )
    _check_parent(path)
    clean_stale_temporaries(path, folder=True)
    return path


def check_output_file(path: str | os.PathLike[str]) -> Path:
    """Check, before any work, that the file ``path`` can be written (replacing a file is
    allowed: it was named as the output); raises :class:`OutputError`."""
    path = Path(path)
    if path.is_dir() or str(path).endswith(os.sep) or path.name in ("", ".", ".."):
        raise OutputError(f"{path} is a folder; give a file name")
    parent = path.absolute().parent
    if not parent.is_dir():
        raise OutputError(f"output folder {path.parent} does not exist")
    _probe_writable(parent)
    return path


def check_writable_dir(path: str | os.PathLike[str]) -> Path:
    """Check, before any work, that files can be written in the folder ``path`` (created
    later if missing; it must not be a file); raises :class:`OutputError`."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path} exists and is not a folder")
    if path.is_dir():
        _probe_writable(path)
    else:
        _check_parent(path)
    return path


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str], *, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the ``with`` block.

    Yields True when the lock is held; with ``wait=False`` yields False at once if another
    process (or another open of the same file) holds it. The lock file is left in place:
    removing it would let a third process lock a new file while the second holds the old
    one. POSIX only (``fcntl``); elsewhere the lock is always granted.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no inter-process exclusion
        yield True
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        flags = fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB)
        try:
            fcntl.flock(f.fileno(), flags)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
