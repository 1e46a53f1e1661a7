"""The FastAPI app of ``liquidgen serve``: OpenAI-shaped routes over one batched engine.

Routes: ``POST /v1/images/generations``, ``POST /v1/chat/completions`` (``stream`` for
server-sent events), ``GET /v1/models``, ``GET /health`` (200 once the model is loaded),
``GET /metrics`` (Prometheus text) and the web page at ``/``.

Threads: the event loop answers HTTP; the engine's scheduler thread owns the language model
(:class:`~liquidgen.serving.engine.Engine`); one worker thread owns the VQGAN (encoding
uploads, decoding finished codes to PNG). Events cross from the engine to the loop with
``call_soon_threadsafe``. Every error is one line of JSON in OpenAI's shape; a request whose
client goes away is cancelled and its rows are freed at the next step.

This module holds the routes; a request's way through them crosses
:mod:`~liquidgen.serving.requests` (body -> checked engine job),
:mod:`~liquidgen.serving.state` (the loaded model, the API key, submitting) and
:mod:`~liquidgen.serving.responses` (engine events -> JSON, server-sent events, PNG).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from liquidgen.serving import schemas
from liquidgen.serving.jobs import Failed, Finished, ImageCodes, TextDone
from liquidgen.serving.requests import image_job, read_body, text_job
from liquidgen.serving.responses import (
    DISCONNECT_POLL,
    SSE_HEADERS,
    ChannelSink,
    ClientGone,
    decode_png,
    failed_error,
    model_card,
    png_b64,
    sse,
    stream_chat,
    stream_images,
    usage_of,
)
from liquidgen.serving.schemas import ApiError, ServerSettings
from liquidgen.serving.state import (
    PUBLIC_PATHS,
    RETRY_AFTER,
    Guard,
    ServerState,
    check_key,
    error_response,
    reason_of,
    settings_dict,
    submit,
    too_busy,
)

PAGE = Path(str(resources.files("liquidgen.serving") / "static" / "index.html"))

# Names that lived here before the split (importable from here for one release).
__all__ = [
    "DISCONNECT_POLL",
    "PAGE",
    "PUBLIC_PATHS",
    "RETRY_AFTER",
    "SSE_HEADERS",
    "ChannelSink",
    "ClientGone",
    "Guard",
    "ServerState",
    "check_key",
    "create_app",
    "decode_png",
    "error_response",
    "failed_error",
    "image_job",
    "model_card",
    "png_b64",
    "read_body",
    "settings_dict",
    "sse",
    "stream_chat",
    "stream_images",
    "submit",
    "text_job",
    "too_busy",
    "usage_of",
]


def create_app(
    settings: ServerSettings, loader: Callable[[], Any], *, load_in_background: bool = True
) -> FastAPI:
    """The app; ``loader()`` returns a :class:`~liquidgen.inference.pipeline.Pipeline`
    (called once at startup, in a thread unless ``load_in_background`` is false)."""
    state = ServerState(settings, loader)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if load_in_background:
            threading.Thread(target=state.load, name="liquidgen-load", daemon=True).start()
        else:
            state.load()
        yield
        state.close()

    app = FastAPI(
        title="liquidgen",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.liquidgen = state

    app.add_middleware(Guard, state=state)

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, e: Exception) -> JSONResponse:
        # a bug: still one line of JSON for the client, never a traceback
        return JSONResponse(
            schemas.error_body(f"internal error ({reason_of(e)})", "server_error"), 500
        )

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, e: ApiError) -> JSONResponse:
        return error_response(e)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, e: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if e.status_code == 404 else "invalid_request_error"
        return JSONResponse(
            schemas.error_body(str(e.detail), kind), e.status_code, headers=e.headers
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, e: RequestValidationError) -> JSONResponse:
        return JSONResponse(schemas.error_body(str(e.errors()[:1])), 400)

    # ------------------------------------------------------------------ routes
    @app.get("/health")
    async def health() -> JSONResponse:
        if state.error is not None:
            return JSONResponse({"status": "error", "message": state.error}, 503)
        if not state.ready.is_set():
            return JSONResponse({"status": "loading"}, 503, headers={"Retry-After": RETRY_AFTER})
        return JSONResponse({"status": "ok", "model": settings.model_id})

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(
            state.metrics.render(state.engine), media_type="text/plain; version=0.0.4"
        )

    @app.get("/v1/models")
    async def models() -> JSONResponse:
        state.require()
        return JSONResponse({"object": "list", "data": [model_card(state)]})

    @app.get("/v1/models/{name}")
    async def model(name: str) -> JSONResponse:
        state.require()
        schemas.check_model(name, settings)
        return JSONResponse(model_card(state))

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    @app.post("/v1/images/generations")
    async def images(request: Request) -> Any:
        engine = state.require()
        body = schemas.validate(
            schemas.ImagesBody,
            schemas.parse_json(await read_body(request, settings.max_body_bytes)),
        )
        job, seed = image_job(state, body)
        sink = ChannelSink(asyncio.get_running_loop())
        job.sink = sink
        job.progress = body.stream
        submit(state, engine, job)
        size = f"{job.request.width}x{job.request.height}"
        if body.stream:
            return StreamingResponse(
                stream_images(state, request, job, sink, seed, size),
                media_type="text/event-stream",
                headers=SSE_HEADERS,
            )
        images: dict[int, asyncio.Future] = {}
        loop = asyncio.get_running_loop()
        try:
            while True:
                event = await sink.next(request, job)
                if isinstance(event, ImageCodes):
                    images[event.index] = loop.run_in_executor(
                        state.vq_pool, decode_png, state.pipe, event
                    )
                elif isinstance(event, Failed):
                    raise failed_error(event)
                elif isinstance(event, Finished):
                    break
        except ClientGone:
            state.metrics.disconnects += 1
            return JSONResponse(schemas.error_body("client disconnected"), 499)
        data = []
        for i in sorted(images):
            data.append({"b64_json": await images[i], "revised_prompt": None, "seed": seed + i})
        return JSONResponse({"created": int(time.time()), "data": data, "size": size})

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        engine = state.require()
        body = schemas.validate(
            schemas.ChatBody, schemas.parse_json(await read_body(request, settings.max_body_bytes))
        )
        schemas.check_model(body.model, settings)
        messages, image_url = schemas.chat_inputs(body, settings)
        if engine.queue_depth >= settings.max_queue:  # before encoding an upload
            raise too_busy(engine)
        image = None
        loop = asyncio.get_running_loop()
        if image_url is not None:
            image = schemas.decode_data_url(image_url, settings)
        job = await loop.run_in_executor(state.vq_pool, text_job, state, body, messages, image)
        sink = ChannelSink(loop)
        job.sink = sink
        submit(state, engine, job)
        ident = f"chatcmpl-{secrets.token_hex(12)}"
        if body.stream:
            usage = body.stream_options is not None and body.stream_options.include_usage
            return StreamingResponse(
                stream_chat(state, request, job, sink, ident, usage),
                media_type="text/event-stream",
                headers=SSE_HEADERS,
            )
        try:
            while True:
                event = await sink.next(request, job)
                if isinstance(event, TextDone):
                    done = event
                elif isinstance(event, Failed):
                    raise failed_error(event)
                elif isinstance(event, Finished):
                    break
        except ClientGone:
            state.metrics.disconnects += 1
            return JSONResponse(schemas.error_body("client disconnected"), 499)
        return JSONResponse(
            {
                "id": ident,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": settings.model_id,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": done.text},
                        "finish_reason": done.finish_reason,
                        "logprobs": None,
                    }
                ],
                "usage": usage_of(done),
            }
        )

    return app
