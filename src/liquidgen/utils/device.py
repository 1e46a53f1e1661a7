"""Where and in what precision a model runs: the one device/dtype resolution of liquidgen.

:func:`resolve_device` and :func:`resolve_dtype` turn what a user typed (``"cuda:1"``,
``"auto"``, ``None``...) into torch objects, raising :class:`~liquidgen.errors.ConfigError`
for unknown or unavailable values. :func:`quiet_loading` keeps transformers' "Loading weights"
progress bar off the terminal while a library call loads a model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from liquidgen.errors import ConfigError

# Accepted ``dtype`` names (``"auto"``: bfloat16 on CUDA, float32 on CPU; see docs/inference.md).
DTYPES: dict[str, torch.dtype | None] = {
    "auto": None,
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``: CUDA when available, else CPU. Unknown or unavailable devices raise ConfigError."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"unknown device {device!r}") from e
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available")
    if resolved.type not in ("cpu", "cuda"):
        raise ConfigError(f"device must be cpu or cuda, got {device!r}")
    return resolved


def resolve_dtype(dtype: torch.dtype | str | None, device: torch.device) -> torch.dtype:
    """``None``/``"auto"``: bfloat16 on CUDA, float32 on CPU.

    CPU bfloat16 was measured (docs/inference.md): faster image decoding at 0.5B parameters
    but different samples than float32, so it is opt-in there.
    """
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        dtype = DTYPES[dtype]
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES.values():
        raise ConfigError(f"dtype must be one of {sorted(DTYPES)}, got {dtype}")
    return dtype


@contextlib.contextmanager
def quiet_loading(enabled: bool = True) -> Iterator[None]:
    """Switch transformers' progress bars off for the duration (``enabled=False``: no-op).

    transformers 5.x draws a "Loading weights" bar on stderr in ``from_pretrained``; a
    library call should print nothing unless asked. The previous setting is restored.
    """
    from transformers.utils import logging as hf_logging

    if not enabled or not hf_logging.is_progress_bar_enabled():
        yield
        return
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()
