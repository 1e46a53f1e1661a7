"""The KV-cache machinery every decode loop shares (gpt-fast shaped).

- logits functions: :class:`FullVocabLogits` (the model's own forward) and
  :class:`ImageRowLogits` (the decoder and only the image rows of the LM head);
- :func:`left_pad`: prompts of different lengths as one batch, with an attention mask and
  per-row position ids so every row sees exactly what it would see alone;
- :func:`prefill` runs the prompts once and fills a ``DynamicCache``, :func:`decode_one_token`
  feeds one token per row; :func:`start_decoding` does either that or the same on the static
  cache (:mod:`liquidgen.inference.static`) and returns a one-token step;
  :func:`decode_n_tokens` draws exactly ``n`` tokens per row with such a step.

The image loops (:mod:`liquidgen.inference.image_generation`) and the text loops
(:mod:`liquidgen.inference.text_generation`) are built on these.

"Image rows only": while sampling an image only the ``codebook_size`` image rows of the LM
head can receive probability mass, so :class:`ImageRowLogits` runs the model's decoder and
multiplies the last hidden state with ``lm_head.weight[image_offset:image_end]`` (a view, no
copy) instead of the whole ``V x H`` head. The logits of those rows are the same numbers
(tested bit for bit on CPU in float32). Heads that post-process logits are handled when the
rule is known (Gemma-2/3 final-logit soft-capping, Cohere's ``logit_scale``, Granite's
``logits_scaling``: all element-wise, so they commute with the slicing); any other model is
checked once against its own forward and refused with a :class:`ConfigError` if the numbers
differ (pass ``image_rows_only=False`` then).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol

import torch
import torch.nn.functional as F
from transformers import DynamicCache, PreTrainedModel

from liquidgen.errors import ConfigError
from liquidgen.inference.request import context_length
from liquidgen.inference.static import CompileOption, round_slots, static_decoder
from liquidgen.model.head import DecoderHead
from liquidgen.vocab import VocabLayout

# Tolerance of the one-off check that the sliced head reproduces the model's own logits,
# relative to the largest logit: loose enough for a different GEMM blocking (on CPU the two
# paths agree bit for bit), tight enough to catch any scale, offset or soft-cap of the logits.
_HEAD_CHECK_RTOL = 1e-3
_HEAD_CHECK_ULPS = 4  # low-precision dtypes: a few units of the dtype's epsilon

ProgressFn = Callable[[int, int], None]  # (tokens drawn so far, total)
Step = Callable[[torch.Tensor], torch.Tensor]  # tokens fed back (R,) -> next logits (R, V')


def _cache_keyword(model_class: type) -> str:
    """Name of the KV-cache argument of ``model_class.forward``.

    transformers 5.x renamed ``past_key_values`` to ``cache`` (the old name warns and is
    removed in 5.40); the supported range straddles the rename, so ask the signature. A
    subclass whose ``forward(*args, **kwargs)`` names neither defers to its bases.
    """
    for klass in model_class.__mro__:
        forward = vars(klass).get("forward")
        if forward is None:
            continue
        parameters = inspect.signature(forward).parameters
        for name in ("cache", "past_key_values"):
            if name in parameters:
                return name
    return "past_key_values"


# model class -> its cache keyword. A plain dict rather than functools.cache: the compiled
# decode step calls cache_kwargs, and dynamo reads a dict as a constant but warns at every
# compilation that it traces through an lru_cache wrapper.
_CACHE_KEYWORDS: dict[type, str] = {}


def cache_kwargs(module: torch.nn.Module, cache: DynamicCache | None) -> dict[str, object]:
    """``{<cache keyword>: cache}`` for ``module``'s forward, whichever transformers names it."""
    keyword = _CACHE_KEYWORDS.get(type(module))
    if keyword is None:
        keyword = _CACHE_KEYWORDS[type(module)] = _cache_keyword(type(module))
    return {keyword: cache}


# --------------------------------------------------------------------------- logits functions
class LogitsFn(Protocol):
    """One forward step: tokens in, next-token logits of the last position out."""

    def __call__(
        self,
        input_ids: torch.Tensor,  # (R, T)
        attention_mask: torch.Tensor,  # (R, S) S = cached + T
        position_ids: torch.Tensor,  # (R, T)
        cache: DynamicCache | None,
    ) -> torch.Tensor:  # (R, V') float, V' = full vocabulary or image rows
        ...


