"""The batched engine draws exactly what the single path draws, with one forward per step."""

from __future__ import annotations

import torch

from liquidgen.inference.generation import sample_image_codes
from liquidgen.inference.pipeline import Pipeline
from liquidgen.inference.request import text_budget
from liquidgen.inference.sampling import TextSampling
from liquidgen.serving.engine import (
    Engine,
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

QUESTION = "what colour is the circle?"


class Collect:
    """A job's sink: every event, in order."""

    def __init__(self) -> None:
        self.events: list = []

    def __call__(self, event) -> None:
        self.events.append(event)

    def of(self, kind):
        return [e for e in self.events if isinstance(e, kind)]

    @property
    def ended(self) -> bool:
        return bool(self.of(Finished) or self.of(Failed))


def image_job(pipe: Pipeline, prompt: str, **settings) -> tuple[ImageJob, Collect]:
    sink = Collect()
    return ImageJob(sink=sink, request=pipe.image_request(prompt, **settings), progress=True), sink


def text_job(
    pipe: Pipeline, messages, sampling: TextSampling, image=None
) -> tuple[TextJob, Collect]:
    from liquidgen.formats import chat_prompt_ids

    codes = None if image is None else pipe.encode_image(image)
    ids = chat_prompt_ids(pipe.tokenizer, pipe.layout, messages, codes=codes)
    budget = text_budget(pipe.context_length, len(ids), sampling.max_new_tokens)
    sink = Collect()
    job = TextJob(
        sink=sink,
        prompt_ids=ids,
        sampling=sampling,
        budget=budget,
        stop_ids=frozenset(pipe.stop_ids),
    )
    return job, sink


def run(engine: Engine, sinks, *, join_later=(), limit: int = 500) -> None:
    """Step by hand; ``join_later``: (step, job) pairs submitted at that step."""
    later = sorted(join_later, key=lambda p: p[0])
    for step in range(limit):
        while later and later[0][0] == step:
            engine.submit(later.pop(0)[1])
        if not later and all(s.ended for s in sinks):
            return
        engine.step()
    raise AssertionError("jobs did not finish")


def single_codes(pipe: Pipeline, prompt: str, **settings) -> torch.Tensor:
    request = pipe.image_request(prompt, **settings)
    return sample_image_codes(pipe.model, pipe.layout, request)


def test_batched_draws_equal_the_single_path(pipe: Pipeline) -> None:
    """Image and text requests of different lengths, sizes and settings, joining at different
    steps, draw exactly what each draws alone through the Pipeline."""
    engine = Engine(pipe, max_rows=64, max_queue=16)
    a_settings = dict(n=2, seed=5, cfg_scale=3.0)
    b_settings = dict(n=1, seed=11, width=16, height=8, cfg_scale=1.0, temperature=0.7, top_k=10)
    c_settings = dict(n=1, seed=2, top_p=0.5)
    a, a_sink = image_job(pipe, "a red circle", **a_settings)
    b, b_sink = image_job(pipe, "The square is blue and it sits near the top.", **b_settings)
    c, c_sink = image_job(pipe, "a green star on the left", **c_settings)
    chat = [{"role": "user", "content": "Where is the red circle?"}]
    sampled = TextSampling(greedy=False, seed=3, temperature=0.8, max_new_tokens=12)
    greedy = TextSampling(max_new_tokens=9)
    image = pipe.decode_codes(single_codes(pipe, "a red circle", seed=1))[0]
    t1, t1_sink = text_job(pipe, chat, sampled)
    t2, t2_sink = text_job(pipe, [{"role": "user", "content": QUESTION}], greedy, image=image)

    engine.submit(a)
    engine.submit(t1)
    sinks = [a_sink, b_sink, c_sink, t1_sink, t2_sink]
    run(engine, sinks, join_later=[(2, b), (3, t2), (5, c)])

    for sink in sinks:
        assert not sink.of(Failed), sink.of(Failed)
    for sink, prompt, settings in [
        (a_sink, "a red circle", a_settings),
        (b_sink, "The square is blue and it sits near the top.", b_settings),
        (c_sink, "a green star on the left", c_settings),
    ]:
        codes = sorted(sink.of(ImageCodes), key=lambda e: e.index)
        expected = single_codes(pipe, prompt, **settings)
        assert torch.equal(torch.stack([e.codes for e in codes]), expected), prompt
        assert sink.of(Finished) and not sink.of(Failed)
        progress = sink.of(Progress)
        assert progress[-1].done == progress[-1].total == expected.numel()
    assert t1_sink.of(TextDone)[0].text == pipe.chat(chat, sampled)
    assert t2_sink.of(TextDone)[0].text == pipe.answer(image, QUESTION, greedy)
    streamed = "".join(p.text for p in t1_sink.of(TextPiece))
    assert streamed.strip() == t1_sink.of(TextDone)[0].text
    assert engine.idle() and engine.cache_length == 0  # every KV row freed


def test_one_forward_per_step_over_every_active_row(pipe: Pipeline) -> None:
    """Each decode step is one decoder call over all rows: image cond + uncond rows of every
    request and the text rows together."""
    engine = Engine(pipe, max_rows=64, max_queue=16)
    calls: list[tuple[int, int]] = []
    decode = engine._decode

    def counting(ids, mask, positions, cache):
        calls.append(tuple(ids.shape))
        return decode(ids, mask, positions, cache)

    engine._decode = counting  # type: ignore[method-assign]
    jobs = [image_job(pipe, "a red circle", n=2, seed=0), image_job(pipe, "a blue square", seed=1)]
    text = text_job(pipe, [{"role": "user", "content": "hi"}], TextSampling(max_new_tokens=50))
    for job, _ in [*jobs, text]:
        engine.submit(job)
    engine.step()  # prefill (one forward for all joiners) + the first decode forward
    assert calls == [(7, calls[0][1]), (7, 1)]  # 2*2 + 1*2 image rows + 1 text row
    engine.step()
    assert calls[-1] == (7, 1) and len(calls) == 3
    assert engine.stats.last_step_rows == 7


def test_cancel_and_timeout_free_rows(pipe: Pipeline) -> None:
    engine = Engine(pipe, max_rows=64, max_queue=16)
    a, _ = image_job(pipe, "a red circle", n=2, seed=0)
    b, b_sink = image_job(pipe, "a blue square", seed=1)
    b.timeout = 0.0
    engine.submit(a)
    engine.submit(b)
    engine.step()
    assert engine.active_rows == 4  # b timed out before admission
    assert b_sink.of(Failed)[0].status == 504
    a.cancel()
    engine.step()
    assert engine.idle() and engine.active_rows == 0 and engine.cache_length == 0
    assert engine.stats.jobs_cancelled == 1


def test_bounded_queue_and_row_budget(pipe: Pipeline) -> None:
    engine = Engine(pipe, max_rows=4, max_queue=2)
    jobs = [image_job(pipe, "a red circle", seed=i, n=2) for i in range(3)]  # 4 rows each
    engine.submit(jobs[0][0])
    engine.submit(jobs[1][0])
    try:
        engine.submit(jobs[2][0])
    except QueueFull:
        pass
    else:
        raise AssertionError("a third job fitted into a queue of 2")
    engine.step()
    assert engine.active_rows == 4 and engine.queue_depth == 1  # the second waits for rows
    run(engine, [jobs[0][1], jobs[1][1]])
    assert all(len(s.of(ImageCodes)) == 2 for _, s in jobs[:2])


def test_growing_cache_layer_appends_like_concatenation() -> None:
    """The engine's cache layer writes decode steps into spare columns; across a regrowth of
    its buffer (more than SPARE_COLUMNS appends) it holds exactly what concatenation holds."""
    from liquidgen.serving.batch_cache import SPARE_COLUMNS, GrowingLayer

    g = torch.Generator().manual_seed(0)
    keys, values = torch.randn(3, 2, 5, 4, generator=g), torch.randn(3, 2, 5, 4, generator=g)
    layer = GrowingLayer(keys, values)
    for step in range(SPARE_COLUMNS + 7):
        n = 2 if step == 3 else 1  # a multi-token update too
        k, v = torch.randn(3, 2, n, 4, generator=g), torch.randn(3, 2, n, 4, generator=g)
        keys, values = torch.cat([keys, k], dim=2), torch.cat([values, v], dim=2)
        out_k, out_v = layer.update(k, v)
        assert torch.equal(out_k, keys) and torch.equal(out_v, values)
    assert layer.get_seq_length() == keys.shape[2]


def test_engine_decodes_images_when_asked(pipe: Pipeline) -> None:
    """decode_images=True: each ImageCodes carries the picture the Pipeline decodes from the
    same codes, pixel for pixel (the server decodes in the engine's thread)."""
    import numpy as np

    engine = Engine(pipe, max_rows=8, max_queue=4, decode_images=True)
    job, sink = image_job(pipe, "a red circle", n=2, seed=4)
    engine.submit(job)
    run(engine, [sink])
    events = sink.of(ImageCodes)
    assert len(events) == 2
    for event in events:
        expected = pipe.decode_codes(event.codes[None])[0]
        assert event.image is not None and event.image.size == expected.size
        assert np.array_equal(np.asarray(event.image), np.asarray(expected))


def test_worker_thread_runs_torch_on_one_thread() -> None:
    """The server's PNG / request worker must not start a second multi-threaded OpenMP team
    beside the engine's (it made a 2-thread decode step ~1.6x slower)."""
    from liquidgen.serving.schemas import ServerSettings
    from liquidgen.serving.state import ServerState

    state = ServerState(ServerSettings(), loader=lambda: None)
    try:
        assert state.vq_pool.submit(torch.get_num_threads).result(timeout=30) == 1
    finally:
        state.close()
