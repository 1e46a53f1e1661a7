"""A real uvicorn on a loopback port: the official openai client, streaming, disconnects."""

from __future__ import annotations

import base64
import io
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from liquidgen.inference.pipeline import Pipeline
from liquidgen.inference.sampling import TextSampling

openai = pytest.importorskip("openai", reason="the serve extra is not installed")


def client_for(live) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.url + "/v1", api_key="unused", max_retries=0, timeout=120)


def test_openai_images_generate(live, pipe: Pipeline) -> None:
    result = client_for(live).images.generate(
        model="liquidgen",
        prompt="a blue square",
        n=2,
        size="16x8",
        response_format="b64_json",
        extra_body={"seed": 3, "cfg_scale": 2.0},
    )
    images = [Image.open(io.BytesIO(base64.b64decode(d.b64_json))) for d in result.data]
    assert [i.size for i in images] == [(16, 8), (16, 8)]
    expected = pipe("a blue square", n=2, width=16, height=8, seed=3, cfg_scale=2.0)
    assert [np.asarray(i.convert("RGB")).tolist() for i in images] == [
        np.asarray(e).tolist() for e in expected
    ]


def test_openai_chat_and_streaming(live, pipe: Pipeline) -> None:
    client = client_for(live)
    messages = [{"role": "user", "content": "Where is the green star?"}]
    reply = client.chat.completions.create(model="liquidgen", messages=messages, max_tokens=8)
    expected = pipe.chat(messages, TextSampling(max_new_tokens=8))
    assert reply.choices[0].message.content == expected
    stream = client.chat.completions.create(
        model="liquidgen", messages=messages, max_tokens=8, stream=True
    )
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert "".join(pieces).strip() == expected
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="liquidgen", messages=[], max_tokens=8)
    assert "messages" in err.value.message
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=messages)
    assert [m.id for m in client.models.list()] == ["liquidgen"]


def test_a_client_leaving_mid_stream_frees_its_rows(live) -> None:
    """Kill a streaming client after its first chunk: the engine drops its rows at the next
    step and the server keeps answering."""
    engine = live.state.engine
    cancelled = engine.stats.jobs_cancelled
    body = {
        "messages": [{"role": "user", "content": "Tell me a long story"}],
        "max_tokens": 500,
        "stream": True,
        "temperature": 1.0,
    }
    http = httpx.Client(base_url=live.url, timeout=60)
    with http.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200
        next(r.iter_lines())  # the first chunk arrived: the job is running
    http.close()  # the client is gone, long before 500 tokens
    deadline = time.monotonic() + 60
    while engine.stats.jobs_cancelled == cancelled or not engine.idle():
        assert time.monotonic() < deadline, "the rows of the gone client were not freed"
        time.sleep(0.05)
    assert engine.active_rows == 0 and engine.cache_length == 0
    r = httpx.post(
        live.url + "/v1/chat/completions", json={**body, "stream": False, "max_tokens": 2}
    )
    assert r.status_code == 200