class FullVocabLogits:
    """The model's own forward, logits for the whole vocabulary at the last position."""

    def __init__(self, model: PreTrainedModel) -> None:
        self.model = model

    def __call__(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        cache: DynamicCache | None,
    ) -> torch.Tensor:
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=cache is not None,
            logits_to_keep=1,
            **cache_kwargs(self.model, cache),
        )
        return out.logits[:, -1]  # (R, V)


class ImageRowLogits(DecoderHead):
    """Decoder + the image rows of the LM head: logits of image tokens only, ``(R, K)``.

    Column ``c`` is the logit of token ``image_offset + c``, the same number the full head
    computes. Known element-wise head post-processing (soft-capping, logit scales) is applied
    (:class:`~liquidgen.model.head.DecoderHead`); :meth:`verify` compares against the model's
    own forward for anything else.
    """

    mismatch_hint = "use image_rows_only=False"

    def __init__(self, model: PreTrainedModel, layout: VocabLayout) -> None:
        head = model.get_output_embeddings()
        if not isinstance(head, torch.nn.Linear):
            raise ConfigError(
                f"{type(model).__name__} has no linear LM head; use image_rows_only=False"
            )
        if head.out_features < layout.image_end:
            raise ConfigError(
                f"the LM head has {head.out_features} rows but the layout needs {layout.image_end}"
            )
        self.model = model
        self.layout = layout
        self.decoder = model.get_decoder()
        self.weight = head.weight[layout.image_offset : layout.image_end]  # (K, H) view
        self.bias = None if head.bias is None else head.bias[layout.image_offset : layout.image_end]
        self.init_head(model.config)

    def _hidden(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        cache: DynamicCache | None,
    ) -> torch.Tensor:
        out = self.decoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=cache is not None,
            **cache_kwargs(self.decoder, cache),
        )
        return out.last_hidden_state  # (R, T, H)

    def __call__(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        cache: DynamicCache | None,
    ) -> torch.Tensor:
        hidden = self._hidden(input_ids, attention_mask, position_ids, cache)[:, -1]  # (R, H)
        return self.project(hidden, self.weight, self.bias)  # (R, K)

    def window(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        cache: DynamicCache | None,
    ) -> torch.Tensor:
        """Like calling it, but the logits of every input position: ``(R, T, K)``."""
        hidden = self._hidden(input_ids, attention_mask, position_ids, cache)
        return self.project(hidden, self.weight, self.bias)  # (R, T, K)

    def verify(self, probe_ids: Sequence[int]) -> None:  # type: ignore[override]
        """Refuse models whose logits this path does not reproduce (one short extra forward)."""
        DecoderHead.verify(self, probe_ids, self.weight.device)

    def reference_logits(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        full = FullVocabLogits(self.model)(ids, torch.ones_like(ids), positions, None)
        return full[:, self.layout.image_offset : self.layout.image_end]

    def own_logits(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self(ids, torch.ones_like(ids), positions, None)

    def tolerance_rtol(self) -> float:
        # Loose enough for a different GEMM blocking (on CPU the two paths agree bit for bit),
        # tight enough to catch any scale, offset or soft-cap; low precision: a few ulps.
        return max(_HEAD_CHECK_RTOL, _HEAD_CHECK_ULPS * torch.finfo(self.weight.dtype).eps)

    def model_name(self) -> str:
        return type(self.model).__name__

    def mismatch_message(self, difference: float) -> str:
        return (
            f"{self.model_name()}: the image rows of the LM head do not reproduce the "
            "model's logits (unknown head post-processing); use image_rows_only=False"
        )


# --------------------------------------------------------------------------- the cache
@dataclasses.dataclass
class DecodeState:
    """What the decode loop carries between steps for ``R`` rows."""

    cache: DynamicCache
    attention_mask: torch.Tensor  # (R, S) 1 = real token, 0 = left padding; S tokens seen
    next_position: torch.Tensor  # (R,) RoPE position of the next token of each row


def left_pad(
    rows: Sequence[Sequence[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-pad token rows into ``(input_ids, attention_mask, position_ids)``, each ``(R, L)``.

    Positions count real tokens only (0 at each row's first real token), so a padded row gets
    the same RoPE phases as the prompt alone.
    """
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, length - len(row) :] = torch.tensor(row, dtype=torch.long)
        mask[i, length - len(row) :] = 1
    positions = (mask.cumsum(dim=-1) - 1).clamp(min=0)  # (R, L)
    return ids.to(device), mask.to(device), positions.to(device)


def prefill(
    model: PreTrainedModel, rows: Sequence[Sequence[int]], logits_fn: LogitsFn, pad_id: int
) -> tuple[torch.Tensor, DecodeState]:
    """Run the prompts once, fill a fresh KV cache; returns the next-token logits ``(R, V')``."""
    ids, mask, positions = left_pad(rows, pad_id, model.device)
    cache = DynamicCache(config=model.config)
    logits = logits_fn(ids, mask, positions, cache)
    return logits, DecodeState(cache=cache, attention_mask=mask, next_position=positions[:, -1] + 1)


def decode_one_token(tokens: torch.Tensor, state: DecodeState, logits_fn: LogitsFn) -> torch.Tensor:
    """Append ``tokens`` ``(R,)`` to every row, one forward with the cache -> logits ``(R, V')``."""
    state.attention_mask = F.pad(state.attention_mask, (0, 1), value=1)  # (R, S + 1)
    logits = logits_fn(
        tokens[:, None].to(state.attention_mask.device),
        state.attention_mask,
        state.next_position[:, None],
        state.cache,
    )
    state.next_position = state.next_position + 1
    return logits


def start_decoding(
    model: PreTrainedModel,
    rows: Sequence[Sequence[int]],
    logits_fn: LogitsFn,
    pad_id: int,
    *,
    static: bool,
    kind: str,
    new_tokens: int,
    compile: CompileOption = False,
) -> tuple[torch.Tensor, Step]:
    """Prefill left-padded ``rows``; returns their next-token logits ``(R, V')`` and the step
    that feeds one token per row back.

    ``static``: on the static KV cache (slots for the longest row plus ``new_tokens``, the
    engine cached per model and ``kind``, the step compiled with ``compile``); otherwise on
    a growing ``DynamicCache``. Same tokens either way.
    """
    if not static:
        logits, state = prefill(model, rows, logits_fn, pad_id)
        return logits, lambda tokens: decode_one_token(tokens, state, logits_fn)
    slots = round_slots(max(len(r) for r in rows) + new_tokens, context_length(model))
    engine = static_decoder(
        model, kind, len(rows), slots, lambda: (logits_fn, getattr(logits_fn, "window", None)),
        compile=compile,
    )  # fmt: skip
    logits, positions = engine.prefill(rows, pad_id)

    def step(tokens: torch.Tensor) -> torch.Tensor:
        nonlocal positions
        out = engine.step(tokens, positions)
        positions = positions + 1
        return out

    return logits, step


def decode_n_tokens(
    logits: torch.Tensor,
    step: Step,
    n: int,
    choose: Callable[[torch.Tensor], torch.Tensor],
    progress: ProgressFn | None = None,
) -> torch.Tensor:
    """Draw exactly ``n`` tokens per row; returns them ``(R, n)``.

    ``choose`` maps the current logits ``(R, V')`` to the tokens fed back ``(R,)``. The last
    token is drawn without a further forward, so there are ``n - 1`` decode steps.
    """
    drawn = []
    for i in range(n):
        tokens = choose(logits)  # (R,)
        drawn.append(tokens)
        if progress is not None:
            progress(i + 1, n)
        if i + 1 < n:
            logits = step(tokens)
    return torch.stack(drawn, dim=1)


# --------------------------------------------------------------------------- shared checks
@contextlib.contextmanager
def inference(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode (no dropout) and no autograd for the duration, restoring the training flag."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def check_ids(rows: Iterable[Sequence[int]], vocab_size: int, what: str) -> None:
    """Refuse an empty row or ids outside ``[0, vocab_size)``."""
    for row in rows:
        if not row:
            raise ConfigError(f"empty {what}")
        bad = [t for t in row if not 0 <= t < vocab_size]
        if bad:
            raise ConfigError(f"{what} has ids outside the vocabulary [0, {vocab_size}): {bad[:5]}")
