"""Engine events out to HTTP: JSON bodies, server-sent events, PNG images.

:class:`ChannelSink` hands the engine's events (scheduler thread) to the request's coroutine
on the event loop, noticing when the client goes away (:class:`ClientGone`, the job is
cancelled); :func:`stream_images` and :func:`stream_chat` turn them into server-sent events
in OpenAI's shapes; :func:`decode_png` (PNG encoding) runs in the worker thread.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import Request

from liquidgen.serving.jobs import (
    Event,
    Failed,
    Finished,
    ImageCodes,
    ImageJob,
    Progress,
    TextDone,
    TextJob,
    TextPiece,
)
from liquidgen.serving.schemas import ApiError

if TYPE_CHECKING:
    from liquidgen.serving.state import ServerState

DISCONNECT_POLL = 0.25  # seconds between checks that a waiting client is still there
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class ChannelSink:
    """An engine sink that hands events to an asyncio queue on the app's loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[Event] = asyncio.Queue()

    def __call__(self, event: Event) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
            self.loop.call_soon_threadsafe(self.queue.put_nowait, event)

    async def next(self, request: Request | None, job: Any) -> Event:
        """The next event; cancels ``job`` and raises :class:`ClientGone` if the client left."""
        while True:
            try:
                return await asyncio.wait_for(self.queue.get(), DISCONNECT_POLL)
            except TimeoutError:
                if request is not None and await request.is_disconnected():
                    job.cancel()
                    raise ClientGone from None


class ClientGone(Exception):
    """The client disconnected while waiting; its job is cancelled and nothing is sent."""


def failed_error(event: Failed) -> ApiError:
    kind = "timeout" if event.status == 504 else event.kind
    return ApiError(event.status, event.message, type=kind)


def png_b64(image: Any) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def sse(data: Any) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


def model_card(state: ServerState) -> dict[str, Any]:
    pipe, s = state.pipe, state.settings
    d = pipe.defaults
    return {
        "id": s.model_id,
        "object": "model",
        "created": state.started,
        "owned_by": "liquidgen",
        "liquidgen": {
            "default_size": f"{d.width}x{d.height}",
            "trained_sizes": [f"{w}x{h}" for w, h in d.buckets] or [f"{d.width}x{d.height}"],
            "factor": pipe.layout.downsample,
            "context_length": pipe.context_length,
            "max_n": s.max_n,
            "max_tokens": s.max_tokens,
            "max_prompt_chars": s.max_prompt_chars,
            "max_body_bytes": s.max_body_bytes,
            "image_defaults": {
                "cfg_scale": d.cfg_scale,
                "temperature": d.temperature,
                "top_k": d.top_k,
                "top_p": d.top_p,
            },
        },
    }


def decode_png(pipe: Any, event: ImageCodes) -> str:
    """A finished image -> base64 PNG (worker thread). The engine's decoded picture when it
    sent one; else the codes ``(h, w)`` are decoded here, one image at a time as the
    Pipeline decodes."""
    image = event.image if event.image is not None else pipe.decode_codes(event.codes[None])[0]
    return png_b64(image)


def usage_of(done: TextDone) -> dict[str, int]:
    return {
        "prompt_tokens": done.prompt_tokens,
        "completion_tokens": done.completion_tokens,
        "total_tokens": done.prompt_tokens + done.completion_tokens,
    }


async def stream_images(
    state: ServerState, request: Request, job: ImageJob, sink: ChannelSink, seed: int, size: str
) -> AsyncIterator[bytes]:
    """SSE: ``image_generation.progress`` events, one ``image_generation.completed`` per image,
    then ``[DONE]``; an error as ``{"error": ...}``."""
    loop = asyncio.get_running_loop()
    pending: list[tuple[int, asyncio.Future]] = []
    try:
        while True:
            event = await sink.next(request, job)
            if isinstance(event, Progress):
                yield sse(
                    {"type": "image_generation.progress", "done": event.done, "total": event.total}
                )
            elif isinstance(event, ImageCodes):
                future = loop.run_in_executor(state.vq_pool, decode_png, state.pipe, event)
                yield sse(
                    {
                        "type": "image_generation.completed",
                        "index": event.index,
                        "b64_json": await future,
                        "seed": seed + event.index,
                        "size": size,
                        "output_format": "png",
                        "created_at": int(time.time()),
                    }
                )
            elif isinstance(event, Failed):
                yield sse(failed_error(event).body())
                break
            elif isinstance(event, Finished):
                break
        yield sse("[DONE]")
    except (ClientGone, asyncio.CancelledError):
        job.cancel()
        state.metrics.disconnects += 1
        raise
    finally:
        job.cancel()  # no-op once finished; frees the rows if the client left
        del pending


async def stream_chat(
    state: ServerState,
    request: Request,
    job: TextJob,
    sink: ChannelSink,
    ident: str,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    """SSE in OpenAI's ``chat.completion.chunk`` shape, ending with ``data: [DONE]``."""
    created = int(time.time())
    model = state.settings.model_id

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        return sse(
            {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [
                    {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
                ],
                **extra,
            }
        )

    try:
        yield chunk({"role": "assistant", "content": ""})
        while True:
            event = await sink.next(request, job)
            if isinstance(event, TextPiece):
                yield chunk({"content": event.text})
            elif isinstance(event, TextDone):
                yield chunk({}, event.finish_reason)
                if include_usage:
                    yield sse(
                        {
                            "id": ident,
                            "object": "chat.completion.chunk",
                            "created": created,
                            "model": model,
                            "choices": [],
                            "usage": usage_of(event),
                        }
                    )
            elif isinstance(event, Failed):
                yield sse(failed_error(event).body())
                break
            elif isinstance(event, Finished):
                break
        yield sse("[DONE]")
    except (ClientGone, asyncio.CancelledError):
        job.cancel()
        state.metrics.disconnects += 1
        raise
    finally:
        job.cancel()
