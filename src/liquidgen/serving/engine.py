"""One engine, many users: continuous batching of image and text requests over one model.

A single scheduler thread owns the language model. Every *step* it

1. admits waiting jobs (first come, first served) while their rows fit into ``max_rows``;
   their prompts run through one left-padded prefill forward and their KV rows are appended
   to the running batch (the batch cache is left-padded to the longest row);
2. draws the next token of every active sequence from the hidden states of the last
   forward, with per-sequence settings: an image's conditional row and its unconditional
   CFG partner go through Liquid's sampler (:meth:`ImageSampling.code_probs`, grouped by
   settings), a text row through :meth:`TextSampling.choose`;
3. drops finished, cancelled and timed-out sequences (their KV rows are cut out of the
   batch and leading all-padding columns trimmed, so the cache never exceeds the longest
   live row);
4. runs ONE decoder forward over every remaining row (all users' conditional rows, their
   unconditional partners, image and text sequences together).

Exactness: every image ``i`` of a request draws from its own ``torch.Generator`` seeded
``seed + i`` and a text request from one seeded ``seed``, one uniform number per token in
the order the single path (:func:`liquidgen.inference.image_generation.sample_image_codes`,
:func:`~liquidgen.inference.text_generation.generate_text`) uses; logits are computed from the
same decoder + head as there, and rows are left-padded with an attention mask and their own
position ids, so a request draws exactly the tokens ``liquidgen generate`` / ``Pipeline``
draws for it, whichever other requests share the batch (tested in tests/serving).

Jobs and results are the types of :mod:`liquidgen.serving.jobs`. Results go to each job's
``sink`` (called from the scheduler thread; the HTTP layer forwards them to its event loop):
:class:`Progress`, :class:`ImageCodes`, :class:`TextPiece`,
:class:`TextDone`, :class:`Failed`; every admitted job ends with exactly one
:class:`Finished` or :class:`Failed`.
"""

from __future__ import annotations

import abc
import collections
import dataclasses
import threading
import time
from typing import Any

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from liquidgen.errors import ConfigError
from liquidgen.inference.decoding import ImageRowLogits, cache_kwargs, left_pad
from liquidgen.inference.sampling import ImageSampling, sample_from_probs
from liquidgen.inference.text_generation import TextStream, strip_leading
from liquidgen.model.head import DecoderHead
from liquidgen.serving.batch_cache import GrowingLayer, pad_left, release_freed_memory
from liquidgen.serving.jobs import (
    EngineStopped,
    Event,
    Failed,
    Finished,
    ImageCodes,
    ImageJob,
    Job,
    Progress,
    QueueFull,
    Sink,
    TextDone,
    TextJob,
    TextPiece,
)

# The events and jobs live in liquidgen.serving.jobs; importable from here too.
__all__ = [
    "Engine",
    "EngineStats",
    "EngineStopped",
    "Event",
    "Failed",
    "Finished",
    "ImageCodes",
    "ImageJob",
    "Job",
    "Progress",
    "QueueFull",
    "Sink",
    "TextDone",
    "TextJob",
    "TextPiece",
]


# --------------------------------------------------------------------------- sequences
class _Seq(abc.ABC):
    """Rows of the batch that decode together: one image (cond [+ uncond]) or one text."""

    job: Job
    rows: int
    offset: int = 0  # first row in the batch
    next_token: int = 0  # the token drawn this step, fed to every row of the sequence

    @property
    @abc.abstractmethod
    def finished(self) -> bool:
        """Every token of the sequence is drawn (or it stopped)."""


class _ImageSeq(_Seq):
    def __init__(self, job: ImageJob, index: int) -> None:
        r = job.request
        assert r is not None
        self.job = job
        self.index = index
        self.sampling: ImageSampling = r.sampling
        self.rows = 2 if r.sampling.uses_cfg else 1
        self.total = r.tokens_per_image
        self.generator = torch.Generator().manual_seed(r.seed + index)
        self.codes: list[int] = []
        self.prompt_rows = [list(r.cond_ids[0])] + (
            [list(r.uncond_ids)] if r.sampling.uses_cfg else []
        )

    @property
    def finished(self) -> bool:
        return len(self.codes) == self.total


