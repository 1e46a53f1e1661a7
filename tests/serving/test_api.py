"""The HTTP API through FastAPI's TestClient: shapes, exact images/answers, limits, errors."""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from liquidgen.inference.pipeline import Pipeline
from liquidgen.inference.sampling import TextSampling

PROMPT = "a red circle on the left"


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(raw: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(raw).decode()


def decode(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A valid PNG header claiming ``width`` x ``height`` pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


def one_line_error(response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    message = body["error"]["message"]
    assert message and "\n" not in message and "Traceback" not in message
    return message


def test_images_are_the_single_path_images(client, pipe: Pipeline) -> None:
    r = client.post(
        "/v1/images/generations",
        json={"prompt": PROMPT, "n": 2, "size": "16x8", "seed": 7, "cfg_scale": 3.0},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert isinstance(body["created"], int) and len(body["data"]) == 2
    expected = pipe(PROMPT, n=2, width=16, height=8, seed=7, cfg_scale=3.0)
    for item, image, seed in zip(body["data"], expected, (7, 8), strict=True):
        got = decode(item["b64_json"])
        assert got.format == "PNG" and got.size == (16, 8)
        assert np.array_equal(np.asarray(got.convert("RGB")), np.asarray(image))
        assert item["seed"] == seed


def test_default_size_is_the_checkpoints(client) -> None:
    r = client.post("/v1/images/generations", json={"prompt": PROMPT, "seed": 1})
    assert decode(r.json()["data"][0]["b64_json"]).size == (16, 16)  # liquid_generation.json


def test_image_progress_stream(client) -> None:
    with client.stream(
        "POST", "/v1/images/generations", json={"prompt": PROMPT, "size": "16x8", "stream": True}
    ) as r:
        assert r.status_code == 200
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line[6:]) for line in lines[:-1]]
    progress = [e for e in events if e["type"] == "image_generation.progress"]
    assert [e["done"] for e in progress] == list(range(1, 9)) and progress[-1]["total"] == 8
    (done,) = [e for e in events if e["type"] == "image_generation.completed"]
    assert decode(done["b64_json"]).size == (16, 8)


def test_chat_plain_and_about_an_image(client, pipe: Pipeline) -> None:
    messages = [{"role": "user", "content": "Where is the red circle?"}]
    r = client.post("/v1/chat/completions", json={"messages": messages, "max_tokens": 8})
    body = r.json()
    assert r.status_code == 200 and body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": pipe.chat(messages, TextSampling(max_new_tokens=8)),
    }
    assert body["usage"]["completion_tokens"] >= 1
    image = pipe(PROMPT, width=16, height=16, seed=3)[0]
    question = "What colour is the shape?"
    parts = [
        {"type": "text", "text": question},
        {"type": "image_url", "image_url": {"url": data_url(png_bytes(image))}},
    ]
    r = client.post(
        "/v1/chat/completions",
        json={
            "messages": [{"role": "user", "content": parts}],
            "max_tokens": 8,
            "seed": 4,
            "temperature": 0.9,
        },
    )
    sampled = TextSampling(greedy=False, temperature=0.9, max_new_tokens=8, seed=4)
    assert r.json()["choices"][0]["message"]["content"] == pipe.answer(image, question, sampled)


def test_chat_stream_ends_with_done(client) -> None:
    body = {"messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 10}
    whole = client.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]
    with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text.strip() == whole["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_models_health_metrics_page(client) -> None:
    card = client.get("/v1/models").json()["data"][0]
    assert card["id"] == "liquidgen" and card["liquidgen"]["trained_sizes"] == ["16x16", "16x8"]
    assert card["liquidgen"]["context_length"] == 4096 and card["liquidgen"]["max_n"] == 3
    assert client.get("/health").json() == {"status": "ok", "model": "liquidgen"}
    metrics = client.get("/metrics").text
    for name in (
        'liquidgen_requests_total{route="/v1/images/generations",status="200"}',
        "liquidgen_queue_depth 0",
        "liquidgen_tokens_per_second",
        'liquidgen_request_seconds_bucket{route="/v1/chat/completions",le="+Inf"}',
        "liquidgen_image_tokens_total",
    ):
        assert name in metrics, name
    page = client.get("/")
    assert page.status_code == 200 and 'id="generate"' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing from the internet


IMAGE = "/v1/images/generations"
CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "hi"}]


def _with_image(url: str) -> dict:
    content = [{"type": "text", "text": "what?"}, {"type": "image_url", "image_url": {"url": url}}]
    return {"messages": [{"role": "user", "content": content}]}


def _truncated_png() -> bytes:
    return png_bytes(Image.new("RGB", (64, 64), (200, 10, 10)))[:-40]


BAD_JSON = [
    (IMAGE, b"{not json", 400, "malformed JSON"),
    (IMAGE, b"[1, 2]", 400, "JSON object"),
    (IMAGE, b"", 400, "empty"),
    (IMAGE, b'{"prompt": "\xff\xfe"}', 400, "UTF-8"),
    (IMAGE, b'{"prompt": "a", "cfg_scale": NaN}', 400, "NaN"),
    (CHAT, b'{"messages": [{"role": "user", "content": "\\ud800"}]}', 400, "surrogate"),
]


@pytest.mark.parametrize(("path", "raw", "status", "words"), BAD_JSON)
def test_bad_bodies(client, path, raw, status, words) -> None:
    r = client.post(path, content=raw, headers={"content-type": "application/json"})
    assert words in one_line_error(r, status)


