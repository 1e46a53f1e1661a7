"""Liquid's sequence formats: every builder decoded back to its parts, with its loss mask."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from liquidgen.errors import CodeRangeError, ConfigError, ShapeError
from liquidgen.formats import (
    CAPTION_PROMPT,
    DEFAULT_T2I_SUFFIX,
    IGNORE_INDEX,
    T2I_SUFFIXES,
    Example,
    caption_example,
    caption_prompt_ids,
    chat_example,
    chat_prompt_ids,
    decode_example,
    t2i_example,
    t2i_prompt_ids,
    text_example,
    vqa_example,
    vqa_prompt_ids,
)
from liquidgen.model.text_tokenizer import train_text_tokenizer
from liquidgen.vocab import VocabLayout
from tiny_models import tiny_corpus

CODEBOOK = 64
CAPTION = "a red circle on the left of a blue square"
KINDS = ["gemma", "qwen2", "llama", "scratch"]


@pytest.fixture(scope="module")
def scratch() -> tuple:
    """A from-scratch BPE (plain chat template) with its layout; no model needed for formats."""
    tok = train_text_tokenizer(tiny_corpus(), vocab_size=400)
    layout = VocabLayout(
        image_offset=len(tok),
        codebook_size=CODEBOOK,
        boi_id=3,
        eoi_id=4,
        uncond_id=5,
        bos_id=1,
        eos_id=2,
        pad_id=0,
    )
    return tok, layout


@pytest.fixture
def setup(request: pytest.FixtureRequest, liquids: dict[str, Path], scratch: tuple) -> tuple:
    """(tokenizer, layout) for one of KINDS."""
    kind = request.param
    if kind == "scratch":
        return scratch
    return AutoTokenizer.from_pretrained(liquids[kind]), VocabLayout.load(liquids[kind])


def _codes(h: int = 3, w: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, CODEBOOK, (h, w), generator=torch.Generator().manual_seed(seed))


def _labelled(example: Example) -> list[int]:
    return [label for label in example.labels if label != IGNORE_INDEX]


def _first_label(example: Example) -> int:
    return next(k for k, label in enumerate(example.labels) if label != IGNORE_INDEX)


def _bos(layout: VocabLayout) -> list[int]:
    return [] if layout.bos_id is None else [layout.bos_id]


@pytest.mark.parametrize("setup", KINDS, indirect=True)
def test_t2i(setup: tuple) -> None:
    tok, layout = setup
    codes = _codes()
    ex = t2i_example(tok, layout, CAPTION, codes, rng=random.Random(0), cfg_dropout=0.0)
    assert ex.modality == "t2i" and len(ex.input_ids) == len(ex.labels)
    assert ex.input_ids[: len(_bos(layout))] == _bos(layout)
    boi = ex.input_ids.index(layout.boi_id)
    # No loss on bos, text and <boi>; loss on codes, <eoi>, <eos> (labels equal the inputs there).
    assert ex.labels[: boi + 1] == [IGNORE_INDEX] * (boi + 1)
    assert ex.labels[boi + 1 :] == ex.input_ids[boi + 1 :]
    assert _labelled(ex) == [
        *layout.codes_to_tokens(codes).flatten().tolist(),
        layout.eoi_id,
        layout.eos_id,
    ]
    decoded = decode_example(ex, tok, layout, grid=(3, 4))
    assert (decoded.text, decoded.suffix, decoded.size, decoded.unconditional) == (
        CAPTION,
        DEFAULT_T2I_SUFFIX,
        None,
        False,
    )
    assert torch.equal(decoded.codes, codes)
    # The inference prompts are exactly the training prefixes.
    cond, uncond = t2i_prompt_ids(tok, layout, CAPTION)
    assert cond == ex.input_ids[: boi + 1]
    assert uncond == [*_bos(layout), layout.uncond_id, layout.boi_id]


@pytest.mark.parametrize("setup", ["gemma", "qwen2"], indirect=True)
def test_t2i_size_prefix_and_suffixes(setup: tuple) -> None:
    tok, layout = setup  # downsample 4: a 16x12 image is a (3, 4) grid
    codes = _codes()
    ex = t2i_example(
        tok, layout, CAPTION, codes, rng=random.Random(1), cfg_dropout=0.0, size=(16, 12)
    )
    decoded = decode_example(ex, tok, layout)  # grid read from the size prefix
    assert (
        decoded.size == (16, 12) and decoded.text == CAPTION and torch.equal(decoded.codes, codes)
    )
    prefix = tok.decode(ex.input_ids[len(_bos(layout)) : ex.input_ids.index(layout.boi_id)])
    assert prefix.startswith("Image Size: Width is 16 Height is 12. " + CAPTION)
    assert (
        t2i_prompt_ids(tok, layout, CAPTION, size=(16, 12))[0]
        == ex.input_ids[: ex.input_ids.index(layout.boi_id) + 1]
    )
    with pytest.raises(ShapeError, match="needs a"):
        t2i_example(tok, layout, CAPTION, codes, rng=random.Random(0), size=(12, 16))
    rng = random.Random(2)
    seen = {
        decode_example(
            t2i_example(tok, layout, "x", codes, rng=rng, cfg_dropout=0.0, suffixes=T2I_SUFFIXES),
            tok,
            layout,
            grid=(3, 4),
        ).suffix
        for _ in range(40)
    }
    assert seen == set(T2I_SUFFIXES)


@pytest.mark.parametrize("setup", ["gemma", "qwen2"], indirect=True)
def test_t2i_cfg_dropout(setup: tuple) -> None:
    tok, layout = setup
    codes = _codes(2, 2)
    rng = random.Random(0)
    draws = 4000
    examples = [t2i_example(tok, layout, CAPTION, codes, rng=rng) for _ in range(draws)]
    dropped = [ex for ex in examples if layout.uncond_id in ex.input_ids]
    # Binomial(4000, 0.1): std 19, so +-60 is a 3-sigma band.
    assert abs(len(dropped) - 0.1 * draws) < 60
    ex = dropped[0]
    assert ex.input_ids[: len(_bos(layout)) + 2] == [*_bos(layout), layout.uncond_id, layout.boi_id]
    assert _labelled(ex) == [
        *layout.codes_to_tokens(codes).flatten().tolist(),
        layout.eoi_id,
        layout.eos_id,
    ]
    decoded = decode_example(ex, tok, layout)
    assert decoded.unconditional and decoded.text == "" and torch.equal(decoded.codes, codes)
    assert (
        t2i_prompt_ids(tok, layout, CAPTION)[1]
        == ex.input_ids[: ex.input_ids.index(layout.boi_id) + 1]
    )
    never = [t2i_example(tok, layout, CAPTION, codes, rng=rng, cfg_dropout=0.0) for _ in range(200)]
    assert not any(layout.uncond_id in ex.input_ids for ex in never)


@pytest.mark.parametrize("setup", KINDS, indirect=True)
def test_caption(setup: tuple) -> None:
    tok, layout = setup
    codes = _codes(4, 4)
    ex = caption_example(tok, layout, codes, " " + CAPTION)
    n_img = 16 + 2
    assert ex.input_ids[: len(_bos(layout)) + n_img] == [
        *_bos(layout),
        layout.boi_id,
        *layout.codes_to_tokens(codes).flatten().tolist(),
        layout.eoi_id,
    ]
    # Loss only on the caption and <eos>: the image and the fixed prompt carry none.
    start = _first_label(ex)
    assert tok.decode(ex.input_ids[len(_bos(layout)) + n_img : start]) == CAPTION_PROMPT
    assert ex.labels[start:] == ex.input_ids[start:] and ex.input_ids[-1] == layout.eos_id
    assert tok.decode(_labelled(ex)[:-1]) == " " + CAPTION
    decoded = decode_example(ex, tok, layout)
    assert decoded.answers == [" " + CAPTION] and torch.equal(decoded.codes, codes)
    assert caption_prompt_ids(tok, layout, codes) == ex.input_ids[:start]


@pytest.mark.parametrize("setup", KINDS, indirect=True)
def test_text(setup: tuple) -> None:
    tok, layout = setup
    doc = " ".join(tiny_corpus()[:30])
    ex = text_example(tok, layout, doc)
    assert ex.labels == ex.input_ids  # loss everywhere
    assert ex.input_ids[-1] == layout.eos_id
    assert decode_example(ex, tok, layout).text == doc
    short = text_example(tok, layout, doc, max_len=16)
    assert len(short.input_ids) == 16 and short.input_ids == ex.input_ids[:16]


@pytest.mark.parametrize("setup", KINDS, indirect=True)
def test_vqa(setup: tuple) -> None:
    tok, layout = setup
    codes = _codes()
    question, answer = "What colour is the circle?", "It is red."
    ex = vqa_example(tok, layout, codes, question, answer)
    assert ex.modality == "vqa"
    boi, eoi = ex.input_ids.index(layout.boi_id), ex.input_ids.index(layout.eoi_id)
    assert ex.input_ids[boi + 1 : eoi] == layout.codes_to_tokens(codes).flatten().tolist()
    # The image comes before the question, inside the user turn, and carries no loss.
    assert tok.decode(ex.input_ids[eoi + 1 :]).startswith(question)
    start = _first_label(ex)
    assert start > eoi
    # Loss on the answer and its end-of-turn token only (trailing template whitespace excluded).
    labelled = _labelled(ex)
    # (the plain template writes "ASSISTANT: {answer}", so the answer there starts with a space)
    assert tok.decode(labelled, skip_special_tokens=True).strip() == answer
    assert tok.added_tokens_decoder[labelled[-1]].special  # the end-of-turn token
    assert all(label == IGNORE_INDEX for label in ex.labels[start + len(labelled) :])
    decoded = decode_example(ex, tok, layout, grid=(3, 4))
    assert (
        [a.strip() for a in decoded.answers] == [answer]
        and question in decoded.text
        and torch.equal(decoded.codes, codes)
    )
    assert vqa_prompt_ids(tok, layout, codes, question) == ex.input_ids[:start]


@pytest.mark.parametrize("setup", KINDS, indirect=True)
def test_multi_turn_chat(setup: tuple) -> None:
    tok, layout = setup
    messages = [
        {"role": "user", "content": "Hi there."},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Name a shape."},
        {"role": "assistant", "content": "A star."},
    ]
    ex = chat_example(tok, layout, messages)
    assert ex.modality == "chat" and layout.boi_id not in ex.input_ids
    decoded = decode_example(ex, tok, layout)
    assert [a.strip() for a in decoded.answers] == ["Hello!", "A star."] and decoded.codes is None
    assert "Hi there." in decoded.text and "Name a shape." in decoded.text
    # The prompt for the second answer is the training sequence up to that answer.
    spans = [
        k
        for k in range(len(ex.labels))
        if ex.labels[k] != IGNORE_INDEX and ex.labels[k - 1] == IGNORE_INDEX
    ]
    assert chat_prompt_ids(tok, layout, messages[:3]) == ex.input_ids[: spans[1]]
    # A rendered template and our ids agree: same text, image aside.
    rendered = tok.apply_chat_template(messages, tokenize=False) if tok.chat_template else None
    if rendered is not None:
        assert tok.decode(ex.input_ids) == rendered


@pytest.mark.parametrize("setup", ["qwen2"], indirect=True)
def test_plain_template_for_base_models(setup: tuple) -> None:
    tok, layout = setup
    base = copy.deepcopy(tok)
    base.chat_template = None  # a base model without a chat template
    ex = vqa_example(base, layout, _codes(), "What is it?", "A square.")
    text = base.decode(ex.input_ids[ex.input_ids.index(layout.eoi_id) + 1 :])
    assert text == "What is it?\nASSISTANT: A square." + base.eos_token
    assert base.decode(_labelled(ex)) == " A square." + base.eos_token
    assert decode_example(ex, base, layout, grid=(3, 4)).answers == [" A square."]


@pytest.mark.parametrize("setup", ["gemma"], indirect=True)
def test_special_strings_in_text_stay_text(setup: tuple) -> None:
    tok, layout = setup
    caption = "a <eos> sign and a <boi> mark"
    ex = t2i_example(tok, layout, caption, _codes(), rng=random.Random(0), cfg_dropout=0.0)
    assert ex.input_ids.count(layout.eos_id) == 1 and ex.input_ids.count(layout.boi_id) == 1
    assert decode_example(ex, tok, layout, grid=(3, 4)).text == caption


@pytest.mark.parametrize("setup", ["gemma"], indirect=True)
def test_errors(setup: tuple) -> None:
    tok, layout = setup
    rng = random.Random(0)
    with pytest.raises(ShapeError, match=r"\(h, w\)"):
        t2i_example(tok, layout, CAPTION, torch.arange(4), rng=rng)
    with pytest.raises(CodeRangeError):
        caption_example(tok, layout, torch.full((2, 2), CODEBOOK), CAPTION)
    with pytest.raises(ConfigError, match="end with an assistant"):
        chat_example(tok, layout, [{"role": "user", "content": "hi"}])
    with pytest.raises(ConfigError, match="role"):
        chat_example(
            tok, layout, [{"role": "robot", "content": "hi"}, {"role": "assistant", "content": "x"}]
        )
    with pytest.raises(ConfigError, match="end with a user"):
        chat_prompt_ids(tok, layout, [{"role": "assistant", "content": "hi"}])
    with pytest.raises(ConfigError, match="cfg_dropout"):
        t2i_example(tok, layout, CAPTION, _codes(), rng=rng, cfg_dropout=1.5)
    ex = t2i_example(tok, layout, CAPTION, _codes(3, 4), rng=rng, cfg_dropout=0.0)
    with pytest.raises(ShapeError, match="not a square grid"):
        decode_example(ex, tok, layout)
    no_eos = VocabLayout(
        image_offset=512, codebook_size=CODEBOOK, boi_id=7, eoi_id=8, uncond_id=9, bos_id=2
    )
    with pytest.raises(ConfigError, match="end-of-sequence"):
        text_example(tok, no_eos, "hello")
