"""Autoregressive decoding with a KV cache for any transformers causal LM.

Shaped like gpt-fast: :func:`prefill` runs the prompt(s) once and fills the cache,
:func:`decode_one_token` feeds one token per row and two loops use them: :func:`decode_n_tokens`
draws exactly ``n`` tokens per row (images), :func:`decode_until_stop` decodes rows until each
draws a stop id (text: one row streamed, or many rows greedily). Entry points:
:func:`sample_image_codes` runs a resolved :class:`~liquidgen.inference.request.ImageRequest`
as it is; :func:`generate_image_tokens` (raw ids), :func:`generate_text` (one prompt) and
:func:`greedy_texts` (a batch of prompts) check their inputs first.

Text-to-image (Liquid's sampler): the conditional prompts (``... <boi>``) and, when
``cfg_scale > 1``, the unconditional prompt ``<unconditional><boi>`` run as one batch through
one forward per step. Prompts of different lengths are left-padded, with an attention mask and
per-row position ids so every row sees exactly what it would see alone. The token drawn for
an image is appended to its conditional row *and* its unconditional partner; exactly
``h * w`` tokens are drawn.

"Image rows only" (default on): while sampling an image only the ``codebook_size`` image rows
of the LM head can receive probability mass, so the generator runs the model's decoder and
multiplies the last hidden state with ``lm_head.weight[image_offset:image_end]`` (a view, no
copy) instead of the whole ``V x H`` head. The logits of those rows are the same numbers
(tested bit for bit on CPU in float32) and the sampler is shared, so the distribution and the
drawn tokens are unchanged. It saves the ``(V - codebook_size) / V`` text fraction of the LM
head's FLOPs and weight bytes per step: for Liquid-7B (Gemma-7B) 256000 of 264192 head rows,
1.57 of 1.62 GB in bf16, about 9% of the 17.1 GB a decode step reads; for a Qwen2.5-0.5B-based
model 151936 of 160128 rows, 136M of the 501M weights a step reads (27%). Heads that post-process
logits are handled when the rule is known (Gemma-2/3 final-logit soft-capping, Cohere's
``logit_scale``, Granite's ``logits_scaling``: all element-wise, so they commute with the
slicing); any other model is checked once against its own forward and refused with a
:class:`ConfigError` if the numbers differ (pass ``image_rows_only=False`` then).

Seeds: image ``i`` (prompt ``p``, sample ``j``, ``i = p * n_per_prompt + j``) draws from its own
``torch.Generator`` seeded with ``seed + i``, one uniform number per token, so an image does not
depend on which other prompts share the batch: running prompt ``p`` alone with
``seed + p * n_per_prompt`` reproduces its images.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal, Protocol

import torch
import torch.nn.functional as F
from transformers import DynamicCache, PreTrainedModel

from liquidgen.errors import ConfigError
from liquidgen.inference.request import ImageRequest, context_length, text_budget
from liquidgen.inference.sampling import (
    DEFAULT_CFG_SCALE,
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_K,
    DEFAULT_TOP_P,
    ImageSampling,
    TextSampling,
    sample_from_probs,
)
from liquidgen.inference.sampling import greedy as argmax
from liquidgen.inference.static import (
    CompileOption,
    round_slots,
    static_decoder,
    supports_static_cache,
)
from liquidgen.model.head import DecoderHead
from liquidgen.vocab import VocabLayout

# A single prompt is never padded; the id only fills the (unused) padding argument.
_NO_PADDING = 0
# Tolerance of the one-off check that the sliced head reproduces the model's own logits,
# relative to the largest logit: loose enough for a different GEMM blocking (on CPU the two
# paths agree bit for bit), tight enough to catch any scale, offset or soft-cap of the logits.
_HEAD_CHECK_RTOL = 1e-3
_HEAD_CHECK_ULPS = 4  # low-precision dtypes: a few units of the dtype's epsilon
# Incomplete UTF-8 at the end of a partial decode shows up as this character; hold it back.
_REPLACEMENT_CHAR = "\ufffd"

ProgressFn = Callable[[int, int], None]  # (tokens drawn so far, total)
# Draft tokens a speculative Jacobi forward verifies (the paper's window length).
DEFAULT_JACOBI_WINDOW = 16
SPECULATIVE_CHOICES = ("jacobi",)
# KV cache + prefill activations one batched image decode may hold (images_per_forward).
DEFAULT_DECODE_MEMORY_MB = 2048
DECODE_MEMORY_ENV = "LIQUIDGEN_DECODE_MEMORY_MB"


@functools.cache
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


def cache_kwargs(module: torch.nn.Module, cache: DynamicCache | None) -> dict[str, object]:
    """``{<cache keyword>: cache}`` for ``module``'s forward, whichever transformers names it."""
    return {_cache_keyword(type(module)): cache}


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

    def __call__(
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
        hidden = out.last_hidden_state[:, -1]  # (R, H)
        return self.project(hidden, self.weight, self.bias)  # (R, K)

    def window(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        cache: DynamicCache | None,
    ) -> torch.Tensor:
        """Like calling it, but the logits of every input position: ``(R, T, K)``."""
        out = self.decoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=cache is not None,
            **cache_kwargs(self.decoder, cache),
        )
        return self.project(out.last_hidden_state, self.weight, self.bias)  # (R, T, K)

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


