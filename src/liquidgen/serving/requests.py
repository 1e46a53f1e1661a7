"""A request body in, an engine job out: the body read within its size limit, then checked
against the server's limits (:mod:`liquidgen.serving.schemas`) and the checkpoint (the
pipeline's own checks, :mod:`liquidgen.inference.request`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import Request

from liquidgen.errors import LiquidgenError
from liquidgen.serving import schemas
from liquidgen.serving.jobs import ImageJob, TextJob
from liquidgen.serving.schemas import ApiError, bad

if TYPE_CHECKING:
    from liquidgen.serving.state import ServerState


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 above ``limit`` bytes (before reading it all)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise bad("invalid Content-Length header") from None
        if size > limit:
            raise ApiError(413, f"the body is {size} bytes; the limit is {limit} bytes")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise ApiError(413, f"the body is above the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def image_job(state: ServerState, body: schemas.ImagesBody) -> tuple[ImageJob, int]:
    """Check an images request against the checkpoint -> the engine job and its seed."""
    from liquidgen.utils.limits import check_image_pixels

    s = state.settings
    schemas.check_model(body.model, s)
    schemas.check_text(body.prompt, "prompt", s.max_prompt_chars)
    if body.n < 1 or body.n > s.max_n:
        raise bad(f"n must be an integer in [1, {s.max_n}], got {body.n}", "n")
    width, height = schemas.parse_size(body.size)
    seed = body.seed if body.seed is not None else schemas.new_seed()
    try:
        if width is not None and height is not None:
            check_image_pixels(width, height, "size")
        request = state.pipe.image_request(
            body.prompt,
            width=width,
            height=height,
            n=body.n,
            cfg_scale=body.cfg_scale,
            temperature=body.temperature,
            top_k=body.top_k,
            top_p=body.top_p,
            seed=seed,
        )
    except LiquidgenError as e:
        raise bad(str(e)) from None
    return ImageJob(sink=lambda _e: None, request=request), seed


def text_job(
    state: ServerState, body: schemas.ChatBody, messages: list[dict[str, str]], image: Any
) -> TextJob:
    """A chat request -> the engine job (encodes the image; runs in the VQGAN worker)."""
    from jinja2 import TemplateError

    from liquidgen.formats import chat_prompt_ids
    from liquidgen.inference.request import text_budget
    from liquidgen.inference.sampling import TextSampling

    s, pipe = state.settings, state.pipe
    limit = body.max_completion_tokens or body.max_tokens or min(256, s.max_tokens)
    if limit < 1 or limit > s.max_tokens:
        raise bad(
            f"max_tokens must be an integer in [1, {s.max_tokens}], got {limit}", "max_tokens"
        )
    try:
        if body.temperature == 0:  # OpenAI's "deterministic": greedy decoding
            sampling = TextSampling(max_new_tokens=limit)
        else:
            sampling = TextSampling.from_options(
                temperature=body.temperature,
                top_k=body.top_k,
                top_p=body.top_p,
                max_new_tokens=limit,
                seed=body.seed if body.seed is not None else schemas.new_seed(),
            )
        codes = None if image is None else pipe.encode_image(image)
        try:
            ids = chat_prompt_ids(pipe.tokenizer, pipe.layout, messages, codes=codes)
        except TemplateError as e:
            raise bad(f"the chat template refused the conversation: {e}") from None
        budget = text_budget(pipe.context_length, len(ids), sampling.max_new_tokens)
    except LiquidgenError as e:
        raise bad(str(e)) from None
    return TextJob(
        sink=lambda _e: None,
        prompt_ids=ids,
        sampling=sampling,
        budget=budget,
        stop_ids=frozenset(pipe.stop_ids),
    )
