"""Liquid's sequence formats: how text and image codes become one training sequence.

Training examples (``labels`` aligned with ``input_ids``; the model shifts them, and
``-100`` means no loss):

==============  ==========================================================  =========================
modality        sequence                                                    loss on
==============  ==========================================================  =========================
``t2i``         ``<bos>{size}{caption}{suffix}<boi>{codes}<eoi><eos>``      codes, ``<eoi>``, ``<eos>``
``caption``     ``<bos><boi>{codes}<eoi>The caption of this image is:``     caption, ``<eos>``
                ``{caption}<eos>``
``text``        ``<bos>{document}<eos>`` truncated to ``max_len`` tokens    everything
``vqa``/        the backbone's chat template, the image inline as           assistant answers and
``chat``        ``<boi>{codes}<eoi>`` before the text of the first user     their end-of-turn token
                turn (:data:`PLAIN_CHAT_TEMPLATE` for base models)
==============  ==========================================================  =========================

``{suffix}`` is :data:`DEFAULT_T2I_SUFFIX` (the released model's) or one of
:data:`T2I_SUFFIXES`; ``{size}`` is the optional multi-ratio prefix ``"Image Size: Width
is {W} Height is {H}. "``. With probability ``cfg_dropout`` (10%) the whole text of a
T2I pair, size prefix included, becomes the single ``<unconditional>`` token
(classifier-free guidance). ``<bos>`` is written only when the backbone has one
(``layout.bos_id``; Qwen2 has none), in training and inference prompts alike, i.e.
exactly as the backbone's tokenizer adds it.

Tokenization boundaries: special tokens and image codes are inserted as ids, never
tokenized from strings; user text is tokenized with special-token parsing off (a caption
containing ``"<eos>"`` stays text). Adjacent plain-text parts (size prefix, caption,
suffix) are tokenized as one string, as the released model's scripts do; parts with
different loss (caption prompt vs. caption, prompt vs. answer) are tokenized
separately and the ids concatenated. Chat templates are rendered to text with a
placeholder where the image goes; the rendered pieces (template markup) are tokenized
with special-token parsing on, because the template writes its own specials.

:func:`decode_example` inverts every builder, which is how the tests check round trips
and masks. Inference prompts: :func:`t2i_prompt_ids`, :func:`caption_prompt_ids`,
:func:`vqa_prompt_ids`, :func:`chat_prompt_ids`.
"""

from __future__ import annotations

import dataclasses
import math
import random
import re
from collections.abc import Sequence

import torch
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from liquidgen.errors import ConfigError, ShapeError
from liquidgen.vocab import VocabLayout, special_token_ids

IGNORE_INDEX = -100  # label value without loss (PyTorch cross-entropy's ignore_index)
TEXT, T2I, CAPTION, VQA, CHAT = "text", "t2i", "caption", "vqa", "chat"
MODALITIES: tuple[str, ...] = (TEXT, T2I, CAPTION, VQA, CHAT)

DEFAULT_T2I_SUFFIX = " Generate an image based on this description."
# The released suffix first, then paraphrases a training mixture may draw from.
T2I_SUFFIXES: tuple[str, ...] = (
    DEFAULT_T2I_SUFFIX,
    " Generate an image according to this description.",
    " Create an image that matches this description.",
    " Draw a picture of the description above.",
)
CAPTION_PROMPT = "The caption of this image is:"
SIZE_PREFIX = "Image Size: Width is {width} Height is {height}. "
_SIZE_RE = re.compile(r"Image Size: Width is (\d+) Height is (\d+)\. ")
CFG_DROPOUT = 0.1  # fraction of T2I pairs whose text becomes <unconditional>
MAX_TEXT_LEN = 2048  # text documents are truncated to this many tokens
# Marks where the image goes inside a rendered chat template; never a real token.
IMAGE_PLACEHOLDER = "\x00liquidgen-image\x00"

