"""Tiny checkpoints for the serving tests (built once per session, a few seconds)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from liquidgen.checkpoint import GenerationDefaults
from liquidgen.inference.pipeline import Pipeline
from liquidgen.model import load_liquid, save_liquid
from tiny_models import make_tiny_liquid

# The tiny VQGAN has factor 4: 16x8 pixels = a 2x4 code grid.
DEFAULTS = dict(
    width=16, height=16, understanding_size=16, size_prefix=True, buckets=[[16, 16], [16, 8]]
)
TALKATIVE_STD = 0.6  # redrawn weights: varied, prompt-dependent text (see tests/inference)


@pytest.fixture(scope="package", autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="package")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny liquidgen checkpoint (llama backbone, VQGAN in vq/) with large random weights,
    so that greedy text varies and image codes are spread."""
    base = make_tiny_liquid(tmp_path_factory.mktemp("base") / "ckpt", family="llama")
    model, tokenizer, layout = load_liquid(base)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" not in name:
                param.normal_(0.0, TALKATIVE_STD, generator=generator)
    path = save_liquid(
        tmp_path_factory.mktemp("served") / "ckpt", model, tokenizer, layout, vq_dir=base / "vq"
    )
    GenerationDefaults.from_fields(layout, **DEFAULTS).save(path)
    return path


@pytest.fixture(scope="package")
def pipe(model_dir: Path) -> Pipeline:
    return Pipeline.from_pretrained(model_dir, device="cpu")


# --------------------------------------------------------------------------- servers
def make_app(model_dir: Path, **settings):
    from liquidgen.serving.app import create_app
    from liquidgen.serving.schemas import ServerSettings

    return create_app(
        ServerSettings(**settings),
        lambda: Pipeline.from_pretrained(model_dir, device="cpu"),
        load_in_background=False,
    )


@pytest.fixture(scope="package")
def client(model_dir: Path):
    """A TestClient of a loaded server (max 3 images per request)."""
    from fastapi.testclient import TestClient

    with TestClient(make_app(model_dir, max_n=3, max_body_bytes=200_000)) as c:
        yield c


class LiveServer:
    """uvicorn serving an app on a free loopback port, in a thread."""

    def __init__(self, app) -> None:
        import socket
        import threading

        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.app = app
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def state(self):
        return self.app.state.liquidgen

    def __enter__(self) -> LiveServer:
        import time

        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="package")
def live(model_dir: Path) -> Iterator[LiveServer]:
    with LiveServer(make_app(model_dir, max_n=3)) as server:
        yield server
