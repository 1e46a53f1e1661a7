"""Fast decoding paths (issue 18): static KV cache, multi-image batches, int8 weights.

Exact paths are checked for equality with the plain path (same seed -> same codes, same
greedy text); int8 for its rounding error. Speculative Jacobi decoding: test_jacobi.py.
"""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel

from liquidgen.errors import ConfigError
from liquidgen.inference.generation import (
    FullVocabLogits,
    ImageRowLogits,
    decode_one_token,
    generate_image_tokens,
    generate_text,
    greedy_texts,
    images_per_forward,
    prefill,
)
from liquidgen.inference.quantize import Int8Linear, quantize_int8, quantize_per_channel
from liquidgen.inference.request import ImageRequest
from liquidgen.inference.sampling import ImageSampling
from liquidgen.inference.static import (
    StaticDecoder,
    clear_engines,
    round_slots,
    supports_static_cache,
)

from .conftest import LAYOUT, UNCOND_PROMPT, tiny_model

BOI = LAYOUT.boi_id
PROMPTS = [[1, 20, 21, 22, 23, 24, BOI], [1, 30, BOI], [1, 40, 41, BOI]]
FLAT = dict(cfg_scale=3.0, temperature=1.0, top_k=0, top_p=1.0)
STATIC_KINDS = ["llama", "qwen2", "gemma", "cohere", "granite", "gpt2"]


def _codes(model: torch.nn.Module, **kwargs: object) -> torch.Tensor:
    common = dict(grid_hw=(3, 4), n_per_prompt=2, seed=11, **FLAT) | kwargs
    return generate_image_tokens(model, LAYOUT, PROMPTS, UNCOND_PROMPT, **common)


# --------------------------------------------------------------------------- static cache
@pytest.mark.parametrize("kind", STATIC_KINDS)
def test_static_cache_draws_the_same_codes_as_the_dynamic_cache(kind: str) -> None:
    model = tiny_model(kind)
    assert supports_static_cache(model)
    static = _codes(model, static_cache=True)
    dynamic = _codes(model, static_cache=False)
    assert static.shape == (6, 3, 4)
    assert torch.equal(static, dynamic)
    # Full-vocabulary logits through the static cache: the same codes too.
    full = _codes(model, static_cache=True, image_rows_only=False)
    assert torch.equal(full, dynamic)


@pytest.mark.parametrize("kind", ["qwen2", "gpt2"])
def test_static_cache_logits_equal_the_dynamic_cache(kind: str) -> None:
    model = tiny_model(kind)
    rows_fn = ImageRowLogits(model, LAYOUT)
    batch = [*PROMPTS, UNCOND_PROMPT]
    engine = StaticDecoder(model, len(batch), 64, rows_fn)
    with torch.inference_mode():
        dyn_logits, state = prefill(model, batch, rows_fn, LAYOUT.pad_id)
        st_logits, positions = engine.prefill(batch, LAYOUT.pad_id)
        for step in range(8):
            torch.testing.assert_close(st_logits, dyn_logits, atol=1e-5, rtol=1e-5)
            tokens = torch.full((len(batch),), LAYOUT.image_offset + 3 * step)
            dyn_logits = decode_one_token(tokens, state, rows_fn)
            st_logits = engine.step(tokens, positions)
            positions = positions + 1
    assert engine.length == len(PROMPTS[0]) + 8


def test_window_and_rewind_equal_one_token_steps() -> None:
    model = tiny_model("llama")
    rows_fn = ImageRowLogits(model, LAYOUT)
    batch = [PROMPTS[0], UNCOND_PROMPT]
    appended = LAYOUT.image_offset + torch.tensor([5, 9, 2, 7])
    with torch.inference_mode():
        one = StaticDecoder(model, 2, 64, rows_fn, window_fn=rows_fn.window)
        _, positions = one.prefill(batch, LAYOUT.pad_id)
        stepped = []
        for t in appended:
            stepped.append(one.step(t.expand(2), positions))
            positions = positions + 1
        win = StaticDecoder(model, 2, 64, rows_fn, window_fn=rows_fn.window)
        _, start = win.prefill(batch, LAYOUT.pad_id)
        window = win.window(appended.expand(2, -1), start[:, None] + torch.arange(4))
        for i in range(4):
            torch.testing.assert_close(window[:, i], stepped[i], atol=1e-5, rtol=1e-5)
        # Rewind 2 slots and feed other tokens: as if only the first two had been appended.
        win.rewind(2)
        other = LAYOUT.image_offset + torch.tensor([11, 12])
        again = win.window(other.expand(2, -1), start[:, None] + 2 + torch.arange(2))
        one.rewind(2)
        expected = one.step(other[0].expand(2), start + 2)
        torch.testing.assert_close(again[:, 0], expected, atol=1e-5, rtol=1e-5)


def test_sliding_window_models_keep_the_dynamic_cache() -> None:
    model = tiny_model("gemma2")
    assert not supports_static_cache(model)
    default = _codes(model)  # static_cache=None: falls back
    assert torch.equal(default, _codes(model, static_cache=False))
    with pytest.raises(ConfigError, match="static KV cache"):
        _codes(model, static_cache=True)


