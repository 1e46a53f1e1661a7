"""Training checkpoints: self-describing folders, written atomically, verified before resuming.

``OUT_DIR/checkpoints/step-0000100/`` holds::

    config.json, model.safetensors, generation_config.json   HF model (LoRA: merged weights)
    tokenizer.json, tokenizer_config.json, ...                HF tokenizer
    liquid_layout.json                                        VocabLayout
    vq/                                                       the VQGAN (when the model has one)
    train_config.yaml                                         the resolved TrainConfig
    trainer_state.json                                        step, data state, scheduler, RNG (python, numpy)
    optimizer.pt                                              full (unsharded) AdamW state
    rng.pt                                                    torch RNG state of every rank
    trainable.safetensors                                     LoRA only: the exact trainable tensors
    manifest.json                                             size + SHA-256 of every other file

The root is an ordinary liquidgen checkpoint (``load_liquid`` opens it for sampling).
The folder is assembled in a temporary sibling and renamed into place
(:func:`liquidgen.utils.io.atomic_dir`); ``manifest.json`` is written last. A checkpoint
is *valid* when its manifest exists and every listed file has the recorded size and
hash, which catches interrupted copies, truncation and bit rot. :func:`latest_valid`
walks checkpoints newest first and warns about (and skips) invalid ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

from liquidgen.checkpoint import TRAIN_CONFIG_FILE
from liquidgen.errors import CheckpointError
from liquidgen.utils.runs import prune_step_folders, remove_temporaries, step_folders

CHECKPOINT_DIR = "checkpoints"
MANIFEST_FILE = "manifest.json"
STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.pt"
RNG_FILE = "rng.pt"
TRAINABLE_FILE = "trainable.safetensors"
CONFIG_FILE = TRAIN_CONFIG_FILE  # named by liquidgen.checkpoint
FORMAT = "liquidgen-train-checkpoint/1"
_STEP_DIGITS = 7  # step-0000100: at least seven digits
_TEMP_RE = re.compile(r"^\.step-\d{7,}(\..+)?\.(tmp|old)$")  # atomic_dir's temporaries
_HASH_CHUNK = 1 << 20


def step_dir(out_dir: str | os.PathLike[str], step: int) -> Path:
    """Folder of the checkpoint taken after optimiser step ``step``."""
    return Path(out_dir) / CHECKPOINT_DIR / f"step-{step:07d}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(directory: Path, step: int) -> None:
    """Record size and SHA-256 of every file under ``directory`` (call last, before the rename)."""
    files = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        rel = path.relative_to(directory).as_posix()
        if rel != MANIFEST_FILE:
            files[rel] = {"bytes": path.stat().st_size, "sha256": _sha256(path)}
    manifest = {"format": FORMAT, "step": step, "files": files}
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n")


def verify(directory: str | os.PathLike[str]) -> int:
    """Check a checkpoint against its manifest; return its step.

    Raises :class:`CheckpointError` naming the folder and the first problem found.
    """
    directory = Path(directory)
    manifest_path = directory / MANIFEST_FILE
    if not manifest_path.is_file():
        raise CheckpointError(f"{directory}: no {MANIFEST_FILE} (incomplete checkpoint)")
    try:
        manifest = json.loads(manifest_path.read_text())
        files: dict[str, dict[str, Any]] = manifest["files"]
        step = int(manifest["step"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{manifest_path}: unreadable manifest ({e})") from None
    if manifest.get("format") != FORMAT:
        raise CheckpointError(f"{manifest_path}: unknown format {manifest.get('format')!r}")
    for rel, entry in files.items():
        path = directory / rel
        if not path.is_file():
            raise CheckpointError(f"{directory}: {rel} is missing")
        size = path.stat().st_size
        if size != entry["bytes"]:
            raise CheckpointError(
                f"{directory}: {rel} has {size} bytes, expected {entry['bytes']} (truncated?)"
            )
        if _sha256(path) != entry["sha256"]:
            raise CheckpointError(f"{directory}: {rel} does not match its SHA-256 (corrupt)")
    return step


def list_checkpoints(out_dir: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """``(step, folder)`` of every ``step-*`` folder under ``OUT_DIR/checkpoints``, oldest first."""
    return step_folders(Path(out_dir) / CHECKPOINT_DIR, min_digits=_STEP_DIGITS)


def latest_valid(out_dir: str | os.PathLike[str]) -> Path | None:
    """The newest checkpoint that passes :func:`verify`; warns about each newer invalid one."""
    rejected: list[str] = []
    for _, path in reversed(list_checkpoints(out_dir)):
        try:
            verify(path)
        except CheckpointError as e:
            rejected.append(str(e))
            continue
        for reason in rejected:
            warnings.warn(
                f"skipping invalid checkpoint: {reason}; resuming from {path}", stacklevel=2
            )
        return path
    for reason in rejected:
        warnings.warn(
            f"skipping invalid checkpoint: {reason}; no valid checkpoint left", stacklevel=2
        )
    return None


def remove_stale_temporaries(out_dir: str | os.PathLike[str]) -> list[Path]:
    """Delete half-written checkpoint folders a killed run left behind (``.step-*.tmp``)."""
    return remove_temporaries(Path(out_dir) / CHECKPOINT_DIR, _TEMP_RE)


def prune(out_dir: str | os.PathLike[str], keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` checkpoints; returns the deleted folders."""
    return prune_step_folders(list_checkpoints(out_dir), keep_last)


def read_state(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``trainer_state.json`` of a checkpoint."""
    path = Path(directory) / STATE_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable trainer state ({e})") from None
