"""Text-to-image decoding: Liquid's batched CFG sampler over the KV-cache machinery.

:func:`sample_image_codes` runs a resolved :class:`~liquidgen.inference.request.ImageRequest`
as it is; :func:`generate_image_tokens` takes raw prompt ids and checks them first.

The conditional prompts (``... <boi>``) and, when ``cfg_scale > 1``, the unconditional prompt
``<unconditional><boi>`` run as one batch through one forward per step. Prompts of different
lengths are left-padded (:func:`~liquidgen.inference.decoding.left_pad`). The token drawn for
an image is appended to its conditional row *and* its unconditional partner; exactly
``h * w`` tokens are drawn. By default only the image rows of the LM head are computed
(:class:`~liquidgen.inference.decoding.ImageRowLogits`): the distribution and the drawn tokens
are unchanged, and it saves the ``(V - codebook_size) / V`` text fraction of the head's FLOPs
and weight bytes per step: for Liquid-7B (Gemma-7B) 256000 of 264192 head rows, 1.57 of
1.62 GB in bf16, about 9% of the 17.1 GB a decode step reads; for a Qwen2.5-0.5B-based model
151936 of 160128 rows, 136M of the 501M weights a step reads (27%).

Seeds: image ``i`` (prompt ``p``, sample ``j``, ``i = p * n_per_prompt + j``) draws from its own
``torch.Generator`` seeded with ``seed + i``, one uniform number per token, so an image does not
depend on which other prompts share the batch: running prompt ``p`` alone with
``seed + p * n_per_prompt`` reproduces its images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import PreTrainedModel

from liquidgen.errors import ConfigError
from liquidgen.inference.decoding import (
    FullVocabLogits,
    ImageRowLogits,
    LogitsFn,
    ProgressFn,
    check_ids,
    decode_n_tokens,
    inference,
    start_decoding,
)
from liquidgen.inference.jacobi import jacobi_image_codes
from liquidgen.inference.request import ImageRequest, context_length
from liquidgen.inference.sampling import (
    DEFAULT_CFG_SCALE,
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_K,
    DEFAULT_TOP_P,
    ImageSampling,
    sample_from_probs,
)
from liquidgen.inference.static import (
    CompileOption,
    round_slots,
    static_decoder,
    supports_static_cache,
    use_static,
)
from liquidgen.vocab import VocabLayout

# Draft tokens a speculative Jacobi forward verifies (the paper's window length).
DEFAULT_JACOBI_WINDOW = 16
SPECULATIVE_CHOICES = ("jacobi",)
# KV cache + prefill activations one batched image decode may hold (images_per_forward).
DEFAULT_DECODE_MEMORY_MB = 2048
DECODE_MEMORY_ENV = "LIQUIDGEN_DECODE_MEMORY_MB"


# --------------------------------------------------------------------------- images per forward
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


# --------------------------------------------------------------------------- the sampler
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
    static = use_static(model, static_cache)
    if speculative is not None:
        per_forward = 1
    elif batch_images is not None:
        per_forward = max(1, min(batch_images, request.n_images))
    else:
        per_forward = images_per_forward(model, request)
    h, w = request.grid
    total = request.total_tokens
    codes = []
    with inference(model):
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


def _add_stats(stats: dict[str, int] | None, forwards: int, tokens: int) -> None:
    if stats is not None:
        stats["forwards"] = stats.get("forwards", 0) + forwards
        stats["tokens"] = stats.get("tokens", 0) + tokens


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

    logits, step = start_decoding(
        model, rows, logits_fn, layout.padding_id, static=static,
        kind=_engine_kind(layout, image_rows_only), new_tokens=n_tokens, compile=compile,
    )  # fmt: skip
    tokens = decode_n_tokens(logits, step, n_tokens, choose, progress)  # (R, h*w)
    _add_stats(stats, n_tokens, count * n_tokens)
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
        row_width=request.grid[1],  # new slots drafted as the code one row up
    )
    _add_stats(stats, forwards, n_tokens)
    return codes[None]


# --------------------------------------------------------------------------- from raw ids
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
    check_ids(prompts, vocab_size, "prompt")
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
