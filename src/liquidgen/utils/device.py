"""Where and in what precision a model runs: the one device/dtype resolution of liquidgen.

:func:`resolve_device` and :func:`resolve_dtype` turn what a user typed (``"cuda:1"``,
``"auto"``, ``None``...) into torch objects, raising :class:`~liquidgen.errors.ConfigError`
for unknown or unavailable values. :func:`quiet_loading` keeps transformers' "Loading weights"
progress bar off the terminal while a library call loads a model.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Iterator
from pathlib import Path

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


# CPU flags of native bfloat16 arithmetic (x86: AVX512-BF16 dot products, AMX tiles; Arm: BF16).
_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


@functools.cache
def _cpu_flags() -> frozenset[str] | None:
    """The CPU's feature flags from ``/proc/cpuinfo`` (Linux), or None where it is not readable."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86 / Arm
            return frozenset(value.split())
    return None


def bf16_is_native(device: torch.device) -> bool:
    """Whether bfloat16 arithmetic runs in hardware on ``device``.

    Without it autocast's bf16 kernels are emulated: on an AVX2-only AMD EPYC (Zen 3, 2 threads)
    the LM's training step ran 44 tokens/s in bf16 against 774 in fp32 (``benchmarks/README.md``,
    "bf16 without hardware support"), the image tokenizer's 6.27-6.41 s a step against 0.72-0.79
    (docs/tokenizer.md). CUDA asks the driver; a CPU counts when ``/proc/cpuinfo`` lists AVX512-BF16, AMX-BF16 or Arm BF16, or,
    where the flags cannot be read, when PyTorch's kernels use AVX-512.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    flags = _cpu_flags()
    if flags is None:
        return torch.backends.cpu.get_cpu_capability().startswith("AVX512")
    return any(flag in flags for flag in _CPU_BF16_FLAGS)


def training_bf16(requested: bool, device: torch.device, what: str) -> bool:
    """Whether a trainer asked for bf16 autocast (``requested``) gets it on ``device``.

    bf16 is a speed setting for training (fp32 master weights either way): where the hardware
    has no bf16 it makes training 8-18x slower (measured, :func:`bf16_is_native`), so it falls back to fp32 with one warning
    naming ``what`` (the config key) and the reason.
    """
    if not requested or bf16_is_native(device):
        return requested
    capability = torch.backends.cpu.get_cpu_capability() if device.type == "cpu" else device.type
    warnings.warn(
        f"{what}: this {device.type} ({capability}) has no native bfloat16, where bf16 "
        "autocast is emulated and many times slower than fp32: training in fp32 instead",
        RuntimeWarning,
        stacklevel=2,
    )
    return False


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