def test_round_slots() -> None:
    assert round_slots(10, None) == 64
    assert round_slots(64, None) == 64
    assert round_slots(65, 4096) == 128
    assert round_slots(100, 120) == 120  # not past the context
    assert round_slots(130, 128) == 192  # a request the context cannot hold is refused earlier


@pytest.fixture(scope="module")
def word_tokenizer() -> Tokenizer:
    vocab = {f"w{i}": i for i in range(LAYOUT.vocab_size)}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="w3"))
    tokenizer.add_special_tokens([f"w{i}" for i in range(10)])
    return tokenizer


@pytest.mark.parametrize("kind", ["qwen2", "llama"])
def test_text_through_the_static_cache_equals_the_dynamic_cache(
    kind: str, word_tokenizer: Tokenizer
) -> None:
    model = tiny_model(kind)
    prompt = [1, 20, 21, 22]
    static = generate_text(model, word_tokenizer, prompt, max_new_tokens=20, static_cache=True)
    dynamic = generate_text(model, word_tokenizer, prompt, max_new_tokens=20, static_cache=False)
    assert static == dynamic
    sampled = dict(greedy=False, temperature=1.3, top_k=20, top_p=0.9, seed=4, max_new_tokens=20)
    assert generate_text(
        model, word_tokenizer, prompt, static_cache=True, **sampled
    ) == generate_text(model, word_tokenizer, prompt, static_cache=False, **sampled)
    rows = [[1, 20, 21, 22], [1, 30], [1, 40, 41, 42, 43, 44]]
    batched = dict(max_new_tokens=10, stop_ids=[2], pad_id=LAYOUT.pad_id)
    assert greedy_texts(model, rows, static_cache=True, **batched) == greedy_texts(
        model, rows, static_cache=False, **batched
    )


def test_engines_are_reused_and_bounded() -> None:
    from liquidgen.inference import static

    model = tiny_model("qwen2")
    clear_engines(model)
    rows_fn = ImageRowLogits(model, LAYOUT)

    def engine(rows: int, reuse: bool | None = True) -> StaticDecoder:
        return static.static_decoder(model, "image", rows, 64, lambda: (rows_fn, None), reuse=reuse)

    first = engine(2)
    assert engine(2) is first  # same rows and slots: reused
    assert engine(2, reuse=None) is not first  # eager engines are not kept by default
    for rows in (4, 6, 8):
        engine(rows)
    assert len(static._engines[model]) == static.MAX_ENGINES_PER_MODEL
    assert engine(2) is not first  # the least recently used one was dropped
    clear_engines(model)
    assert model not in static._engines


