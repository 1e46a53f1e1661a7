"""The server's state and its gate: the loaded pipeline and engine, the VQGAN worker, the
API key and submitting jobs.

:class:`ServerState` loads the model in the background and answers 503 until it is ready;
:class:`Guard` (ASGI middleware) checks the API key and records every response's status and
time for ``/metrics``; :func:`submit` hands a job to the engine, turning a full queue into 429.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import torch
from fastapi import Request
from fastapi.responses import JSONResponse

from liquidgen.errors import LiquidgenError
from liquidgen.serving.jobs import EngineStopped, QueueFull
from liquidgen.serving.metrics import Metrics
from liquidgen.serving.schemas import ApiError, ServerSettings, bad

RETRY_AFTER = "1"  # seconds, with 429 and 503
PUBLIC_PATHS = frozenset({"/health", "/"})  # the page holds no data; it asks for the key


class ServerState:
    """What the app holds: settings, the loaded pipeline and engine, the VQGAN worker."""

    def __init__(self, settings: ServerSettings, loader: Callable[[], Any]) -> None:
        self.settings = settings
        self.loader = loader
        self.pipe: Any = None
        self.engine: Any = None
        self.error: str | None = None
        self.metrics = Metrics()
        # The worker thread of PNG encoding and request preparation (an uploaded image's
        # VQGAN encoding) runs torch on ONE intra-op thread: a second multi-threaded OpenMP
        # team beside the engine's oversubscribes the cores, and libgomp then parks the
        # engine's workers between every parallel region (a 2-thread decode step measured
        # 1.6x slower; docs/serving.md "Threads"). Images are decoded by the engine.
        self.vq_pool = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="liquidgen-vq", initializer=torch.set_num_threads, initargs=(1,)
        )
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
                pipe,
                max_rows=self.settings.max_rows,
                max_queue=self.settings.max_queue,
                decode_images=True,
            )
            engine.start()
            self.pipe, self.engine = pipe, engine
            self.ready.set()
        except Exception as e:  # reported by /health; the process keeps answering
            self.error = reason_of(e)

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


def reason_of(e: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def error_response(e: ApiError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status, headers=e.headers)


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


def settings_dict(settings: ServerSettings) -> dict[str, Any]:
    data = dataclasses.asdict(settings)
    data["api_key"] = None if settings.api_key is None else "***"
    return data