class _TextSeq(_Seq):
    def __init__(self, job: TextJob, tokenizer: Any) -> None:
        self.job = job
        self.rows = 1
        self.generator = torch.Generator().manual_seed(job.sampling.seed)
        self.generated: list[int] = []
        self.stopped = False
        # leading whitespace is held back, as Pipeline streams
        self.stream = TextStream(tokenizer, strip_leading(lambda piece: job.sink(TextPiece(piece))))
        self.prompt_rows = [list(job.prompt_ids)]

    @property
    def finished(self) -> bool:
        return self.stopped or len(self.generated) >= self.job.budget  # type: ignore[attr-defined]

    def push(self, token: int) -> None:
        job: TextJob = self.job  # type: ignore[assignment]
        if token in job.stop_ids:
            self.stopped = True
            return
        self.generated.append(token)
        self.stream.update(self.generated)

    def finish(self) -> TextDone:
        text = self.stream.finish(self.generated)
        job: TextJob = self.job  # type: ignore[assignment]
        return TextDone(
            text=text.strip(),
            finish_reason="stop" if self.stopped else "length",
            prompt_tokens=len(job.prompt_ids),
            completion_tokens=len(self.generated) + int(self.stopped),
        )


@dataclasses.dataclass
class _Active:
    """Bookkeeping of an admitted job: its live sequences and drawn-token count."""

    job: Job
    seqs: list[_Seq]
    total: int
    done: int = 0


# --------------------------------------------------------------------------- the engine
@dataclasses.dataclass
class EngineStats:
    steps: int = 0  # decode forwards
    prefills: int = 0
    image_tokens: int = 0
    text_tokens: int = 0
    images: int = 0
    jobs_done: int = 0
    jobs_failed: int = 0
    jobs_cancelled: int = 0
    jobs_timed_out: int = 0
    last_step_rows: int = 0  # rows of the last decode forward
    max_step_rows: int = 0
    step_seconds: float = 0.0  # summed time in steps (prefill + draw + forward)
    recent: collections.deque = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=512)
    )  # (time, tokens drawn) per step, for tokens/s


