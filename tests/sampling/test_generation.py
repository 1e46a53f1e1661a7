"""KV-cached decoding on tiny random transformers models: CFG batching, image rows, text."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from transformers import LlamaForCausalLM

from liquidgen.errors import ConfigError
from liquidgen.inference.generation import (
    FullVocabLogits,
    ImageRowLogits,
    cache_kwargs,
    decode_one_token,
    generate_image_tokens,
    generate_text,
    left_pad,
    prefill,
)
from liquidgen.inference.sampling import image_code_probs

from .conftest import CODEBOOK, CONTEXT, LAYOUT, UNCOND_PROMPT, tiny_model

BOI = LAYOUT.boi_id
PROMPTS = [[1, 20, 21, 22, 23, 24, BOI], [1, 30, BOI], [1, 40, 41, BOI]]
# Flat-ish sampling so that different seeds visibly give different codes.
FLAT = dict(cfg_scale=3.0, temperature=1.0, top_k=0, top_p=1.0)


def _forward_calls(
    model: torch.nn.Module,
) -> tuple[list[torch.Tensor], torch.utils.hooks.RemovableHandle]:
    """Record the input_ids of every forward of the decoder stack."""
    seen: list[torch.Tensor] = []

    def hook(_module, _args, kwargs):  # type: ignore[no-untyped-def]
        seen.append(kwargs["input_ids"].clone())

    handle = model.get_decoder().register_forward_pre_hook(hook, with_kwargs=True)
    return seen, handle


@pytest.mark.parametrize("kind", ["llama", "qwen2", "gemma", "gemma2", "cohere", "granite"])
def test_image_rows_equal_full_vocabulary_logits_bit_for_bit(kind: str) -> None:
    model = tiny_model(kind)
    full, rows = FullVocabLogits(model), ImageRowLogits(model, LAYOUT)
    rows.verify(UNCOND_PROMPT)
    batch = [*PROMPTS, UNCOND_PROMPT]
    with torch.inference_mode():
        logits_full, state_full = prefill(model, batch, full, LAYOUT.pad_id)
        logits_rows, state_rows = prefill(model, batch, rows, LAYOUT.pad_id)
        for step in range(6):
            sliced = logits_full[:, LAYOUT.image_offset : LAYOUT.image_end]
            assert torch.equal(sliced, logits_rows), f"step {step}"
            cond, uncond = sliced[:3], sliced[3:].expand(3, -1)
            settings = dict(cfg_scale=7.0, temperature=0.99, top_k=16, top_p=0.96)
            assert torch.equal(
                image_code_probs(cond, uncond, **settings),
                image_code_probs(logits_rows[:3], logits_rows[3:].expand(3, -1), **settings),
            )
            tokens = torch.full((4,), LAYOUT.image_offset + step)
            logits_full = decode_one_token(tokens, state_full, full)
            logits_rows = decode_one_token(tokens, state_rows, rows)


@pytest.mark.parametrize("kind", ["llama", "qwen2", "gemma2"])
def test_image_rows_only_draws_the_same_codes(kind: str) -> None:
    model = tiny_model(kind)
    common = dict(grid_hw=(3, 4), n_per_prompt=2, seed=11, **FLAT)
    fast = generate_image_tokens(
        model, LAYOUT, PROMPTS, UNCOND_PROMPT, image_rows_only=True, **common
    )
    ref = generate_image_tokens(
        model, LAYOUT, PROMPTS, UNCOND_PROMPT, image_rows_only=False, **common
    )
    assert fast.shape == (6, 3, 4)
    assert torch.equal(fast, ref)


def test_unknown_head_post_processing_is_refused() -> None:
    class DoubledLogits(LlamaForCausalLM):
        def forward(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            out = super().forward(*args, **kwargs)
            out.logits = out.logits * 2
            return out

    source = tiny_model("llama")
    model = DoubledLogits(source.config).eval()
    model.load_state_dict(source.state_dict())
    with pytest.raises(ConfigError, match="image_rows_only=False"):
        generate_image_tokens(model, LAYOUT, PROMPTS[:1], UNCOND_PROMPT, grid_hw=(1, 2))
    codes = generate_image_tokens(
        model, LAYOUT, PROMPTS[:1], UNCOND_PROMPT, grid_hw=(1, 2), image_rows_only=False
    )
    assert codes.shape == (1, 1, 2)


def test_unhandled_soft_cap_is_caught_by_the_check() -> None:
    logits_fn = ImageRowLogits(tiny_model("gemma2"), LAYOUT)
    logits_fn.verify(UNCOND_PROMPT)
    logits_fn.softcap = None  # as if the Gemma-2 soft-cap were not applied
    with pytest.raises(ConfigError, match="do not reproduce"):
        logits_fn.verify(UNCOND_PROMPT)


@pytest.mark.parametrize("kind", ["qwen2", "gpt2"])
def test_kv_cache_decode_equals_full_recompute(kind: str) -> None:
    """Left-padded batched decoding with the cache == each sequence alone without a cache."""
    model = tiny_model(kind)
    full = FullVocabLogits(model)
    steps = 5
    torch.manual_seed(0)
    appended = torch.randint(LAYOUT.image_offset, LAYOUT.image_end, (len(PROMPTS), steps))
    with torch.inference_mode():
        logits, state = prefill(model, PROMPTS, full, LAYOUT.pad_id)
        cached = [logits]
        for i in range(steps):
            cached.append(decode_one_token(appended[:, i], state, full))
        cached_logits = torch.stack(cached, dim=1)  # (R, steps + 1, V)
        for r, prompt in enumerate(PROMPTS):
            sequence = torch.tensor([prompt + appended[r].tolist()])  # (1, T)
            recomputed = model(input_ids=sequence, use_cache=False).logits[0]  # (T, V)
            torch.testing.assert_close(
                cached_logits[r], recomputed[len(prompt) - 1 :], atol=1e-5, rtol=1e-5
            )


def test_cfg_batches_cond_and_uncond_rows_with_the_same_token(qwen: torch.nn.Module) -> None:
    seen, handle = _forward_calls(qwen)
    try:
        codes = generate_image_tokens(
            qwen, LAYOUT, PROMPTS[:2], UNCOND_PROMPT, grid_hw=(2, 3), **FLAT
        )
    finally:
        handle.remove()
    assert codes.shape == (2, 2, 3)
    # head check (the model's forward and the sliced path) + prefill + (h*w - 1) decode steps
    assert len(seen) == 2 + 1 + (2 * 3 - 1)
    prefill_ids = seen[2]
    assert prefill_ids.shape[0] == 4  # 2 cond rows + 2 uncond rows in one batch
    assert prefill_ids[2:, -2:].tolist() == [UNCOND_PROMPT] * 2
    fed = torch.cat(seen[3:], dim=1)  # (4, h*w - 1)
    assert torch.equal(fed[:2], fed[2:])  # the same token appended to each pair
    assert torch.equal(fed[:2] - LAYOUT.image_offset, codes.view(2, -1)[:, :-1])


def test_no_uncond_rows_without_guidance(qwen: torch.nn.Module) -> None:
    seen, handle = _forward_calls(qwen)
    try:
        generate_image_tokens(
            qwen, LAYOUT, PROMPTS[:2], UNCOND_PROMPT, grid_hw=(1, 2), cfg_scale=1.0
        )
    finally:
        handle.remove()
    assert [s.shape[0] for s in seen[2:]] == [2, 2]  # after the head check: no uncond rows


def test_seeded_generation_is_reproducible(qwen: torch.nn.Module) -> None:
    def run(seed: int) -> torch.Tensor:
        return generate_image_tokens(
            qwen, LAYOUT, PROMPTS[:1], UNCOND_PROMPT, grid_hw=(4, 4), seed=seed, **FLAT
        )

    first = run(5)
    assert torch.equal(first, run(5))
    assert not torch.equal(first, run(6))
    assert int(first.min()) >= 0 and int(first.max()) < CODEBOOK


def test_left_pad_positions_count_real_tokens_only() -> None:
    ids, mask, positions = left_pad([[5, 6, 7], [8]], pad_id=0, device=torch.device("cpu"))
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert positions[:, -1].tolist() == [2, 0]
    assert positions[0].tolist() == [0, 1, 2]


@pytest.mark.parametrize("kind", ["qwen2", "gpt2"])
def test_batched_prompts_match_each_prompt_alone(kind: str) -> None:
    """Prompts of different lengths, left-padded together, draw what each draws alone.

    Image ``p * n + j`` uses seed ``seed + p * n + j``, so prompt ``p`` alone reproduces its
    images with ``seed + p * n``.
    """
    model = tiny_model(kind)
    n = 2
    common = dict(grid_hw=(3, 3), n_per_prompt=n, **FLAT)
    together = generate_image_tokens(model, LAYOUT, PROMPTS, UNCOND_PROMPT, seed=100, **common)
    assert together.shape == (len(PROMPTS) * n, 3, 3)
    for p, prompt in enumerate(PROMPTS):
        alone = generate_image_tokens(
            model, LAYOUT, [prompt], UNCOND_PROMPT, seed=100 + p * n, **common
        )
        assert torch.equal(together[p * n : (p + 1) * n], alone), f"prompt {p}"
    # Samples of one prompt differ from each other (their own generators).
    assert not torch.equal(together[0], together[1])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(cond_ids=[[1, 20]]), "<boi>"),
        (dict(cond_ids=[[]]), "empty"),
        (dict(cond_ids=[[1, 10_000, BOI]]), "outside the vocabulary"),
        (dict(grid_hw=(12, 12)), "context"),
        (dict(grid_hw=(0, 4)), "grid"),
        (dict(n_per_prompt=0), "n_per_prompt"),
        (dict(temperature=0.0), "temperature"),
        (dict(top_p=1.2), "top_p"),
        (dict(top_k=-3), "top_k"),
        (dict(cfg_scale=-1.0), "cfg_scale"),
    ],
)
def test_bad_image_requests(qwen: torch.nn.Module, kwargs: dict, message: str) -> None:
    assert CONTEXT < 12 * 12
    args = dict(cond_ids=PROMPTS[:1], grid_hw=(2, 2)) | kwargs
    with pytest.raises(ConfigError, match=message):
        generate_image_tokens(qwen, LAYOUT, uncond_ids=UNCOND_PROMPT, **args)


def test_progress_reports_every_token(qwen: torch.nn.Module) -> None:
    calls: list[tuple[int, int]] = []
    generate_image_tokens(
        qwen, LAYOUT, PROMPTS[:1], UNCOND_PROMPT, grid_hw=(2, 2),
        progress=lambda done, total: calls.append((done, total)),
    )  # fmt: skip
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


@pytest.fixture(scope="module")
def word_tokenizer() -> Tokenizer:
    """Token ``i`` decodes to the word ``w{i}``; 0-9 are special (skipped)."""
    vocab = {f"w{i}": i for i in range(LAYOUT.vocab_size)}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="w3"))
    tokenizer.add_special_tokens([f"w{i}" for i in range(10)])
    return tokenizer


def test_greedy_text_matches_transformers_generate(
    qwen: torch.nn.Module, word_tokenizer: Tokenizer
) -> None:
    prompt = [1, 20, 21, 22]
    streamed: list[str] = []
    result = generate_text(
        qwen, word_tokenizer, prompt, max_new_tokens=12, stream_callback=streamed.append
    )
    with torch.inference_mode():
        expected = qwen.generate(
            torch.tensor([prompt]), max_new_tokens=12, do_sample=False, min_new_tokens=12,
            eos_token_id=None, pad_token_id=LAYOUT.pad_id,
        )[0, len(prompt) :].tolist()  # fmt: skip
    assert result.token_ids == expected
    assert result.finish_reason == "length"
    assert result.text == word_tokenizer.decode(expected, skip_special_tokens=True)
    assert "".join(streamed) == result.text
    assert len(streamed) > 1  # pieces arrive as they are produced


def test_text_stops_at_a_stop_id(qwen: torch.nn.Module, word_tokenizer: Tokenizer) -> None:
    prompt = [1, 20, 21, 22]
    free = generate_text(qwen, word_tokenizer, prompt, max_new_tokens=8)
    stop = free.token_ids[3]
    stopped = generate_text(qwen, word_tokenizer, prompt, max_new_tokens=8, stop_ids=[stop])
    cut = free.token_ids.index(stop)
    assert stopped.token_ids == free.token_ids[:cut]
    assert stopped.finish_reason == "stop"


def test_sampled_text_is_seeded_and_capped_to_the_context(
    qwen: torch.nn.Module, word_tokenizer: Tokenizer
) -> None:
    prompt = [1] + [20 + i % 50 for i in range(CONTEXT - 5)]
    settings = dict(greedy=False, temperature=1.5, top_k=50, top_p=0.95, max_new_tokens=50)
    a = generate_text(qwen, word_tokenizer, prompt, seed=1, **settings)
    b = generate_text(qwen, word_tokenizer, prompt, seed=1, **settings)
    assert a.token_ids == b.token_ids
    assert len(a.token_ids) == 4  # the context allows 4 more tokens
    short = [1, 20]
    runs = {
        tuple(generate_text(qwen, word_tokenizer, short, seed=s, **settings).token_ids)
        for s in range(3)
    }
    assert len(runs) > 1
    with pytest.raises(ConfigError, match="context"):
        generate_text(qwen, word_tokenizer, [1] * CONTEXT)
    with pytest.raises(ConfigError, match="temperature"):
        generate_text(qwen, word_tokenizer, short, greedy=False, temperature=0.0)


def test_cache_keyword_follows_the_forward_signature() -> None:
    class NewName(torch.nn.Module):
        def forward(self, input_ids: torch.Tensor, cache: object = None) -> None: ...

    class OldName(torch.nn.Module):
        def forward(self, input_ids: torch.Tensor, past_key_values: object = None) -> None: ...

    class Wrapper(NewName):  # names neither: its base decides
        def forward(self, *args: object, **kwargs: object) -> None: ...

    assert cache_kwargs(NewName(), None) == {"cache": None}
    assert cache_kwargs(OldName(), None) == {"past_key_values": None}
    assert cache_kwargs(Wrapper(), None) == {"cache": None}
