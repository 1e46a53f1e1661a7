"""Static-cache decoding: a preallocated KV cache, a one-token step that can be compiled.

:class:`StaticDecoder` holds, for ``R`` rows (the CFG pairs of one or more images, or text
prompts), a transformers :class:`~transformers.StaticCache` of ``L`` slots and an attention
mask it builds itself, so every decode step has the same shapes:

- :meth:`StaticDecoder.prefill` writes the left-padded prompts into slots ``0 .. T-1`` (eager:
  its shape changes with the prompt);
- :meth:`StaticDecoder.step` appends one token per row at slot ``t``: tokens ``(R, 1)``,
  RoPE positions ``(R, 1)`` and the slot as a 0-d tensor go in, logits ``(R, V')`` come out.
  Its shapes never change during a request, which is what ``torch.compile`` (and CUDA graphs)
  need; with ``compile`` the step is compiled once per (model, rows, slots) and reused;
- :meth:`StaticDecoder.window` appends ``W`` tokens per row and returns the logits of all of
  them (speculative Jacobi decoding, :mod:`liquidgen.inference.jacobi`); :meth:`rewind`
  drops the last slots again (the rejected draft tokens; the next write overwrites them).

The mask is a float ``(R, 1, q, L)`` tensor in the model's dtype (0 = attend, the dtype's
minimum = masked), which transformers passes to the attention as it is (a prepared 4D mask):
a slot is visible to a query when it holds a real token (not left padding, recorded once at
prefill) and is not after the query's own slot. Slots not yet written are masked, so the
static cache computes the same attention as the growing ``DynamicCache`` (same codes for the
same seed on the tested models; logits equal to float rounding, the attention reduction
running over a longer, masked key axis).

Compilation (``compile=True`` or a mode name): the step is wrapped in ``torch.compile``
(``dynamic=False``). On CPU the default mode is :data:`CPU_COMPILE_MODE` (measured, see
docs/inference.md); on CUDA ``"reduce-overhead"``, i.e. CUDA graphs (the cache tensors are
marked static by transformers; the logits are cloned out of the graph's pool). The CUDA path
is written but could not be measured on the development machine (no GPU). Where compilation
fails (no C++ compiler, an unsupported model) the step runs eagerly after one warning.

Models whose layers are not all full attention (Gemma-2/3 sliding windows) keep the dynamic
cache: :func:`supports_static_cache` says which.
"""

from __future__ import annotations

import logging
import math
import threading
import warnings
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import PreTrainedModel, StaticCache

from liquidgen.errors import ConfigError

log = logging.getLogger(__name__)

# Slots are allocated in multiples of this, so requests of similar length share one compiled
# step (a new cache length is a new graph).
SLOT_ROUNDING = 64
# torch.compile mode of the decode step on CPU; chosen by measurement (docs/inference.md).
CPU_COMPILE_MODE = "max-autotune-no-cudagraphs"
CUDA_COMPILE_MODE = "reduce-overhead"  # CUDA graphs
# Engines kept per model (one per distinct rows x slots x compile mode), least recent dropped.
MAX_ENGINES_PER_MODEL = 3

CompileOption = bool | str | None

_engines: weakref.WeakKeyDictionary[torch.nn.Module, dict[tuple, StaticDecoder]] = (
    weakref.WeakKeyDictionary()
)
_engines_lock = threading.Lock()
_warned: set[str] = set()


# (what, mode, device type) whose compilation failed in this process. An engine is built per
# image (per chunk); without this each would try again (measured on liquidgen-tiny's int8
# step, whose compilation failed then: 2.88 s per image, 0.24 s once it was not retried).
_COMPILE_FAILED: set[tuple[str, str, str]] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def supports_static_cache(model: PreTrainedModel) -> bool:
    """Whether every attention layer of ``model`` is full attention (no sliding window, no
    linear/recurrent state): those models get the static cache; the others keep the dynamic one."""
    config = model.config.get_text_config(decoder=True)
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None:
        return all(t == "full_attention" for t in layer_types)
    # Configs without layer_types: a set sliding window means every layer is windowed.
    return not (
        getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True)
    )


def use_static(model: PreTrainedModel, static_cache: bool | None) -> bool:
    """Whether to decode on the static cache: ``static_cache`` as asked (``True`` refused for a
    model that does not support it), ``None``: wherever the model supports it."""
    if static_cache is None:
        return supports_static_cache(model)
    if static_cache and not supports_static_cache(model):
        raise ConfigError(
            f"{type(model).__name__} has sliding-window or non-attention layers; "
            "the static KV cache supports full-attention models only (use static_cache=False)"
        )
    return static_cache