class Engine:
    """The batched decoder of one loaded :class:`~liquidgen.inference.pipeline.Pipeline`.

    ``max_rows``: most rows in one forward (an image with guidance takes two);
    ``max_queue``: most jobs waiting for admission (:meth:`submit` raises :class:`QueueFull`
    above it); ``decode_images``: decode each finished image with the pipeline's VQGAN in the
    scheduler thread (:attr:`ImageCodes.image`) instead of leaving it to the caller. The
    server decodes here: torch work in a second thread runs a second OpenMP team that
    oversubscribes the cores and slows every decode step (docs/serving.md "Threads").
    Call :meth:`start` for the scheduler thread, or :meth:`step` by hand (tests).
    """

    def __init__(
        self, pipe: Any, *, max_rows: int = 128, max_queue: int = 64, decode_images: bool = False
    ) -> None:
        if max_rows < 1 or max_queue < 0:
            raise ConfigError("max_rows must be >= 1 and max_queue >= 0")
        self.pipe = pipe
        self.model = pipe.model
        self.layout = pipe.layout
        self.tokenizer = pipe.tokenizer
        self.max_rows = max_rows
        self.max_queue = max_queue
        self.decode_images = decode_images
        self.decoder = self.model.get_decoder()
        self.image_head = ImageRowLogits(self.model, self.layout)
        self.text_head = _FullHead(self.model)
        self.stats = EngineStats()
        self._pending: collections.deque[Job] = collections.deque()
        self._active: list[_Active] = []
        self._seqs: list[_Seq] = []  # batch order
        self._cache: DynamicCache | None = None
        self._mask: torch.Tensor | None = None  # (R, S)
        self._next_pos: torch.Tensor | None = None  # (R,)
        self._hidden: torch.Tensor | None = None  # (R, H) last hidden state of every row
        self._lock = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._check_model()

    # ------------------------------------------------------------------ public API
    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    @property
    def active_jobs(self) -> int:
        return len(self._active)

    @property
    def active_rows(self) -> int:
        return sum(s.rows for s in self._seqs)

    @property
    def cache_length(self) -> int:
        return 0 if self._mask is None else int(self._mask.shape[1])

    def submit(self, job: Job) -> None:
        """Queue ``job`` (:class:`QueueFull` when ``max_queue`` jobs already wait)."""
        if job.rows > self.max_rows:
            raise ConfigError(
                f"the request needs {job.rows} rows; the server runs at most {self.max_rows}"
            )
        with self._lock:
            if self._stopping:
                raise EngineStopped("the server is shutting down")
            if len(self._pending) >= self.max_queue:
                raise QueueFull(f"{len(self._pending)} requests are waiting")
            job.submitted = time.monotonic()
            job.deadline = None if job.timeout is None else job.submitted + job.timeout
            self._pending.append(job)
            self._lock.notify()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="liquidgen-engine", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Fail waiting and running jobs, stop the scheduler thread."""
        with self._lock:
            self._stopping = True
            self._lock.notify()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            for job in self._pending:
                job.sink(Failed(503, "the server is shutting down"))
            self._pending.clear()
        for active in self._active:
            active.job.sink(Failed(503, "the server is shutting down"))
        self._reset_batch()

    def idle(self) -> bool:
        return not self._pending and not self._active

    # ------------------------------------------------------------------ the loop
    def _run(self) -> None:
        torch.set_grad_enabled(False)
        while True:
            with self._lock:
                if not self._stopping and not self._pending and not self._active:
                    release_freed_memory()
                while not self._stopping and not self._pending and not self._active:
                    self._lock.wait()
                if self._stopping:
                    return
            self.step()

    def step(self) -> None:
        """One scheduling step: admit, draw, drop finished rows, one forward over the rest."""
        started = time.monotonic()
        try:
            with torch.inference_mode():
                self._expire()
                self._admit()
                if not self._seqs:
                    return
                self._draw()
                self._drop_finished()
                if self._seqs:
                    self._forward()
        except Exception as e:  # a bug or out of memory: fail the jobs, keep serving
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            for active in self._active:
                active.job.sink(Failed(500, f"internal error while decoding ({reason})"))
                self.stats.jobs_failed += 1
            self._active.clear()
            self._reset_batch()
        finally:
            self.stats.step_seconds += time.monotonic() - started

    # ------------------------------------------------------------------ admission
    def _expire(self) -> None:
        """Fail timed-out jobs, forget cancelled ones (waiting or running)."""
        now = time.monotonic()
        with self._lock:
            waiting = list(self._pending)
            self._pending.clear()
            for job in waiting:
                if job.cancelled:
                    self.stats.jobs_cancelled += 1
                elif job.deadline is not None and now > job.deadline:
                    self.stats.jobs_timed_out += 1
                    job.sink(Failed(504, f"the request timed out after {job.timeout:g} s"))
                else:
                    self._pending.append(job)
        gone = []
        for active in self._active:
            job = active.job
            if job.cancelled:
                self.stats.jobs_cancelled += 1
                gone.append(active)
            elif job.deadline is not None and now > job.deadline:
                self.stats.jobs_timed_out += 1
                job.sink(Failed(504, f"the request timed out after {job.timeout:g} s"))
                gone.append(active)
        if gone:
            dead = {id(a.job) for a in gone}
            self._active = [a for a in self._active if id(a.job) not in dead]
            self._remove([s for s in self._seqs if id(s.job) in dead])

    def _admit(self) -> None:
        joining: list[_Seq] = []
        rows = self.active_rows
        with self._lock:
            while self._pending and rows + self._pending[0].rows <= self.max_rows:
                job = self._pending.popleft()
                seqs = self._sequences(job)
                rows += job.rows
                joining += seqs
                total = sum(s.total for s in seqs) if isinstance(job, ImageJob) else job.budget
                self._active.append(_Active(job, seqs, total))
        if joining:
            self._prefill(joining)

    def _sequences(self, job: Job) -> list[_Seq]:
        if isinstance(job, ImageJob):
            return [_ImageSeq(job, i) for i in range(job.request.n)]  # type: ignore[union-attr]
        if isinstance(job, TextJob):
            return [_TextSeq(job, self.tokenizer)]
        raise TypeError(f"unknown job type {type(job).__name__}")

    def _prefill(self, joining: list[_Seq]) -> None:
        """One left-padded forward over the new rows; their cache joins the batch."""
        rows = [r for s in joining for r in s.prompt_rows]
        ids, mask, positions = left_pad(rows, self.layout.padding_id, self.model.device)
        cache = DynamicCache(config=self.model.config)
        hidden = self._decode(ids, mask, positions, cache)  # (J, H)
        self.stats.prefills += 1
        if self._cache is None:
            for i, layer in enumerate(cache.layers):
                cache.layers[i] = GrowingLayer(layer.keys, layer.values)
            self._cache, self._mask, self._hidden = cache, mask, hidden
            self._next_pos = positions[:, -1] + 1
            self._seqs = list(joining)
        else:
            length = max(self._mask.shape[1], mask.shape[1])
            layers = self._cache.layers
            for i, (old, new) in enumerate(zip(layers, cache.layers, strict=True)):
                layers[i] = GrowingLayer(
                    torch.cat([pad_left(old.keys, length, 2), pad_left(new.keys, length, 2)]),
                    torch.cat([pad_left(old.values, length, 2), pad_left(new.values, length, 2)]),
                )
            self._mask = torch.cat([pad_left(self._mask, length, 1), pad_left(mask, length, 1)])
            self._hidden = torch.cat([self._hidden, hidden])
            self._next_pos = torch.cat([self._next_pos, positions[:, -1] + 1])
            self._seqs += joining
        self._renumber()

    # ------------------------------------------------------------------ drawing
    def _draw(self) -> None:
        """Next token of every sequence (an image's token goes to both of its rows)."""
        hidden = self._hidden
        groups: dict[ImageSampling, list[_ImageSeq]] = {}
        for seq in self._seqs:
            if isinstance(seq, _ImageSeq):
                groups.setdefault(seq.sampling, []).append(seq)
        for sampling, seqs in groups.items():
            cond_rows = [s.offset for s in seqs]
            logits = self.image_head.project(
                hidden[cond_rows + [s.offset + 1 for s in seqs if s.rows == 2]],
                self.image_head.weight,
                self.image_head.bias,
            )  # (m or 2m, K)
            m = len(seqs)
            cond, uncond = logits[:m], (logits[m:] if sampling.uses_cfg else None)
            codes = sample_from_probs(
                sampling.code_probs(cond, uncond), [s.generator for s in seqs]
            ).cpu()  # (m,)
            for seq, code in zip(seqs, codes.tolist(), strict=True):
                seq.codes.append(code)
                seq.next_token = self.layout.image_offset + code
                self._count(seq.job, 1)
            self.stats.image_tokens += m
        for seq in self._seqs:
            if isinstance(seq, _TextSeq):
                logits = self.text_head(hidden[seq.offset : seq.offset + 1])  # (1, V)
                job: TextJob = seq.job  # type: ignore[assignment]
                token = int(job.sampling.choose(logits, seq.generator)[0])
                seq.next_token = token
                seq.push(token)
                self._count(seq.job, 1)
                self.stats.text_tokens += 1
        self.stats.recent.append((time.monotonic(), len(self._seqs)))
        for active in self._active:
            if active.job.progress:
                active.job.sink(Progress(active.done, active.total))

    def _count(self, job: Job, n: int) -> None:
        for active in self._active:
            if active.job is job:
                active.done += n
                return

    def _drop_finished(self) -> None:
        finished = [s for s in self._seqs if s.finished]
        if not finished:
            return
        for seq in finished:
            if isinstance(seq, _ImageSeq):
                h, w = seq.job.request.grid  # type: ignore[attr-defined]
                codes = torch.tensor(seq.codes).view(h, w)
                image = self.pipe.decode_codes(codes[None])[0] if self.decode_images else None
                seq.job.sink(ImageCodes(seq.index, codes, image))
                self.stats.images += 1
            else:
                seq.job.sink(seq.finish())  # type: ignore[attr-defined]
        done = {id(s) for s in finished}
        still = []
        for active in self._active:
            active.seqs = [s for s in active.seqs if id(s) not in done]
            if active.seqs:
                still.append(active)
            else:
                active.job.sink(Finished())
                self.stats.jobs_done += 1
        self._active = still
        self._remove(finished)

    # ------------------------------------------------------------------ the batch
    def _forward(self) -> None:
        """Append each sequence's drawn token to its rows: one decoder forward, all rows."""
        tokens = torch.tensor([s.next_token for s in self._seqs for _ in range(s.rows)])
        self._mask = F.pad(self._mask, (0, 1), value=1)
        self._hidden = self._decode(
            tokens[:, None].to(self._mask.device),
            self._mask,
            self._next_pos[:, None],
            self._cache,
        )
        self._next_pos = self._next_pos + 1
        self.stats.steps += 1
        self.stats.last_step_rows = int(tokens.shape[0])
        self.stats.max_step_rows = max(self.stats.max_step_rows, self.stats.last_step_rows)

    def _decode(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        cache: DynamicCache,
    ) -> torch.Tensor:
        out = self.decoder(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            **cache_kwargs(self.decoder, cache),
        )
        return out.last_hidden_state[:, -1]  # (R, H)

    def _remove(self, seqs: list[_Seq]) -> None:
        """Cut ``seqs``' rows out of the batch (their KV cache is freed)."""
        if not seqs:
            return
        gone = {id(s) for s in seqs}
        keep_seqs = [s for s in self._seqs if id(s) not in gone]
        if not keep_seqs:
            self._reset_batch()
            return
        keep = torch.tensor(
            [s.offset + k for s in keep_seqs for k in range(s.rows)], device=self._mask.device
        )
        mask = self._mask[keep]
        used = torch.nonzero(mask.sum(dim=0) > 0)
        first = int(used[0]) if used.numel() else 0
        layers = self._cache.layers
        for i, layer in enumerate(layers):
            layers[i] = GrowingLayer(layer.keys[keep, :, first:], layer.values[keep, :, first:])
        self._mask = mask[:, first:].contiguous()
        self._hidden = self._hidden[keep]
        self._next_pos = self._next_pos[keep]
        self._seqs = keep_seqs
        self._renumber()

    def _renumber(self) -> None:
        offset = 0
        for seq in self._seqs:
            seq.offset = offset
            offset += seq.rows

    def _reset_batch(self) -> None:
        self._seqs = []
        self._cache = self._mask = self._next_pos = self._hidden = None

    def _check_model(self) -> None:
        """Refuse models whose cache this engine cannot re-pack (sliding windows, ...), and
        check that the sliced heads reproduce the model's logits."""
        layout = self.layout
        probe = [*([] if layout.bos_id is None else [layout.bos_id]), layout.uncond_id]
        probe.append(layout.boi_id)
        with torch.inference_mode():
            cache = DynamicCache(config=self.model.config)
            ids, mask, positions = left_pad([probe], layout.padding_id, self.model.device)
            self._decode(ids, mask, positions, cache)
            if any(type(layer) is not DynamicLayer for layer in cache.layers):
                kinds = sorted({type(layer).__name__ for layer in cache.layers})
                raise ConfigError(
                    f"{type(self.model).__name__}: liquidgen serve batches full-attention "
                    f"caches only (this model uses {kinds})"
                )
        self.image_head.verify(probe)
        self.text_head.verify(probe, self.model.device)


class _FullHead(DecoderHead):
    """The whole LM head applied to last hidden states, as the model's own forward does."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.head = model.get_output_embeddings()
        self.init_head(model.config)

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.post_process(self.head(hidden[:, None, :]))[:, 0]  # (N, V)

    def reference_logits(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=ids, position_ids=positions, logits_to_keep=1)
        return out.logits[:, -1]

    def own_logits(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        hidden = self.model.get_decoder()(input_ids=ids, position_ids=positions)
        return self(hidden.last_hidden_state[:, -1])

    def model_name(self) -> str:
        return type(self.model).__name__
