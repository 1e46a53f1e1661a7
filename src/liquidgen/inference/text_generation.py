"""Text decoding: one loop (:func:`decode_until_stop`) that continues left-padded rows until
each draws a stop id, and its two entry points, :func:`generate_text` (one prompt, sampled or
greedy, streamed) and :func:`greedy_texts` (a batch of prompts, greedy).

:class:`TextStream` turns the growing list of generated ids into streamed pieces of text; the
single path and the server (:mod:`liquidgen.serving.engine`) both stream through it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Literal, Protocol

import torch
from transformers import PreTrainedModel

from liquidgen.inference.decoding import FullVocabLogits, check_ids, inference, start_decoding
from liquidgen.inference.request import context_length, text_budget
from liquidgen.inference.sampling import TextSampling
from liquidgen.inference.sampling import greedy as argmax
from liquidgen.inference.static import CompileOption, use_static

# A single prompt is never padded; the id only fills the (unused) padding argument.
NO_PADDING = 0
# Incomplete UTF-8 at the end of a partial decode shows up as this character; hold it back.
REPLACEMENT_CHAR = "\ufffd"

StreamFn = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class TextGeneration:
    """The result of :func:`generate_text`."""

    token_ids: list[int]  # generated ids, without the prompt and without the stop id
    text: str  # token_ids decoded, special tokens skipped
    finish_reason: Literal["stop", "length"]  # a stop id was drawn / the token budget ran out


class _Decoder(Protocol):
    def decode(self, ids: list[int], skip_special_tokens: bool = ...) -> str: ...


# --------------------------------------------------------------------------- streaming
class TextStream:
    """Streams the text of a growing list of generated ids to ``emit``, a piece as soon as it
    decodes to complete characters.

    :meth:`update` holds back everything from the first replacement character on (an
    incomplete UTF-8 sequence may still become a different character); :meth:`finish` sends
    the rest of the final text and returns it.
    """

    def __init__(self, tokenizer: _Decoder, emit: StreamFn) -> None:
        self.tokenizer = tokenizer
        self.emit = emit
        self.emitted = ""  # decoded text already streamed

    def update(self, ids: list[int]) -> None:
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        self._send(text.split(REPLACEMENT_CHAR, 1)[0])

    def finish(self, ids: list[int]) -> str:
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        self._send(text)
        return text

    def _send(self, text: str) -> None:
        """Emit what ``text`` adds after the already streamed prefix."""
        if len(text) > len(self.emitted) and text.startswith(self.emitted):
            self.emit(text[len(self.emitted) :])
            self.emitted = text


def strip_leading(emit: StreamFn) -> StreamFn:
    """``emit`` without the leading whitespace of the stream, so the streamed text starts like
    the stripped reply (:meth:`Pipeline.chat <liquidgen.inference.pipeline.Pipeline.chat>` and
    the server return replies stripped)."""
    started = False

    def send(piece: str) -> None:
        nonlocal started
        if not started:
            piece = piece.lstrip()
            started = bool(piece)
        if piece:
            emit(piece)

    return send


# --------------------------------------------------------------------------- the loop
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
    ``static_cache`` / ``compile``: as in
    :func:`~liquidgen.inference.image_generation.sample_image_codes` (the cache holds the
    longest prompt plus ``budget`` tokens).
    """
    logits_fn = FullVocabLogits(model)
    stops = torch.tensor(sorted(set(stop_ids)), dtype=torch.long)
    generated: list[list[int]] = [[] for _ in rows]
    finished = torch.zeros(len(rows), dtype=torch.bool)  # (R,)
    static = use_static(model, static_cache)
    with inference(model):
        logits, step = start_decoding(
            model, rows, logits_fn, pad_id, static=static, kind="text", new_tokens=budget,
            compile=compile,
        )  # fmt: skip
        for i in range(budget):
            tokens = choose(logits).cpu()  # (R,)
            finished |= torch.isin(tokens, stops)
            for r in torch.nonzero(~finished).flatten().tolist():
                generated[r].append(int(tokens[r]))
            if on_step is not None:
                on_step(generated)
            if bool(finished.all()) or i + 1 == budget:
                break
            tokens = tokens.masked_fill(finished, pad_id)
            logits = step(tokens)
    return generated, finished.tolist()


# --------------------------------------------------------------------------- entry points
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
    stream_callback: StreamFn | None = None,
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
    it decodes to complete characters (:class:`TextStream`). ``static_cache`` / ``compile``:
    see :func:`decode_until_stop`.
    """
    if sampling is None:
        sampled = {} if greedy else {"temperature": temperature, "top_k": top_k, "top_p": top_p}
        sampling = TextSampling(max_new_tokens=max_new_tokens, greedy=greedy, seed=seed, **sampled)
    prompt = list(prompt_ids)
    check_ids([prompt], model.get_output_embeddings().out_features, "prompt")
    budget = text_budget(context_length(model), len(prompt), sampling.max_new_tokens)
    generator = torch.Generator().manual_seed(sampling.seed)
    stream = None if stream_callback is None else TextStream(tokenizer, stream_callback)

    def on_step(generated: list[list[int]]) -> None:
        if generated[0]:
            stream.update(generated[0])  # type: ignore[union-attr]  # set when used

    (generated,), (stopped,) = decode_until_stop(
        model,
        [prompt],
        lambda logits: sampling.choose(logits, generator),
        budget=budget,
        stop_ids=stop_ids,
        pad_id=NO_PADDING,
        on_step=None if stream is None else on_step,
        static_cache=static_cache,
        compile=compile,
    )
    if stream is not None:
        text = stream.finish(generated)
    else:
        text = tokenizer.decode(generated, skip_special_tokens=True)
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