def compile_mode(option: CompileOption, device: torch.device) -> str | None:
    """The ``torch.compile`` mode for ``option`` (``False``/``None``: no compilation)."""
    if option is None or option is False:
        return None
    if option is True:
        return CUDA_COMPILE_MODE if device.type == "cuda" else CPU_COMPILE_MODE
    return str(option)


def round_slots(needed: int, context: int | None) -> int:
    """Cache slots for ``needed`` tokens, rounded up to :data:`SLOT_ROUNDING` (not past the
    model's context when it states one and ``needed`` fits)."""
    slots = math.ceil(needed / SLOT_ROUNDING) * SLOT_ROUNDING
    if context is not None and needed <= context:
        slots = min(slots, max(needed, context))
    return slots


class StaticDecoder:
    """A static KV cache for ``rows`` x ``slots`` and the prefill / step / window calls on it.

    ``logits_fn(input_ids, mask4d, position_ids, cache)`` returns last-position logits
    ``(R, V')`` (an :class:`~liquidgen.inference.decoding.ImageRowLogits` or
    ``FullVocabLogits``); ``window_fn`` (optional, same arguments) returns every position's
    ``(R, W, V')``. Use :func:`static_decoder` to get a cached one.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        rows: int,
        slots: int,
        logits_fn: Callable[..., torch.Tensor],
        *,
        window_fn: Callable[..., torch.Tensor] | None = None,
        compile: CompileOption = None,
    ) -> None:
        self.model = model
        self.rows = rows
        self.slots = slots
        self.logits_fn = logits_fn
        self.window_fn = window_fn
        self.device = model.device
        self.dtype = model.get_input_embeddings().weight.dtype
        if not self.dtype.is_floating_point:
            self.dtype = torch.float32
        self.cache = StaticCache(config=model.config, max_cache_len=slots)
        self.length = 0  # slots written
        self.visible = torch.ones(rows, slots, dtype=torch.bool, device=self.device)  # (R, L)
        self.slot_index = torch.arange(slots, device=self.device)  # (L,)
        self.masked = torch.finfo(self.dtype).min
        self.mode = compile_mode(compile, self.device)
        self._step = self._step_eager
        self._window = self._window_eager
        if self.mode is not None:
            self._step = self._compiled(self._step_eager, "decode step")
            if window_fn is not None:
                self._window = self._compiled(self._window_eager, "Jacobi window")
        self.forwards = 0  # forward passes run (prefill, steps, windows)

    # ------------------------------------------------------------------ compilation
    def _compiled(self, fn: Callable[..., torch.Tensor], what: str) -> Callable[..., torch.Tensor]:
        failed_key = (what, self.mode, self.device.type)
        if failed_key in _COMPILE_FAILED:  # failed before in this process: do not pay again
            return fn
        try:
            compiled = torch.compile(fn, mode=self.mode, dynamic=False)
        except Exception as e:  # torch.compile unavailable (e.g. unsupported Python)
            _warn_once(f"torch.compile is unavailable ({e}); the {what} runs eagerly")
            return fn
        state = {"fn": compiled}

        def call(*args: Any) -> torch.Tensor:
            if self.device.type == "cuda" and self.mode == CUDA_COMPILE_MODE:
                torch.compiler.cudagraph_mark_step_begin()
            try:
                out = state["fn"](*args)
            except Exception as e:  # no C++ compiler, an op inductor cannot lower, ...
                if state["fn"] is fn:
                    raise
                _warn_once(
                    f"torch.compile failed for the {what} ({type(e).__name__}: "
                    f"{str(e).splitlines()[0] if str(e) else ''}); running it eagerly"
                )
                state["fn"] = fn
                _COMPILE_FAILED.add(failed_key)  # every later engine runs eagerly at once
                out = fn(*args)
            # CUDA graphs reuse their output buffers at the next replay: take a copy.
            return out.clone() if self.device.type == "cuda" else out

        return call

    # ------------------------------------------------------------------ masks
    def _mask(self, first_slot: torch.Tensor | int, queries: int) -> torch.Tensor:
        """``(R, 1, queries, L)`` float mask for queries at slots ``first_slot + i``."""
        query_slots = first_slot + torch.arange(queries, device=self.device)  # (q,)
        causal = self.slot_index[None, :] <= query_slots[:, None]  # (q, L)
        allowed = causal[None] & self.visible[:, None, :]  # (R, q, L)
        zero = torch.zeros((), dtype=self.dtype, device=self.device)
        masked = torch.full((), self.masked, dtype=self.dtype, device=self.device)
        return torch.where(allowed, zero, masked)[:, None]  # (R, 1, q, L)

    # ------------------------------------------------------------------ the calls
    def reset(self) -> None:
        self.cache.reset()
        self.length = 0
        self.visible.fill_(True)
        self.forwards = 0

    def prefill(
        self, prompts: Sequence[Sequence[int]], pad_id: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write left-padded ``prompts`` into fresh slots; returns the last logits ``(R, V')``
        and each row's next RoPE position ``(R,)``."""
        if len(prompts) != self.rows:
            raise ValueError(f"engine has {self.rows} rows, got {len(prompts)} prompts")
        from liquidgen.inference.decoding import left_pad  # decoding imports this module

        self.reset()
        ids, mask, positions = left_pad(prompts, pad_id, self.device)  # (R, T) each
        length = ids.shape[1]
        if length >= self.slots:
            raise ValueError(f"prompt of {length} tokens does not fit {self.slots} slots")
        self.visible[:, :length] = mask.bool()
        logits = self.logits_fn(ids, self._mask(0, length), positions, self.cache)
        self.length = length
        self.forwards += 1
        return logits, positions[:, -1] + 1

    def _step_eager(
        self, tokens: torch.Tensor, positions: torch.Tensor, slot: torch.Tensor
    ) -> torch.Tensor:
        return self.logits_fn(tokens, self._mask(slot, 1), positions, self.cache)

    def _window_eager(
        self, tokens: torch.Tensor, positions: torch.Tensor, slot: torch.Tensor
    ) -> torch.Tensor:
        assert self.window_fn is not None
        return self.window_fn(tokens, self._mask(slot, tokens.shape[1]), positions, self.cache)

    def _check_room(self, tokens: int) -> None:
        if self.length + tokens > self.slots:
            raise ValueError(f"the static cache of {self.slots} slots is full")

    def step(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Append ``tokens`` ``(R,)`` at RoPE ``positions`` ``(R,)`` -> next logits ``(R, V')``."""
        self._check_room(1)
        slot = torch.tensor(self.length, device=self.device)
        logits = self._step(
            tokens.to(self.device).view(self.rows, 1),
            positions.to(self.device).view(self.rows, 1),
            slot,
        )
        self.length += 1
        self.forwards += 1
        return logits

    def window(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Append ``tokens`` ``(R, W)`` at ``positions`` ``(R, W)`` -> logits ``(R, W, V')``."""
        self._check_room(tokens.shape[1])
        slot = torch.tensor(self.length, device=self.device)
        logits = self._window(
            tokens.to(self.device).contiguous(), positions.to(self.device).contiguous(), slot
        )
        self.length += tokens.shape[1]
        self.forwards += 1
        return logits

    def rewind(self, n: int) -> None:
        """Forget the last ``n`` written slots (they are overwritten by the next write)."""
        if n <= 0:
            return
        if n > self.length:
            raise ValueError(f"cannot rewind {n} of {self.length} slots")
        self.cache.crop(-n)
        self.length -= n


def static_decoder(
    model: PreTrainedModel,
    kind: str,
    rows: int,
    slots: int,
    make_fns: Callable[[], tuple[Callable[..., torch.Tensor], Callable[..., torch.Tensor] | None]],
    *,
    compile: CompileOption = None,
    reuse: bool | None = None,
) -> StaticDecoder:
    """A :class:`StaticDecoder` for ``model``.

    Compiled engines (and any with ``reuse=True``) are kept and reused across calls with the
    same ``kind`` (e.g. ``"image"``/``"text"``), rows, slots and compile mode, so a step
    compiles once; at most :data:`MAX_ENGINES_PER_MODEL` are kept per model, each holding its
    KV cache. Eager engines are made afresh (``reuse=None``), so their cache is freed after the
    call: allocating it is cheap next to a decode.
    """
    mode = compile_mode(compile, model.device)
    if not (reuse if reuse is not None else mode is not None):
        logits_fn, window_fn = make_fns()
        return StaticDecoder(model, rows, slots, logits_fn, window_fn=window_fn, compile=compile)
    key = (kind, rows, slots, mode, model.device, model.dtype)
    with _engines_lock:
        engines = _engines.setdefault(model, {})
        engine = engines.pop(key, None)
        if engine is None:
            logits_fn, window_fn = make_fns()
            engine = StaticDecoder(
                model, rows, slots, logits_fn, window_fn=window_fn, compile=compile
            )
        engines[key] = engine  # most recent last
        while len(engines) > MAX_ENGINES_PER_MODEL:
            engines.pop(next(iter(engines)))
    return engine


def clear_engines(model: torch.nn.Module | None = None) -> None:
    """Drop the cached engines (of ``model``, or of every model): after changing its weights."""
    with _engines_lock:
        if model is None:
            _engines.clear()
        else:
            _engines.pop(model, None)


__all__ = [
    "CPU_COMPILE_MODE",
    "StaticDecoder",
    "clear_engines",
    "compile_mode",
    "round_slots",
    "static_decoder",
    "supports_static_cache",
]
