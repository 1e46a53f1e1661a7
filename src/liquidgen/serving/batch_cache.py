"""The serving engine's batch KV cache: a cache layer that grows in place, left padding for
joining rows, and handing freed memory back to the OS.

:class:`GrowingLayer` keeps each layer's keys and values in a buffer with spare columns, so a
decode step writes its token in place instead of concatenating the whole batch cache
(transformers' :class:`DynamicLayer` does, every step); :func:`pad_left` aligns the caches
of rows that join a running batch; :func:`release_freed_memory` returns the heap pages of
dropped caches when the engine goes idle.
"""

from __future__ import annotations

import ctypes
from typing import Any

import torch
import torch.nn.functional as F
from transformers.cache_utils import DynamicLayer


class GrowingLayer(DynamicLayer):
    """A full-attention cache layer whose keys and values live in a buffer with spare
    columns: a decode step writes its token into the next spare column instead of
    concatenating (copying) the whole batch cache, as :class:`DynamicLayer` does every step.
    A full buffer is copied into one with ``SPARE_COLUMNS`` more (a copy every 64 steps, not
    every step); re-packing the batch (a join or a drop) builds a new layer.
    ``keys`` / ``values`` stay views of the filled columns: ``(R, heads, length, head_dim)``.
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        super().__init__()
        self.is_initialized = True
        self.device = keys.device
        self._fill(keys, values)

    def _fill(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        rows, heads, length, dim = keys.shape
        capacity = length + SPARE_COLUMNS
        self._keys = keys.new_empty(rows, heads, capacity, dim)
        self._values = values.new_empty(rows, values.shape[1], capacity, values.shape[3])
        self._keys[:, :, :length] = keys
        self._values[:, :, :length] = values
        self._length = length
        self._view()

    def _view(self) -> None:
        self.keys = self._keys[:, :, : self._length]
        self.values = self._values[:, :, : self._length]

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n = key_states.shape[-2]
        if self._length + n > self._keys.shape[2]:
            self._fill(self.keys, self.values)
        self._keys[:, :, self._length : self._length + n] = key_states
        self._values[:, :, self._length : self._length + n] = value_states
        self._length += n
        self._view()
        return self.keys, self.values


SPARE_COLUMNS = 64  # free columns of a GrowingLayer: an 8x8-code image's whole decode


def release_freed_memory() -> None:
    """Give the heap pages freed by dropped KV caches back to the OS (glibc's
    ``malloc_trim``) when the engine goes idle, so the server's RSS returns to its resting
    size after a burst instead of staying at the peak. A no-op where glibc is absent."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _load_libc() -> Any:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 - glibc only
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _load_libc()


def pad_left(t: torch.Tensor, length: int, dim: int) -> torch.Tensor:
    """Zero-pad ``t`` on the left of ``dim`` to ``length``."""
    missing = length - t.shape[dim]
    if missing == 0:
        return t
    pad = [0, 0] * (t.dim() - dim - 1) + [missing, 0]
    return F.pad(t, pad)