# A chat template for base models that ship none (and for from-scratch tokenizers).
PLAIN_CHAT_TEMPLATE = (
    "{% if bos_token %}{{ bos_token }}{% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}\n\n"
    "{% elif message['role'] == 'user' %}USER: {{ message['content'] }}\n"
    "{% elif message['role'] == 'assistant' %}ASSISTANT: {{ message['content'] }}{{ eos_token }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)
_ROLES = ("system", "user", "assistant")


@dataclasses.dataclass
class Example:
    """One training sequence."""

    input_ids: list[int]
    labels: list[int]  # -100 where no loss
    modality: str  # "text" | "t2i" | "caption" | "vqa" | "chat"


@dataclasses.dataclass
class DecodedExample:
    """The parts an :class:`Example` was built from (see :func:`decode_example`)."""

    modality: str
    text: str  # input text: t2i caption / text document / chat prompt side ("" for captioning)
    codes: torch.Tensor | None  # (h, w) VQGAN codes of the image, if any
    answers: list[
        str
    ]  # target texts under loss: [caption] for captioning, assistant turns for chat
    suffix: str | None = None  # t2i instruction suffix
    size: tuple[int, int] | None = None  # (width, height) from the multi-ratio prefix
    unconditional: bool = False  # t2i text replaced by <unconditional>


# --------------------------------------------------------------------------- pieces
# user text: no bos/eos added, special-token strings in the text kept as text
_USER_TEXT = {"add_special_tokens": False, "split_special_tokens": True}


def encode_text(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """User text -> ids: no bos/eos added, special-token strings in ``text`` kept as text."""
    return list(tokenizer(text, **_USER_TEXT)["input_ids"])


def _encode_markup(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Rendered chat-template text -> ids, parsing the template's special tokens."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def _bos(layout: VocabLayout) -> list[int]:
    return [] if layout.bos_id is None else [layout.bos_id]


def _eos(layout: VocabLayout) -> int:
    if layout.eos_id is None:
        raise ConfigError("this format needs an end-of-sequence id, but the layout has none")
    return layout.eos_id


def image_ids(layout: VocabLayout, codes: torch.Tensor) -> list[int]:
    """``<boi>`` + the (h, w) code grid in raster order as image token ids + ``<eoi>``."""
    codes = torch.as_tensor(codes)
    if codes.dim() != 2 or codes.numel() == 0:
        raise ShapeError(f"codes must be a non-empty (h, w) grid, got shape {tuple(codes.shape)}")
    return [layout.boi_id, *layout.codes_to_tokens(codes).flatten().tolist(), layout.eoi_id]


def size_prefix(width: int, height: int) -> str:
    """The multi-ratio prompt prefix for an image of ``width`` x ``height`` pixels."""
    return SIZE_PREFIX.format(width=width, height=height)


def _t2i_text(caption: str, suffix: str, size: tuple[int, int] | None) -> str:
    return (size_prefix(*size) if size is not None else "") + caption + suffix


def _check_size(layout: VocabLayout, codes: torch.Tensor, size: tuple[int, int] | None) -> None:
    if size is not None and layout.grid(*size) != tuple(codes.shape):
        raise ShapeError(
            f"size {size[0]}x{size[1]} needs a {layout.grid(*size)} code grid, got {tuple(codes.shape)}"
        )


# --------------------------------------------------------------------------- builders
def t2i_example(
    tokenizer: PreTrainedTokenizerBase,
    layout: VocabLayout,
    caption: str,
    codes: torch.Tensor,
    *,
    rng: random.Random,
    cfg_dropout: float = CFG_DROPOUT,
    suffixes: Sequence[str] = (DEFAULT_T2I_SUFFIX,),
    size: tuple[int, int] | None = None,
) -> Example:
    """Text-to-image: ``<bos>{size}{caption}{suffix}<boi>{codes}<eoi><eos>``.

    Args:
        caption: the image description.
        codes: (h, w) int VQGAN codes.
        rng: draws the CFG dropout (first) and the suffix (second, if several).
        cfg_dropout: probability that the whole text becomes ``<unconditional>``.
        suffixes: instruction suffixes to choose from uniformly.
        size: ``(width, height)`` in pixels to write the multi-ratio prefix; must match
            the code grid.
    """
    if not 0.0 <= cfg_dropout <= 1.0:
        raise ConfigError(f"cfg_dropout must be in [0, 1], got {cfg_dropout}")
    if not suffixes:
        raise ConfigError("suffixes must not be empty")
    codes = torch.as_tensor(codes)
    _check_size(layout, codes, size)
    dropped = rng.random() < cfg_dropout
    suffix = suffixes[0] if len(suffixes) == 1 else rng.choice(list(suffixes))
    text = (
        [layout.uncond_id] if dropped else encode_text(tokenizer, _t2i_text(caption, suffix, size))
    )
    prompt = _bos(layout) + text
    image = image_ids(layout, codes)
    target = [*image[1:], _eos(layout)]  # codes, <eoi>, <eos>
    input_ids = prompt + image[:1] + target
    labels = [IGNORE_INDEX] * (len(prompt) + 1) + target
    return Example(input_ids, labels, T2I)


def caption_example(
    tokenizer: PreTrainedTokenizerBase, layout: VocabLayout, codes: torch.Tensor, caption: str
) -> Example:
    """Captioning: ``<bos><boi>{codes}<eoi>The caption of this image is:{caption}<eos>``."""
    prompt = _bos(layout) + image_ids(layout, codes) + encode_text(tokenizer, CAPTION_PROMPT)
    target = [*encode_text(tokenizer, caption), _eos(layout)]
    return Example(prompt + target, [IGNORE_INDEX] * len(prompt) + target, CAPTION)


def text_example(
    tokenizer: PreTrainedTokenizerBase,
    layout: VocabLayout,
    text: str,
    *,
    max_len: int = MAX_TEXT_LEN,
) -> Example:
    """Text: ``<bos>{document}<eos>`` cut to ``max_len`` tokens, loss everywhere."""
    return text_window(text_stream(tokenizer, layout, text), 0, max_len)


def text_stream(tokenizer: PreTrainedTokenizerBase, layout: VocabLayout, text: str) -> list[int]:
    """The whole ``<bos>{document}<eos>`` ids of a document, before any cut."""
    return _bos(layout) + encode_text(tokenizer, text) + [_eos(layout)]


def text_streams(
    tokenizer: PreTrainedTokenizerBase, layout: VocabLayout, texts: Sequence[str]
) -> list[list[int]]:
    """:func:`text_stream` of many documents in one batched tokenizer call."""
    if not texts:
        return []
    encoded = tokenizer(list(texts), **_USER_TEXT)["input_ids"]
    return [_bos(layout) + list(ids) + [_eos(layout)] for ids in encoded]


def text_window(stream: Sequence[int], start: int, max_len: int) -> Example:
    """The text example of the ``max_len`` ids from ``start`` of a :func:`text_stream`, loss
    everywhere (``start=0``: the document's beginning; see :func:`text_window_starts`)."""
    if max_len <= 0:
        raise ConfigError(f"max_len must be > 0, got {max_len}")
    if not 0 <= start < len(stream):
        raise ConfigError(f"window start {start} is outside the {len(stream)}-token document")
    ids = [int(i) for i in stream[start : start + max_len]]
    return Example(ids, list(ids), TEXT)


def text_window_starts(num_tokens: int, max_len: int) -> list[int]:
    """Starts of the ``max_len``-token windows that cover a ``num_tokens``-token text stream
    (``<bos>{document}<eos>``) once, without overlap; a last window of a single token (nothing
    to predict within it) is dropped."""
    if max_len <= 0:
        raise ConfigError(f"max_len must be > 0, got {max_len}")
    return [s for s in range(0, num_tokens, max_len) if s == 0 or num_tokens - s >= 2]


def _check_messages(messages: Sequence[dict[str, str]]) -> None:
    if not messages:
        raise ConfigError("a chat needs at least one message")
    for m in messages:
        if m.get("role") not in _ROLES or not isinstance(m.get("content"), str):
            raise ConfigError(
                f"chat messages need a role in {_ROLES} and string content, got {m!r}"
            )


def _with_image(messages: Sequence[dict[str, str]], has_image: bool) -> list[dict[str, str]]:
    """Copy of ``messages`` with the image placeholder before the first user turn's text."""
    out = [dict(m) for m in messages]
    if has_image:
        first_user = next((m for m in out if m["role"] == "user"), None)
        if first_user is None:
            raise ConfigError("an image needs a user turn to go in")
        first_user["content"] = IMAGE_PLACEHOLDER + first_user["content"]
    return out


def _render(
    tokenizer: PreTrainedTokenizerBase,
    messages: list[dict[str, str]],
    template: str | None,
    generation_prompt: bool,
) -> str:
    if not messages:
        return ""
    return tokenizer.apply_chat_template(
        messages,
        chat_template=template or tokenizer.chat_template or PLAIN_CHAT_TEMPLATE,
        tokenize=False,
        add_generation_prompt=generation_prompt,
    )


def _markup_ids(tokenizer: PreTrainedTokenizerBase, text: str, image: list[int]) -> list[int]:
    """Tokenize rendered template text, replacing the placeholder by the image ids."""
    pieces = text.split(IMAGE_PLACEHOLDER)
    if len(pieces) > 2:
        raise ConfigError("only one image per conversation is supported")
    ids = _encode_markup(tokenizer, pieces[0])
    if len(pieces) == 2:
        ids += image + _encode_markup(tokenizer, pieces[1])
    return ids


def _answer_labels(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> list[int]:
    """Loss on an assistant segment up to and including its last special token (the
    end-of-turn); template whitespace after it carries no loss."""
    special = special_token_ids(tokenizer)
    last = max((k for k, i in enumerate(ids) if i in special), default=len(ids) - 1)
    return ids[: last + 1] + [IGNORE_INDEX] * (len(ids) - last - 1)


def chat_example(
    tokenizer: PreTrainedTokenizerBase,
    layout: VocabLayout,
    messages: Sequence[dict[str, str]],
    *,
    codes: torch.Tensor | None = None,
    modality: str = CHAT,
    chat_template: str | None = None,
) -> Example:
    """A conversation in the backbone's chat template; loss only on assistant turns.

    Args:
        messages: ``[{"role": "system"|"user"|"assistant", "content": str}, ...]`` ending
            with an assistant turn.
        codes: optional (h, w) image, placed as ``<boi>{codes}<eoi>`` before the text of
            the first user turn.
        modality: ``"chat"`` or ``"vqa"`` (recorded on the example).
        chat_template: overrides the tokenizer's template (default: the tokenizer's, or
            :data:`PLAIN_CHAT_TEMPLATE` if it has none).

    The template is rendered once per assistant turn: ``render(turns before it,
    generation prompt)`` must be a prefix of ``render(turns up to it)``; the difference is
    the assistant segment. Templates that rewrite earlier turns raise ``ConfigError``.
    """
    if modality not in (CHAT, VQA):
        raise ConfigError(f"chat modality must be {CHAT!r} or {VQA!r}, got {modality!r}")
    _check_messages(messages)
    if messages[-1]["role"] != "assistant":
        raise ConfigError("a training conversation must end with an assistant turn")
    image = image_ids(layout, codes) if codes is not None else []
    msgs = _with_image(messages, codes is not None)
    input_ids: list[int] = []
    labels: list[int] = []
    done = ""
    for k, message in enumerate(msgs):
        if message["role"] != "assistant":
            continue
        prompt = _render(tokenizer, msgs[:k], chat_template, generation_prompt=True)
        full = _render(tokenizer, msgs[: k + 1], chat_template, generation_prompt=False)
        if not (prompt.startswith(done) and full.startswith(prompt)):
            raise ConfigError("the chat template does not render conversations incrementally")
        context = _markup_ids(tokenizer, prompt[len(done) :], image)
        answer = _encode_markup(tokenizer, full[len(prompt) :])
        input_ids += context + answer
        labels += [IGNORE_INDEX] * len(context) + _answer_labels(tokenizer, answer)
        done = full
    return Example(input_ids, labels, modality)


def vqa_example(
    tokenizer: PreTrainedTokenizerBase,
    layout: VocabLayout,
    codes: torch.Tensor,
    question: str,
    answer: str,
    *,
    chat_template: str | None = None,
) -> Example:
    """Visual question answering: one user turn (image + question), one assistant answer."""
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return chat_example(
        tokenizer, layout, messages, codes=codes, modality=VQA, chat_template=chat_template
    )


# --------------------------------------------------------------------------- inference prompts
def t2i_prompt_ids(
    tokenizer: PreTrainedTokenizerBase,
    layout: VocabLayout,
    prompt: str,
    *,
    suffix: str = DEFAULT_T2I_SUFFIX,
    size: tuple[int, int] | None = None,
) -> tuple[list[int], list[int]]:
    """The conditional ``<bos>{size}{prompt}{suffix}<boi>`` and unconditional
    ``<bos><unconditional><boi>`` prompts for classifier-free guidance."""
    if size is not None:
        layout.grid(*size)  # validates divisibility
    cond = _bos(layout) + encode_text(tokenizer, _t2i_text(prompt, suffix, size)) + [layout.boi_id]
    uncond = [*_bos(layout), layout.uncond_id, layout.boi_id]
    return cond, uncond


def caption_prompt_ids(
    tokenizer: PreTrainedTokenizerBase, layout: VocabLayout, codes: torch.Tensor
) -> list[int]:
    """``<bos><boi>{codes}<eoi>The caption of this image is:`` — the model continues with the caption."""
    return _bos(layout) + image_ids(layout, codes) + encode_text(tokenizer, CAPTION_PROMPT)


def chat_prompt_ids(
    tokenizer: PreTrainedTokenizerBase,
    layout: VocabLayout,
    messages: Sequence[dict[str, str]],
    *,
    codes: torch.Tensor | None = None,
    chat_template: str | None = None,
) -> list[int]:
    """Ids of a conversation ending with a user turn, plus the assistant generation prompt."""
    _check_messages(messages)
    if messages[-1]["role"] == "assistant":
        raise ConfigError("the conversation to answer must end with a user turn")
    image = image_ids(layout, codes) if codes is not None else []
    msgs = _with_image(messages, codes is not None)
    return _markup_ids(
        tokenizer, _render(tokenizer, msgs, chat_template, generation_prompt=True), image
    )


def turn_end_id(tokenizer: PreTrainedTokenizerBase) -> int | None:
    """The special token that closes an assistant turn in the tokenizer's chat template.

    Rendered once with a marker answer: the first special token after the marker is the
    end-of-turn (Gemma ``<end_of_turn>``, Qwen ``<|im_end|>``, Llama-3 ``<|eot_id|>``, the
    plain template's eos). ``None`` when the template writes none.
    """
    template = tokenizer.chat_template or PLAIN_CHAT_TEMPLATE
    marker = "liquidgen"
    user = [{"role": "user", "content": "?"}]
    prompt = tokenizer.apply_chat_template(
        user, chat_template=template, tokenize=False, add_generation_prompt=True
    )
    full = tokenizer.apply_chat_template(
        [*user, {"role": "assistant", "content": marker}], chat_template=template, tokenize=False
    )
    if not full.startswith(prompt) or marker not in full[len(prompt) :]:
        return None
    after = full[len(prompt) :].split(marker, 1)[1]
    specials = special_token_ids(tokenizer)
    ids = tokenizer(after, add_special_tokens=False)["input_ids"]
    return next((i for i in ids if i in specials), None)


def vqa_prompt_ids(
    tokenizer: PreTrainedTokenizerBase,
    layout: VocabLayout,
    codes: torch.Tensor,
    question: str,
    *,
    chat_template: str | None = None,
) -> list[int]:
    """Ids of one user turn (image + question) plus the assistant generation prompt."""
    messages = [{"role": "user", "content": question}]
    return chat_prompt_ids(tokenizer, layout, messages, codes=codes, chat_template=chat_template)


# --------------------------------------------------------------------------- decoding
def _image_span(example: Example, layout: VocabLayout) -> tuple[int, int] | None:
    """Positions of ``<boi>`` and ``<eoi>`` (at most one image); ``None`` without image."""
    ids = example.input_ids
    boi = [k for k, i in enumerate(ids) if i == layout.boi_id]
    eoi = [k for k, i in enumerate(ids) if i == layout.eoi_id]
    if not boi and not eoi:
        return None
    if len(boi) != 1 or len(eoi) != 1 or eoi[0] <= boi[0]:
        raise ShapeError(
            f"expected one <boi>...<eoi> span, found {len(boi)} <boi> and {len(eoi)} <eoi>"
        )
    return boi[0], eoi[0]


def _grid_codes(
    tokens: list[int], layout: VocabLayout, grid: tuple[int, int] | None
) -> torch.Tensor:
    codes = layout.tokens_to_codes(torch.tensor(tokens, dtype=torch.long))
    if grid is None:
        side = math.isqrt(len(tokens))
        if side * side != len(tokens):
            raise ShapeError(f"{len(tokens)} codes are not a square grid; pass grid=(h, w)")
        grid = (side, side)
    if grid[0] * grid[1] != len(tokens):
        raise ShapeError(f"{len(tokens)} codes do not fill a {grid} grid")
    return codes.view(grid)


def _spans(labels: list[int]) -> list[tuple[int, int]]:
    """Maximal [start, end) runs of labelled positions."""
    runs, start = [], None
    for k, label in enumerate([*labels, IGNORE_INDEX]):
        if label != IGNORE_INDEX and start is None:
            start = k
        elif label == IGNORE_INDEX and start is not None:
            runs.append((start, k))
            start = None
    return runs


def decode_example(
    example: Example,
    tokenizer: PreTrainedTokenizerBase,
    layout: VocabLayout,
    *,
    grid: tuple[int, int] | None = None,
    suffixes: Sequence[str] = T2I_SUFFIXES,
) -> DecodedExample:
    """Split an :class:`Example` back into the parts it was built from.

    Args:
        grid: ``(h, w)`` of the image; default: from the size prefix if present, else square.
        suffixes: T2I suffixes to recognise at the end of the text.
    """
    ids, labels = example.input_ids, example.labels
    if len(ids) != len(labels):
        raise ShapeError(f"input_ids ({len(ids)}) and labels ({len(labels)}) differ in length")
    span = _image_span(example, layout)
    bos = len(_bos(layout))

    def text_of(tokens: list[int]) -> str:
        return tokenizer.decode(tokens, skip_special_tokens=False)

    if example.modality == T2I:
        if span is None:
            raise ShapeError("a t2i example needs an image")
        boi, eoi = span
        prompt = ids[bos:boi]
        if prompt == [layout.uncond_id]:
            return DecodedExample(
                T2I, "", _grid_codes(ids[boi + 1 : eoi], layout, grid), [], unconditional=True
            )
        text = text_of(prompt)
        size = None
        if match := _SIZE_RE.match(text):
            size = (int(match[1]), int(match[2]))
            text = text[match.end() :]
            grid = grid or layout.grid(*size)
        suffix = next((s for s in suffixes if text.endswith(s)), None)
        if suffix is not None:
            text = text[: -len(suffix)]
        codes = _grid_codes(ids[boi + 1 : eoi], layout, grid)
        return DecodedExample(T2I, text, codes, [], suffix=suffix, size=size)
    if example.modality == CAPTION:
        if span is None:
            raise ShapeError("a caption example needs an image")
        boi, eoi = span
        target = [i for i, label in zip(ids, labels, strict=True) if label != IGNORE_INDEX]
        caption = text_of(target[:-1] if target and target[-1] == layout.eos_id else target)
        return DecodedExample(CAPTION, "", _grid_codes(ids[boi + 1 : eoi], layout, grid), [caption])
    if example.modality == TEXT:
        body = ids[bos:]
        if body and body[-1] == layout.eos_id:
            body = body[:-1]
        return DecodedExample(TEXT, text_of(body), None, [])
    if example.modality in (VQA, CHAT):
        codes = None
        keep = [True] * len(ids)
        if span is not None:
            boi, eoi = span
            codes = _grid_codes(ids[boi + 1 : eoi], layout, grid)
            keep[boi : eoi + 1] = [False] * (eoi + 1 - boi)
        context = [
            i for i, k, label in zip(ids, keep, labels, strict=True) if k and label == IGNORE_INDEX
        ]
        answers = [tokenizer.decode(ids[s:e], skip_special_tokens=True) for s, e in _spans(labels)]
        return DecodedExample(example.modality, text_of(context), codes, answers)
    raise ConfigError(f"unknown modality {example.modality!r}; expected one of {MODALITIES}")