BAD_REQUESTS = [
    (IMAGE, {"prompt": PROMPT, "colour": "red"}, 400, "unknown field 'colour'"),
    (IMAGE, {"size": "16x16"}, 400, "missing field 'prompt'"),
    (IMAGE, {"prompt": PROMPT, "n": "2"}, 400, "n:"),
    (IMAGE, {"prompt": PROMPT, "n": True}, 400, "n:"),
    (IMAGE, {"prompt": PROMPT, "n": 4}, 400, "[1, 3]"),
    (IMAGE, {"prompt": PROMPT, "n": 0}, 400, "[1, 3]"),
    (IMAGE, {"prompt": PROMPT, "size": "big"}, 400, "WIDTHxHEIGHT"),
    (IMAGE, {"prompt": PROMPT, "size": "18x16"}, 400, "multiples of 4"),
    (IMAGE, {"prompt": PROMPT, "size": "512x512"}, 400, "context"),
    (IMAGE, {"prompt": PROMPT, "size": "99999x99999"}, 400, "limit"),
    (IMAGE, {"prompt": "   "}, 400, "empty"),
    (IMAGE, {"prompt": "x" * 5000}, 400, "limit is 4000"),
    (IMAGE, {"prompt": PROMPT, "temperature": 0}, 400, "temperature"),
    (IMAGE, {"prompt": PROMPT, "top_p": 1.5}, 400, "top_p"),
    (IMAGE, {"prompt": PROMPT, "seed": -1}, 400, "seed"),
    (IMAGE, {"prompt": PROMPT, "response_format": "url"}, 400, "b64_json"),
    (IMAGE, {"prompt": PROMPT, "model": "dall-e-3"}, 404, "does not exist"),
    (CHAT, {"messages": []}, 400, "messages"),
    (CHAT, {"messages": [{"role": "robot", "content": "hi"}]}, 400, "role"),
    (CHAT, {"messages": [{"role": "assistant", "content": "hi"}]}, 400, "last message"),
    (CHAT, {"messages": USER, "max_tokens": 100000}, 400, "max_tokens"),
    (CHAT, {"messages": USER, "n": 2}, 400, "n:"),
    (CHAT, {"messages": USER, "stop": ["x"]}, 400, "unknown field 'stop'"),
    (CHAT, _with_image("https://example.com/cat.png"), 400, "fetches nothing"),
    (CHAT, _with_image("data:image/png;base64,@@@"), 400, "base64"),
    (CHAT, _with_image(data_url(b"hello, not an image")), 400, "not an image"),
    (CHAT, _with_image(data_url(_truncated_png())), 400, "unreadable"),
    (CHAT, _with_image(data_url(bomb_png())), 400, "decoding limit"),
]


@pytest.mark.parametrize(("path", "body", "status", "words"), BAD_REQUESTS)
def test_bad_requests(client, path, body, status, words) -> None:
    assert words in one_line_error(client.post(path, json=body), status)


def test_two_images_in_one_conversation(client) -> None:
    url = data_url(png_bytes(Image.new("RGB", (16, 16))))
    part = {"type": "image_url", "image_url": {"url": url}}
    body = {"messages": [{"role": "user", "content": [part, part, {"type": "text", "text": "?"}]}]}
    assert "one image" in one_line_error(client.post(CHAT, json=body), 400)


def test_body_limit_unknown_routes_and_methods(client) -> None:
    big = json.dumps({"prompt": "x" * 300_000}).encode()
    assert "limit" in one_line_error(client.post(IMAGE, content=big), 413)
    assert one_line_error(client.get("/v1/nothing"), 404)
    assert one_line_error(client.get(IMAGE), 405)


def test_api_key_on_every_route_but_health(model_dir) -> None:
    from fastapi.testclient import TestClient

    from serving.conftest import make_app

    with TestClient(make_app(model_dir, api_key="sesame")) as c:
        assert c.get("/health").status_code == 200
        assert c.get("/").status_code == 200  # the page holds no data; it asks for the key
        for method, path in [
            ("get", "/v1/models"),
            ("get", "/metrics"),
            ("post", IMAGE),
            ("post", CHAT),
        ]:
            assert one_line_error(getattr(c, method)(path), 401)
            wrong = getattr(c, method)(path, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
        ok = c.get("/v1/models", headers={"Authorization": "Bearer sesame"})
        assert ok.status_code == 200


def test_queue_full_is_429_with_retry_after(model_dir) -> None:
    from fastapi.testclient import TestClient

    from serving.conftest import make_app

    with TestClient(make_app(model_dir, max_queue=0)) as c:
        r = c.post(IMAGE, json={"prompt": PROMPT})
        assert "busy" in one_line_error(r, 429) and r.headers["retry-after"] == "1"
        assert "liquidgen_rejected_total 1" in c.get("/metrics").text


def test_timeout_is_an_error_not_a_hang(model_dir) -> None:
    from fastapi.testclient import TestClient

    from serving.conftest import make_app

    with TestClient(make_app(model_dir, request_timeout=1e-9)) as c:
        assert "timed out" in one_line_error(c.post(IMAGE, json={"prompt": PROMPT}), 504)


def test_health_is_503_until_the_model_is_loaded(model_dir) -> None:
    import threading

    from fastapi.testclient import TestClient

    from liquidgen.serving.app import create_app
    from liquidgen.serving.schemas import ServerSettings

    gate = threading.Event()

    def slow_loader() -> Pipeline:
        gate.wait(60)
        return Pipeline.from_pretrained(model_dir)

    with TestClient(create_app(ServerSettings(), slow_loader)) as c:
        r = c.get("/health")
        assert r.status_code == 503 and r.json()["status"] == "loading"
        assert one_line_error(c.post(IMAGE, json={"prompt": PROMPT}), 503)
        gate.set()
        c.app.state.liquidgen.ready.wait(60)
        assert c.get("/health").status_code == 200