# --------------------------------------------------------------------------- batching
def test_image_batches_give_the_same_codes_as_one_batch() -> None:
    model = tiny_model("qwen2")
    whole = _codes(model, batch_images=6)
    for size in (1, 2, 4):
        assert torch.equal(_codes(model, batch_images=size), whole), size
    seen: list[int] = []
    handle = model.get_decoder().register_forward_pre_hook(
        lambda _m, _a, kw: seen.append(kw["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        _codes(model, batch_images=4)
    finally:
        handle.remove()
    # head check (2 forwards of one row), then 4 images = 8 rows, then the other 2 = 4 rows
    assert seen[2] == 8 and seen[-1] == 4 and set(seen[2:]) == {8, 4}


def _request(n: int, grid: tuple[int, int] = (4, 4)) -> ImageRequest:
    return ImageRequest(
        prompts=("",),
        cond_ids=(tuple(PROMPTS[0]),),
        uncond_ids=tuple(UNCOND_PROMPT),
        width=grid[1] * LAYOUT.downsample,
        height=grid[0] * LAYOUT.downsample,
        grid=grid,
        n=n,
        seed=0,
        sampling=ImageSampling(),
    )


def test_images_per_forward_follows_the_batch_limit_and_the_memory_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = tiny_model("qwen2")
    assert images_per_forward(model, _request(3)) == 3  # never more than the request has
    monkeypatch.setenv("LIQUIDGEN_MAX_BATCH", "5")
    assert images_per_forward(model, _request(1000)) == 5
    monkeypatch.setenv("LIQUIDGEN_MAX_BATCH", "100000")
    monkeypatch.setenv("LIQUIDGEN_DECODE_MEMORY_MB", "1")
    fit = images_per_forward(model, _request(100000))
    assert 1 <= fit < 100000
    monkeypatch.setenv("LIQUIDGEN_DECODE_MEMORY_MB", "2")
    assert images_per_forward(model, _request(100000)) in (2 * fit, 2 * fit + 1)
    monkeypatch.setenv("LIQUIDGEN_DECODE_MEMORY_MB", "0.0001")
    assert images_per_forward(model, _request(100000)) == 1  # at least one image
    monkeypatch.setenv("LIQUIDGEN_DECODE_MEMORY_MB", "lots")
    with pytest.raises(ConfigError, match="LIQUIDGEN_DECODE_MEMORY_MB"):
        images_per_forward(model, _request(2))


def test_progress_counts_image_tokens_over_all_batches() -> None:
    model = tiny_model("qwen2")
    calls: list[tuple[int, int]] = []
    _codes(model, batch_images=4, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (6 * 12, 6 * 12)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert calls[0] == (4, 72)  # the first step of the first batch: 4 images, one token each


# --------------------------------------------------------------------------- int8
def test_per_channel_int8_rounding_error_is_at_most_half_a_step() -> None:
    torch.manual_seed(0)
    weight = torch.randn(48, 80) * torch.logspace(-3, 1, 48)[:, None]  # very different rows
    weight[5] = 0
    q, scale = quantize_per_channel(weight)
    assert q.dtype == torch.int8 and scale.shape == (48,)
    assert int(q.abs().max()) == 127
    error = (q.float() * scale[:, None] - weight).abs()
    assert bool((error <= scale[:, None] / 2 + 1e-12).all())
    assert bool((q[5] == 0).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_int8_linear_matches_its_dequantized_weight(dtype: torch.dtype) -> None:
    torch.manual_seed(1)
    linear = torch.nn.Linear(64, 96, bias=True).to(dtype)
    layer = Int8Linear(linear)
    x = torch.randn(3, 5, 64, dtype=dtype)
    y = layer(x)
    assert y.shape == (3, 5, 96) and y.dtype == dtype
    expected = torch.nn.functional.linear(x.float(), layer.dequantized(), linear.bias.float())
    # float32 activations go through the bfloat16 kernel on CPU: bf16 rounding of x
    torch.testing.assert_close(y.float(), expected, atol=0.05, rtol=0.02)
    close = torch.nn.functional.linear(x.float(), linear.weight.float(), linear.bias.float())
    torch.testing.assert_close(y.float(), close, atol=0.08, rtol=0.05)


def test_quantize_int8_replaces_the_decoder_linears_only() -> None:
    model = tiny_model("llama")
    reference = tiny_model("llama")
    replaced = quantize_int8(model)
    assert replaced == 2 * 7  # q, k, v, o, gate, up, down per layer
    assert isinstance(model.get_output_embeddings(), torch.nn.Linear)
    assert not any(
        isinstance(m, torch.nn.Linear) for m in model.get_decoder().modules()
    )  # every decoder linear is now int8
    ids = torch.tensor([PROMPTS[0]])
    with torch.inference_mode():
        ours = model(ids).logits
        theirs = reference(ids).logits
    scale = float(theirs.abs().max())
    assert float((ours - theirs).abs().max()) < 0.05 * scale
    codes = generate_image_tokens(model, LAYOUT, PROMPTS[:1], UNCOND_PROMPT, grid_hw=(2, 2))
    assert codes.shape == (1, 2, 2)


def test_unknown_options_are_refused() -> None:
    from liquidgen.inference.quantize import apply_quantization

    model = tiny_model("qwen2")
    with pytest.raises(ConfigError, match="unknown quantization"):
        apply_quantization(model, "int4")
    with pytest.raises(ConfigError, match="unknown speculative"):
        _codes(model, speculative="medusa")


def test_full_vocabulary_path_is_unchanged_by_the_static_default() -> None:
    """``FullVocabLogits`` through a static engine == the model's own last logits."""
    model = tiny_model("qwen2")
    full = FullVocabLogits(model)
    engine = StaticDecoder(model, 1, 64, full)
    with torch.inference_mode():
        logits, _ = engine.prefill([PROMPTS[0]], LAYOUT.pad_id)
        own = model(torch.tensor([PROMPTS[0]])).logits[:, -1]
    torch.testing.assert_close(logits, own, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_compiled_step_draws_the_same_codes_as_eager(recwarn: pytest.WarningsRecorder) -> None:
    """torch.compile of the one-token step (20-40 s of compilation): same codes, no fallback."""
    model = tiny_model("llama")
    eager = _codes(model, static_cache=True)
    compiled = _codes(model, static_cache=True, compile=True)
    assert torch.equal(compiled, eager)
    assert not [w for w in recwarn if "eagerly" in str(w.message)]  # no eager fallback
    clear_engines(model)


def test_a_failed_compilation_is_not_retried_by_later_engines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A step whose compilation fails falls back to eager with one warning, and the engines
    built after it (one per image) run eagerly at once instead of compiling again."""
    import liquidgen.inference.static as static

    attempts = []  # calls of a compiled function: each is a (failing) compilation

    def broken_compile(fn, **kwargs):
        def fail(*args):
            attempts.append(kwargs.get("mode"))
            raise RuntimeError("LoweringException: a kernel inductor cannot lower")

        return fail

    monkeypatch.setattr(static, "_COMPILE_FAILED", set())
    monkeypatch.setattr(torch, "compile", broken_compile)
    model = tiny_model("llama")
    eager = _codes(model, static_cache=True)
    clear_engines(model)
    with pytest.warns(RuntimeWarning, match="running it eagerly"):
        first = _codes(model, static_cache=True, compile=True)
    assert torch.equal(first, eager) and len(attempts) == 1
    clear_engines(model)
    again = _codes(model, static_cache=True, compile=True)  # new engines, same process
    assert torch.equal(again, eager) and len(attempts) == 1
    clear_engines(model)
