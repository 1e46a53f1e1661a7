"""The FastAPI app of ``liquidgen serve``: OpenAI-shaped routes over one batched engine.

Routes: ``POST /v1/images/generations``, ``POST /v1/chat/completions`` (``stream`` for
server-sent events), ``GET /v1/models``, ``GET /health`` (200 once the model is loaded),
``GET /metrics`` (Prometheus text) and the web page at ``/``.

Threads: the event loop answers HTTP; the engine's scheduler thread owns the language model
(:class:`~liquidgen.serving.engine.Engine`); one worker thread owns the VQGAN (encoding
uploads, decoding finished codes to PNG). Events cross from the engine to the loop with
``call_soon_threadsafe``. Every error is one line of JSON in OpenAI's shape; a request whose
client goes away is cancelled and its rows are freed at the next step.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import dataclasses
import io
import json
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

from liquidgen.errors import LiquidgenError
from liquidgen.serving import schemas
from liquidgen.serving.engine import (
    EngineStopped,
    Event,
    Failed,
    Finished,
    ImageCodes,
    ImageJob,
    Progress,
    QueueFull,
    TextDone,
    TextJob,
    TextPiece,
)
from liquidgen.serving.metrics import Metrics
from liquidgen.serving.schemas import ApiError, ServerSettings, bad

RETRY_AFTER = "1"  # seconds, with 429 and 503
DISCONNECT_POLL = 0.25  # seconds between checks that a waiting client is still there
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


# --------------------------------------------------------------------------- state
class ServerState:
    """What the app holds: settings, the loaded pipeline and engine, the VQGAN worker."""

    def __init__(self, settings: ServerSettings, loader: Callable[[], Any]) -> None:
        self.settings = settings
        self.loader = loader
        self.pipe: Any = None
        self.engine: Any = None
        self.error: str | None = None
        self.metrics = Metrics()
        self.vq_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="liquidgen-vq")
        self.started = int(time.time())
        self.ready = threading.Event()

    def load(self) -> None:
        """Load the model and start the engine (in a background thread at startup)."""
        from liquidgen.serving.engine import Engine

        try:
            pipe = self.loader()
            if pipe.vq is None:
                raise LiquidgenError("the checkpoint has no image tokenizer (vq/)")
            engine = Engine(
                pipe, max_rows=self.settings.max_rows, max_queue=self.settings.max_queue
            )
            engine.start()
            self.pipe, self.engine = pipe, engine
            self.ready.set()
        except Exception as e:  # reported by /health; the process keeps answering
            self.error = _reason(e)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.stop()
        self.vq_pool.shutdown(wait=False, cancel_futures=True)

    def require(self) -> Any:
        if self.error is not None:
            raise ApiError(503, f"the model failed to load: {self.error}", type="server_error")
        if not self.ready.is_set():
            raise ApiError(
                503,
                "the model is still loading; retry shortly",
                type="server_error",
                headers={"Retry-After": RETRY_AFTER},
            )
        return self.engine


def _reason(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text


# --------------------------------------------------------------------------- plumbing
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
    pass


def error_response(e: ApiError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status, headers=e.headers)


def failed_error(event: Failed) -> ApiError:
    kind = "timeout" if event.status == 504 else event.kind
    return ApiError(event.status, event.message, type=kind)


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


def png_b64(image: Any) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def sse(data: Any) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


# --------------------------------------------------------------------------- the app
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
            schemas.error_body(f"internal error ({_reason(e)})", "server_error"), 500
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
                        state.vq_pool, decode_png, state.pipe, event.codes
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


class Guard:
    """ASGI middleware: the API key (every route but the public ones) and the metrics
    (status and time to the last byte of every response, streams included)."""

    def __init__(self, app: Any, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        path = scope.get("path", "")
        status = 500

        async def tracked(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            key = self.state.settings.api_key
            if key is not None and path not in PUBLIC_PATHS:
                try:
                    check_key(Request(scope), key)
                except ApiError as e:
                    await error_response(e)(scope, receive, tracked)
                    return
            await self.app(scope, receive, tracked)
        finally:
            self.state.metrics.observe(path, status, time.monotonic() - started)


PUBLIC_PATHS = frozenset({"/health", "/"})  # the page holds no data; it asks for the key
PAGE = Path(str(resources.files("liquidgen.serving") / "static" / "index.html"))


def check_key(request: Request, key: str) -> None:
    given = request.headers.get("authorization", "")
    scheme, _, token = given.partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip(), key):
        raise ApiError(
            401,
            "missing or wrong API key (send 'Authorization: Bearer <key>')",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )


def too_busy(engine: Any) -> ApiError:
    return ApiError(
        429,
        f"the server is busy ({engine.queue_depth} requests waiting); retry after {RETRY_AFTER} s",
        type="rate_limit_error",
        code="queue_full",
        headers={"Retry-After": RETRY_AFTER},
    )


def submit(state: ServerState, engine: Any, job: Any) -> None:
    job.timeout = state.settings.request_timeout
    try:
        engine.submit(job)
    except QueueFull:
        raise too_busy(engine) from None
    except EngineStopped as e:
        raise ApiError(503, str(e), type="server_error") from None
    except LiquidgenError as e:
        raise bad(str(e)) from None


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


def decode_png(pipe: Any, codes: Any) -> str:
    """Codes ``(h, w)`` -> base64 PNG (VQGAN worker thread; one image at a time, as the
    Pipeline decodes)."""
    return png_b64(pipe.decode_codes(codes[None])[0])


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
                future = loop.run_in_executor(state.vq_pool, decode_png, state.pipe, event.codes)
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


def settings_dict(settings: ServerSettings) -> dict[str, Any]:
    data = dataclasses.asdict(settings)
    data["api_key"] = None if settings.api_key is None else "***"
    return data