def decode_n_tokens(
    logits: torch.Tensor,
    state: DecodeState,
    logits_fn: LogitsFn,
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
            logits = decode_one_token(tokens, state, logits_fn)
    return torch.stack(drawn, dim=1)


@contextlib.contextmanager
def _inference(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode (no dropout) and no autograd for the duration, restoring the training flag."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def _check_ids(rows: Iterable[Sequence[int]], vocab_size: int, what: str) -> None:
    for row in rows:
        if not row:
            raise ConfigError(f"empty {what}")
        bad = [t for t in row if not 0 <= t < vocab_size]
        if bad:
            raise ConfigError(f"{what} has ids outside the vocabulary [0, {vocab_size}): {bad[:5]}")


# --------------------------------------------------------------------------- images
def kv_bytes_per_token(model: PreTrainedModel) -> int:
    """Bytes of keys and values one token of one row occupies in the KV cache."""
    config = model.config.get_text_config(decoder=True)
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    element = torch.finfo(model.dtype).bits // 8 if model.dtype.is_floating_point else 4
    return config.num_hidden_layers * 2 * kv_heads * head_dim * element


def decode_memory_budget() -> int:
    """Bytes one batched image decode may hold in KV cache and activations
    (``LIQUIDGEN_DECODE_MEMORY_MB``, default :data:`DEFAULT_DECODE_MEMORY_MB`)."""
    from liquidgen.utils.limits import _env_number

    return int(_env_number(DECODE_MEMORY_ENV, DEFAULT_DECODE_MEMORY_MB) * 2**20)


def images_per_forward(model: PreTrainedModel, request: ImageRequest) -> int:
    """How many images' CFG pairs run in one forward: as many as the request has, at most
    :func:`~liquidgen.utils.limits.max_batch` (the images-per-batch policy) and at most what
    fits :func:`decode_memory_budget` (each row's KV cache over its prompt and image, and the
    prefill activations of its prompt)."""
    from liquidgen.utils.limits import max_batch

    config = model.config.get_text_config(decoder=True)
    prompt = max(len(p) for p in (*request.cond_ids, request.uncond_ids))
    slots = prompt + request.tokens_per_image
    element = torch.finfo(model.dtype).bits // 8 if model.dtype.is_floating_point else 4
    width = config.hidden_size * 4 + (getattr(config, "intermediate_size", None) or 0) * 2
    per_row = slots * kv_bytes_per_token(model) + prompt * width * element
    rows_per_image = 2 if request.sampling.uses_cfg else 1
    fit = max(1, decode_memory_budget() // (rows_per_image * per_row))
    return max(1, min(request.n_images, max_batch(), fit))


def _use_static(model: PreTrainedModel, static_cache: bool | None) -> bool:
    if static_cache is None:
        return supports_static_cache(model)
    if static_cache and not supports_static_cache(model):
        raise ConfigError(
            f"{type(model).__name__} has sliding-window or non-attention layers; "
            "the static KV cache supports full-attention models only (use static_cache=False)"
        )
    return static_cache


def sample_image_codes(
    model: PreTrainedModel,
    layout: VocabLayout,
    request: ImageRequest,
    *,
    image_rows_only: bool = True,
    progress: ProgressFn | None = None,
    static_cache: bool | None = None,
    compile: CompileOption = False,
    speculative: str | None = None,
    jacobi_window: int = DEFAULT_JACOBI_WINDOW,
    batch_images: int | None = None,
    stats: dict[str, int] | None = None,
) -> torch.Tensor:
    """Run a resolved :class:`ImageRequest` with Liquid's batched CFG sampler (no checks:
    :func:`~liquidgen.inference.request.resolve_image_request` made them).

    Returns codes ``(P * n, h, w)`` long, image ``p * n + j`` being sample ``j`` of prompt
    ``p``; ``progress(done, total)`` is called after every drawn token with the image tokens
    drawn so far over the whole request (``total = P * n * h * w``).

    - ``static_cache``: decode with a preallocated KV cache and fixed-shape steps
      (:mod:`liquidgen.inference.static`); ``None`` (default): wherever the model supports it
      (full attention), ``False``: transformers' ``DynamicCache``. Same codes either way.
    - ``compile``: ``torch.compile`` the one-token step (``True``: the measured mode for the
      device, or a mode name); it compiles once per model and batch shape (20-40 s on CPU).
    - ``speculative="jacobi"``: speculative Jacobi decoding
      (:mod:`liquidgen.inference.jacobi`), ``jacobi_window`` tokens per forward; lossless in
      distribution but not the same draws as plain sampling for a seed.
    - ``batch_images``: images whose CFG pairs share one forward (``None``:
      :func:`images_per_forward`, bounded by the memory budget and the batch limit).
      Speculative decoding runs one image at a time.
    - ``stats``: if given, gets ``forwards`` (forward passes of the model, the head check
      excluded) and ``tokens`` (image tokens drawn) added.
    """
    if speculative not in (None, "jacobi"):
        raise ConfigError(f"unknown speculative method {speculative!r} (known: jacobi)")
    if speculative is not None and not image_rows_only:
        raise ConfigError("speculative decoding needs image_rows_only=True")
    if speculative is not None and not supports_static_cache(model):
        raise ConfigError(
            f"speculative decoding needs the static KV cache, which {type(model).__name__} "
            "(sliding-window layers) does not support"
        )
    if speculative is not None and jacobi_window < 2:
        raise ConfigError(f"jacobi_window must be >= 2, got {jacobi_window}")
    static = _use_static(model, static_cache)
    if speculative is not None:
        per_forward = 1
    elif batch_images is not None:
        per_forward = max(1, min(batch_images, request.n_images))
    else:
        per_forward = images_per_forward(model, request)
    h, w = request.grid
    total = request.total_tokens
    codes = []
    with _inference(model):
        if image_rows_only:
            logits_fn: LogitsFn = ImageRowLogits(model, layout)
            logits_fn.verify(request.uncond_ids)
        else:
            logits_fn = FullVocabLogits(model)
        for first in range(0, request.n_images, per_forward):
            count = min(per_forward, request.n_images - first)

            def report(
                done: int, _total: int, base: int = first * h * w, rows: int = count
            ) -> None:
                progress(base + done * rows, total)  # type: ignore[misc]

            run = _jacobi_chunk if speculative == "jacobi" else _plain_chunk
            tokens = run(
                model,
                layout,
                request,
                first,
                count,
                logits_fn,
                static=static,
                compile=compile,
                progress=None if progress is None else report,
                stats=stats,
                window=jacobi_window,
            )  # (count, h*w) codes
            codes.append(tokens.cpu())
    return torch.cat(codes).view(request.n_images, h, w)


def _engine_kind(layout: VocabLayout, image_rows_only: bool) -> str:
    return f"image{layout.image_offset}:{layout.image_end}" if image_rows_only else "full"


def _chunk_rows(
    request: ImageRequest, first: int, count: int
) -> tuple[list[list[int]], list[torch.Generator]]:
    """Prompt rows (conditional, then unconditional partners) and per-image generators of
    images ``first .. first + count - 1`` of ``request``."""
    rows = [list(request.cond_ids[i // request.n]) for i in range(first, first + count)]
    if request.sampling.uses_cfg:
        rows += [list(request.uncond_ids)] * count  # partners: row i + count pairs with row i
    generators = [
        torch.Generator().manual_seed(request.seed + i) for i in range(first, first + count)
    ]
    return rows, generators


def _plain_chunk(
    model: PreTrainedModel,
    layout: VocabLayout,
    request: ImageRequest,
    first: int,
    count: int,
    logits_fn: LogitsFn,
    *,
    static: bool,
    compile: CompileOption,
    progress: ProgressFn | None,
    stats: dict[str, int] | None,
    window: int,
) -> torch.Tensor:
    """Plain CFG sampling of ``count`` images in one batch -> codes ``(count, h*w)``."""
    sampling = request.sampling
    rows, generators = _chunk_rows(request, first, count)
    n_tokens = request.tokens_per_image
    image_rows_only = isinstance(logits_fn, ImageRowLogits)

    def choose(logits: torch.Tensor) -> torch.Tensor:
        cond = logits[:count]  # (N, V')
        uncond = logits[count:] if sampling.uses_cfg else None
        if image_rows_only:
            codes = sample_from_probs(sampling.code_probs(cond, uncond), generators)
        else:
            probs = sampling.token_probs(cond, uncond, layout)  # (N, V)
            codes = layout.tokens_to_codes(sample_from_probs(probs, generators))
        tokens = layout.codes_to_tokens(codes)  # (N,)
        return torch.cat([tokens, tokens]) if sampling.uses_cfg else tokens

    if static:
        slots = round_slots(max(len(r) for r in rows) + n_tokens, context_length(model))
        engine = static_decoder(
            model, _engine_kind(layout, image_rows_only), len(rows), slots,
            lambda: (logits_fn, getattr(logits_fn, "window", None)), compile=compile,
        )  # fmt: skip
        logits, positions = engine.prefill(rows, layout.padding_id)
        drawn = []
        for i in range(n_tokens):
            tokens = choose(logits)  # (R,)
            drawn.append(tokens)
            if progress is not None:
                progress(i + 1, n_tokens)
            if i + 1 < n_tokens:
                logits = engine.step(tokens, positions)
                positions = positions + 1
        tokens = torch.stack(drawn, dim=1)  # (R, h*w)
        forwards = n_tokens
    else:
        logits, state = prefill(model, rows, logits_fn, layout.padding_id)
        tokens = decode_n_tokens(logits, state, logits_fn, n_tokens, choose, progress)
        forwards = n_tokens
    if stats is not None:
        stats["forwards"] = stats.get("forwards", 0) + forwards
        stats["tokens"] = stats.get("tokens", 0) + count * n_tokens
    return layout.tokens_to_codes(tokens[:count].cpu())  # (count, h*w)


def _jacobi_chunk(
    model: PreTrainedModel,
    layout: VocabLayout,
    request: ImageRequest,
    first: int,
    count: int,
    logits_fn: LogitsFn,
    *,
    static: bool,
    compile: CompileOption,
    progress: ProgressFn | None,
    stats: dict[str, int] | None,
    window: int,
) -> torch.Tensor:
    """Speculative Jacobi decoding of one image (``count == 1``) -> codes ``(1, h*w)``."""
    from liquidgen.inference.jacobi import jacobi_image_codes

    assert count == 1 and isinstance(logits_fn, ImageRowLogits)
    rows, generators = _chunk_rows(request, first, count)
    n_tokens = request.tokens_per_image
    slots = round_slots(max(len(r) for r in rows) + n_tokens + window, context_length(model))
    engine = static_decoder(
        model, _engine_kind(layout, True), len(rows), slots, lambda: (logits_fn, logits_fn.window),
        compile=compile if static else False,
    )  # fmt: skip
    codes, forwards = jacobi_image_codes(
        engine,
        rows,
        layout,
        request.sampling,
        n_tokens,
        generators[0],
        window=window,
        progress=progress,
    )
    if stats is not None:
        stats["forwards"] = stats.get("forwards", 0) + forwards
        stats["tokens"] = stats.get("tokens", 0) + n_tokens
    return codes[None]


def generate_image_tokens(
    model: PreTrainedModel,
    layout: VocabLayout,
    cond_ids: Sequence[Sequence[int]],
    uncond_ids: Sequence[int],
    *,
    grid_hw: tuple[int, int],
    n_per_prompt: int = 1,
    cfg_scale: float = DEFAULT_CFG_SCALE,
    temperature: float = DEFAULT_TEMPERATURE,
    top_k: int = DEFAULT_TOP_K,
    top_p: float = DEFAULT_TOP_P,
    seed: int = 0,
    image_rows_only: bool = True,
    progress: ProgressFn | None = None,
    **options: Any,
) -> torch.Tensor:
    """Sample VQGAN codes for text-to-image from raw prompt ids, checking them first.

    ``cond_ids``: one token list per prompt, each ending with ``<boi>``; ``uncond_ids``: the
    unconditional prompt (``<unconditional><boi>`` plus whatever prefix the format puts before
    it), unused when ``cfg_scale <= 1``. ``grid_hw``: the code grid ``(h, w)``; exactly
    ``h * w`` tokens are drawn per image. Returns codes ``(P * n_per_prompt, h, w)`` long, image
    ``p * n_per_prompt + j`` being sample ``j`` of prompt ``p`` (see the module docstring for
    seeds). ``progress(done, total)`` is called after every drawn token. ``options``: the
    decoding options of :func:`sample_image_codes` (``static_cache``, ``compile``,
    ``speculative``, ``jacobi_window``, ``batch_images``, ``stats``).
    """
    sampling = ImageSampling(cfg_scale=cfg_scale, temperature=temperature, top_k=top_k, top_p=top_p)
    h, w = grid_hw
    if h <= 0 or w <= 0:
        raise ConfigError(f"grid must be positive, got {h}x{w}")
    if n_per_prompt < 1:
        raise ConfigError(f"n_per_prompt must be >= 1, got {n_per_prompt}")
    if not cond_ids:
        raise ConfigError("no prompts given")
    prompts = [list(p) for p in cond_ids] + ([list(uncond_ids)] if sampling.uses_cfg else [])
    vocab_size = model.get_output_embeddings().out_features
    if vocab_size < layout.image_end:
        raise ConfigError(
            f"the model has {vocab_size} logits but the layout needs {layout.image_end}"
        )
    _check_ids(prompts, vocab_size, "prompt")
    if any(p[-1] != layout.boi_id for p in prompts):
        raise ConfigError(f"every image prompt must end with <boi> (id {layout.boi_id})")
    context = context_length(model)
    longest = max(len(p) for p in prompts)
    if context is not None and longest + h * w > context:
        raise ConfigError(
            f"prompt ({longest} tokens) + image ({h}x{w} = {h * w} tokens) exceeds the "
            f"model's context of {context} tokens"
        )
    request = ImageRequest(
        prompts=("",) * len(cond_ids),
        cond_ids=tuple(tuple(p) for p in cond_ids),
        uncond_ids=tuple(uncond_ids),
        width=w * layout.downsample,
        height=h * layout.downsample,
        grid=(h, w),
        n=n_per_prompt,
        seed=seed,
        sampling=sampling,
    )
    return sample_image_codes(
        model, layout, request, image_rows_only=image_rows_only, progress=progress, **options
    )


# --------------------------------------------------------------------------- text
@dataclasses.dataclass(frozen=True)
class TextGeneration:
    """The result of :func:`generate_text`."""

    token_ids: list[int]  # generated ids, without the prompt and without the stop id
    text: str  # token_ids decoded, special tokens skipped
    finish_reason: Literal["stop", "length"]  # a stop id was drawn / the token budget ran out


def _extends(text: str, emitted: str) -> bool:
    """Whether ``text`` adds characters after the already streamed ``emitted`` prefix."""
    return len(text) > len(emitted) and text.startswith(emitted)


class _Decoder(Protocol):
    def decode(self, ids: list[int], skip_special_tokens: bool = ...) -> str: ...


def decode_until_stop(
    model: PreTrainedModel,
    rows: Sequence[Sequence[int]],
    choose: Callable[[torch.Tensor], torch.Tensor],
    *,
    budget: int,
    stop_ids: Iterable[int],
    pad_id: int,
    on_step: Callable[[list[list[int]]], None] | None = None,
    static_cache: bool | None = None,
    compile: CompileOption = False,
) -> tuple[list[list[int]], list[bool]]:
    """The text decode loop: continue left-padded ``rows`` until each draws a stop id or
    ``budget`` tokens are drawn.

    ``choose`` maps logits ``(R, V)`` to the next tokens ``(R,)``. Returns each row's new ids
    (without the stop id) and whether it stopped. ``on_step(generated)`` runs after every
    drawn token. Finished rows keep decoding a pad token; their output is no longer read.
    ``static_cache`` / ``compile``: as in :func:`sample_image_codes` (the cache holds the
    longest prompt plus ``budget`` tokens).
    """
    logits_fn = FullVocabLogits(model)
    stops = torch.tensor(sorted(set(stop_ids)), dtype=torch.long)
    generated: list[list[int]] = [[] for _ in rows]
    finished = torch.zeros(len(rows), dtype=torch.bool)  # (R,)
    static = _use_static(model, static_cache)
    with _inference(model):
        if static:
            slots = round_slots(max(len(r) for r in rows) + budget, context_length(model))
            engine = static_decoder(
                model, "text", len(rows), slots, lambda: (logits_fn, None), compile=compile
            )
            logits, positions = engine.prefill(rows, pad_id)

            def next_logits(tokens: torch.Tensor) -> torch.Tensor:
                nonlocal positions
                out = engine.step(tokens, positions)
                positions = positions + 1
                return out
        else:
            logits, state = prefill(model, rows, logits_fn, pad_id)

            def next_logits(tokens: torch.Tensor) -> torch.Tensor:
                return decode_one_token(tokens, state, logits_fn)

        for step in range(budget):
            tokens = choose(logits).cpu()  # (R,)
            finished |= torch.isin(tokens, stops)
            for r in torch.nonzero(~finished).flatten().tolist():
                generated[r].append(int(tokens[r]))
            if on_step is not None:
                on_step(generated)
            if bool(finished.all()) or step + 1 == budget:
                break
            tokens = tokens.masked_fill(finished, pad_id)
            logits = next_logits(tokens)
    return generated, finished.tolist()


def generate_text(
    model: PreTrainedModel,
    tokenizer: _Decoder,
    prompt_ids: Sequence[int],
    *,
    max_new_tokens: int = 256,
    greedy: bool = True,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 0,
    stop_ids: Iterable[int] = (),
    stream_callback: Callable[[str], None] | None = None,
    sampling: TextSampling | None = None,
    static_cache: bool | None = None,
    compile: CompileOption = False,
) -> TextGeneration:
    """Continue ``prompt_ids`` with ordinary decoding and a KV cache.

    ``greedy=True`` (the default, as in benchmarks) takes the argmax; otherwise temperature,
    top-k and top-p then a draw from a generator seeded with ``seed``. ``sampling`` (a
    :class:`TextSampling`) replaces those six keywords. Generation stops at the first id in
    ``stop_ids`` or after ``max_new_tokens`` (capped to the model's context). ``tokenizer``:
    anything with ``decode(ids, skip_special_tokens=True)`` (a transformers tokenizer or a
    ``tokenizers.Tokenizer``). ``stream_callback`` receives each new piece of text as soon as
    it decodes to complete characters. ``static_cache`` / ``compile``: see
    :func:`decode_until_stop`.
    """
    if sampling is None:
        sampled = {} if greedy else {"temperature": temperature, "top_k": top_k, "top_p": top_p}
        sampling = TextSampling(max_new_tokens=max_new_tokens, greedy=greedy, seed=seed, **sampled)
    prompt = list(prompt_ids)
    _check_ids([prompt], model.get_output_embeddings().out_features, "prompt")
    budget = text_budget(context_length(model), len(prompt), sampling.max_new_tokens)
    generator = torch.Generator().manual_seed(sampling.seed)
    emitted = ""

    def stream(generated: list[list[int]]) -> None:
        # Stream only the part before the first replacement character: an incomplete
        # UTF-8 sequence may still become a different character.
        nonlocal emitted
        if not generated[0]:
            return
        text = tokenizer.decode(generated[0], skip_special_tokens=True)
        stable = text.split(_REPLACEMENT_CHAR, 1)[0]
        if _extends(stable, emitted):
            stream_callback(stable[len(emitted) :])  # type: ignore[misc]  # set when used
            emitted = stable

    (generated,), (stopped,) = decode_until_stop(
        model,
        [prompt],
        lambda logits: sampling.choose(logits, generator),
        budget=budget,
        stop_ids=stop_ids,
        pad_id=_NO_PADDING,
        on_step=None if stream_callback is None else stream,
        static_cache=static_cache,
        compile=compile,
    )
    text = tokenizer.decode(generated, skip_special_tokens=True)
    if stream_callback is not None and _extends(text, emitted):
        stream_callback(text[len(emitted) :])
    return TextGeneration(
        token_ids=generated, text=text, finish_reason="stop" if stopped else "length"
    )


def greedy_texts(
    model: PreTrainedModel,
    rows: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    stop_ids: Iterable[int],
    pad_id: int,
    static_cache: bool | None = None,
    compile: CompileOption = False,
) -> list[list[int]]:
    """Greedy continuations of several prompts decoded together (left-padded, one KV cache),
    each row until its first stop id; the budget is capped to the context of the longest."""
    budget = text_budget(context_length(model), max(len(r) for r in rows), max_new_tokens)
    generated, _ = decode_until_stop(
        model, rows, argmax, budget=budget, stop_ids=stop_ids, pad_id=pad_id,
        static_cache=static_cache, compile=compile,
    )  # fmt: skip
    return generated
