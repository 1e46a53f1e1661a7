"""The data mixture: a deterministic, resumable stream of fixed-length rows from weighted sources.

Order of operations, all a pure function of ``seed`` and counters:

1. **Draw k** picks a source with probability proportional to its weight (choices are
   generated in blocks of :data:`_BLOCK` from ``rng(seed, block)``).
2. The m-th draw from source s reads record ``perm_s,e[m mod N_s]`` with ``e = m // N_s``:
   every epoch visits each record once, in an order fixed by ``rng(seed, s, e)``.
3. The record becomes an :class:`~liquidgen.formats.Example` with ``rng(seed, k)`` for its
   per-example randomness (caption choice, CFG dropout), so the same draw always yields
   the same tokens.
4. Examples are **packed** greedily into rows of ``seq_len`` tokens (an example that does
   not fit starts the next row; longer ones are truncated) or **padded** one per row.
   Each example's position ids restart at 0; transformers 5 detects the restarts
   (``find_packed_sequence_indices``) and builds a block-diagonal causal mask, so packed
   documents never attend to each other. Targets are shifted *inside* each example, so no
   example is trained to predict the next one's first token.

The global row stream does not depend on the number of processes: optimiser step ``s``
consumes rows ``[s*G, (s+1)*G)`` and rank ``r`` of ``W`` takes micro-batch rows
``a*(b*W) + r*b + [0, b)``. Every rank builds the whole stream (examples are cheap: a
caption tokenization and an array copy) but tensors only its own rows; this is what
makes a 2-process run and a 1-process run with the same global batch see the same data,
lets the loss be normalised by the *global* target count without a collective, and
makes the iterator state (a handful of counters) rank-independent.
"""

from __future__ import annotations

import dataclasses
import random
import warnings
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch

from liquidgen.errors import CheckpointError, ConfigError
from liquidgen.formats import IGNORE_INDEX

_BLOCK = 4096  # source choices generated per RNG call
_STREAM_SOURCE = 1  # RNG stream ids keep the uses of the seed independent
_STREAM_PERM = 2
_STREAM_EXAMPLE = 3
_STREAM_VAL = 4
STATE_VERSION = 1
PAD_MULTIPLE = 64  # micro-batch lengths are rounded up to a multiple of this


class ExampleLike(Protocol):
    """What the mixture needs from a formatted example (``liquidgen.formats.Example``)."""

    input_ids: list[int]
    labels: list[int]  # aligned with input_ids, unshifted (HF convention); -100 = no loss
    modality: str


class ExampleSource(Protocol):
    """A finite, indexable collection of records read in one sequence format."""

    name: str
    modality: str

    def __len__(self) -> int: ...

    def example(self, index: int, rng: random.Random) -> ExampleLike:
        """Format record ``index``; all randomness must come from ``rng``."""
        ...


def example_rng(seed: int, stream: int, index: int) -> random.Random:
    """The generator owned by one draw: independent of every other draw and of call order.

    String seeds are hashed with SHA-512 by ``random.Random``, so this does not depend on
    ``PYTHONHASHSEED``.
    """
    return random.Random(f"liquidgen/{seed}/{stream}/{index}")


@dataclasses.dataclass
class Row:
    """One packed (or padded) training row; all arrays are (T,) with T = real tokens."""

    input_ids: np.ndarray  # (T,) int64
    targets: np.ndarray  # (T,) int64: the id position t must predict, or -100
    position_ids: np.ndarray  # (T,) int64: restart at 0 for each example
    examples: int  # number of examples in the row

    @property
    def num_targets(self) -> int:
        return int((self.targets != IGNORE_INDEX).sum())


def example_arrays(example: ExampleLike, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """``(input_ids, targets)`` of one example, truncated to ``seq_len``.

    ``targets[t] = labels[t + 1]``: the shift stays inside the example, and its last
    position predicts nothing.
    """
    if len(example.labels) != len(example.input_ids):
        raise ValueError(
            f"{example.modality} example: {len(example.labels)} labels for {len(example.input_ids)} ids"
        )
    ids = np.asarray(example.input_ids[:seq_len], dtype=np.int64)
    labels = np.asarray(example.labels[: seq_len + 1], dtype=np.int64)
    targets = np.full(len(ids), IGNORE_INDEX, dtype=np.int64)
    targets[: len(labels) - 1] = labels[1 : len(ids) + 1]
    return ids, targets


def make_row(parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> Row:
    """Concatenate examples into one row with per-example position ids."""
    ids = np.concatenate([p[0] for p in parts])
    targets = np.concatenate([p[1] for p in parts])
    positions = np.concatenate([np.arange(len(p[0]), dtype=np.int64) for p in parts])
    return Row(ids, targets, positions, len(parts))


class Mixture:
    """Weighted, epoch-based sampling over sources, packed or padded into rows.

    ``state_dict()`` captures the position *before* the next unplaced example, so a
    restored mixture yields exactly the rows the original would have yielded next.
    """

    def __init__(
        self,
        sources: Sequence[ExampleSource],
        weights: Sequence[float],
        *,
        seq_len: int,
        packing: bool,
        seed: int,
    ) -> None:
        if len(sources) != len(weights) or not sources:
            raise ConfigError("the mixture needs one weight per source and at least one source")
        for source in sources:
            if len(source) == 0:
                raise ConfigError(f"data source {source.name!r} is empty")
        total = float(sum(weights))
        self.sources = list(sources)
        self.probs = np.asarray(weights, dtype=np.float64) / total
        self.seq_len = seq_len
        self.packing = packing
        self.seed = seed
        self.draws = 0  # draws placed into rows so far
        self.taken = [0] * len(sources)  # per-source draws placed so far
        self.rows = 0  # rows produced so far
        self._choices: tuple[int, np.ndarray] | None = None  # (block, source index per draw)
        self._perms: dict[int, tuple[int, np.ndarray]] = {}  # source -> (epoch, permutation)
        self._pending: tuple[np.ndarray, np.ndarray] | None = None  # built but not yet placed
        self._pending_source = -1
        self._warned: set[int] = set()  # image-bearing sources whose truncation was reported

    # -- drawing -------------------------------------------------------------------------
    def _source_of(self, draw: int) -> int:
        block = draw // _BLOCK
        if self._choices is None or self._choices[0] != block:
            rng = np.random.default_rng((self.seed, _STREAM_SOURCE, block))
            self._choices = (block, rng.choice(len(self.sources), size=_BLOCK, p=self.probs))
        return int(self._choices[1][draw % _BLOCK])

    def _record_of(self, source: int, count: int) -> int:
        size = len(self.sources[source])
        epoch, offset = divmod(count, size)
        cached = self._perms.get(source)
        if cached is None or cached[0] != epoch:
            rng = np.random.default_rng((self.seed, _STREAM_PERM, source, epoch))
            cached = (epoch, rng.permutation(size))
            self._perms[source] = cached
        return int(cached[1][offset])

    def _peek(self) -> tuple[np.ndarray, np.ndarray]:
        """Build (once) the next unplaced example."""
        if self._pending is None:
            source = self._source_of(self.draws)
            record = self._record_of(source, self.taken[source])
            example = self.sources[source].example(
                record, example_rng(self.seed, _STREAM_EXAMPLE, self.draws)
            )
            too_long = len(example.input_ids) > self.seq_len
            if too_long and example.modality != "text" and source not in self._warned:
                self._warned.add(source)  # text is cut on purpose (the paper truncates to 2048)
                warnings.warn(
                    f"source {self.sources[source].name!r}: a {example.modality} example of "
                    f"{len(example.input_ids)} tokens is cut to data.seq_len={self.seq_len}; "
                    "its image or answer is lost",
                    stacklevel=2,
                )
            self._pending = example_arrays(example, self.seq_len)
            self._pending_source = source
        return self._pending

    def _consume(self) -> tuple[np.ndarray, np.ndarray]:
        part = self._peek()
        self.taken[self._pending_source] += 1
        self.draws += 1
        self._pending = None
        return part

    def next_row(self) -> Row:
        """The next row of the stream (at least one example, at most ``seq_len`` tokens)."""
        parts = [self._consume()]
        used = len(parts[0][0])
        while self.packing and used < self.seq_len:
            candidate = self._peek()
            if used + len(candidate[0]) > self.seq_len:
                break
            parts.append(self._consume())
            used += len(candidate[0])
        self.rows += 1
        return make_row(parts)

    # -- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Counters that pin the stream position (JSON-serialisable, rank-independent)."""
        return {
            "version": STATE_VERSION,
            "seed": self.seed,
            "seq_len": self.seq_len,
            "packing": self.packing,
            "sources": [s.name for s in self.sources],
            "sizes": [len(s) for s in self.sources],
            "draws": self.draws,
            "taken": list(self.taken),
            "rows": self.rows,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved position; the stream definition must be the same."""
        expected = self.state_dict()
        for key in ("version", "seed", "seq_len", "packing", "sources", "sizes"):
            if state.get(key) != expected[key]:
                raise CheckpointError(
                    f"data state does not match this run: {key} was {state.get(key)!r}, now {expected[key]!r}"
                )
        self.draws = int(state["draws"])
        self.taken = [int(t) for t in state["taken"]]
        self.rows = int(state["rows"])
        self._pending = None


@dataclasses.dataclass
class MicroBatch:
    """Tensors for one forward pass of this rank (see :func:`collate` for the length)."""

    input_ids: torch.Tensor  # (B, T) int64
    position_ids: torch.Tensor  # (B, T) int64
    targets: torch.Tensor  # (B, T) int64, -100 where there is no loss (incl. padding)
    tokens: int  # real (non-padding) tokens


@dataclasses.dataclass
class StepBatch:
    """Everything one optimiser step consumes on this rank."""

    micro_batches: list[MicroBatch]
    global_targets: int  # target tokens in the whole global batch (all ranks)
    global_tokens: int  # real tokens in the whole global batch


def collate(rows: Sequence[Row], pad_id: int, max_len: int | None = None) -> MicroBatch:
    """Stack rows, right-padding them to a common length.

    The length is the longest row rounded up to a multiple of :data:`PAD_MULTIPLE` (at
    most ``max_len``): a handful of distinct shapes lets oneDNN and torch.compile reuse
    their kernels across steps. Padding continues the last example's position ids, so it
    forms no new segment (unpacked rows keep the plain causal attention path), carries no
    target, and causal attention keeps real tokens from seeing it.
    """
    longest = max(len(r.input_ids) for r in rows)
    length = -(-longest // PAD_MULTIPLE) * PAD_MULTIPLE
    if max_len is not None:
        length = max(min(length, max_len), longest)
    ids = np.full((len(rows), length), pad_id, dtype=np.int64)
    targets = np.full((len(rows), length), IGNORE_INDEX, dtype=np.int64)
    positions = np.zeros((len(rows), length), dtype=np.int64)
    tokens = 0
    for i, row in enumerate(rows):
        n = len(row.input_ids)
        tokens += n
        ids[i, :n] = row.input_ids
        targets[i, :n] = row.targets
        positions[i, :n] = row.position_ids
        positions[i, n:] = row.position_ids[-1] + 1 + np.arange(length - n)
    return MicroBatch(
        torch.from_numpy(ids), torch.from_numpy(positions), torch.from_numpy(targets), tokens
    )


class DistributedBatcher:
    """Cuts the global row stream into this rank's micro-batches, step by step."""

    def __init__(
        self,
        mixture: Mixture,
        *,
        global_batch: int,
        micro_batch: int,
        rank: int,
        world_size: int,
        pad_id: int,
    ) -> None:
        if global_batch % (micro_batch * world_size):
            raise ConfigError(
                f"global_batch {global_batch} is not a multiple of micro_batch x world_size "
                f"({micro_batch} x {world_size})"
            )
        self.mixture = mixture
        self.global_batch = global_batch
        self.micro_batch = micro_batch
        self.rank = rank
        self.world_size = world_size
        self.pad_id = pad_id

    def next_step(self) -> StepBatch:
        """Build the next global batch and return this rank's share of it."""
        rows = [self.mixture.next_row() for _ in range(self.global_batch)]
        stride = self.micro_batch * self.world_size
        mine = [
            collate(
                rows[
                    start + self.rank * self.micro_batch : start
                    + (self.rank + 1) * self.micro_batch
                ],
                self.pad_id,
                self.mixture.seq_len,
            )
            for start in range(0, self.global_batch, stride)
        ]
        return StepBatch(
            micro_batches=mine,
            global_targets=sum(r.num_targets for r in rows),
            global_tokens=sum(len(r.input_ids) for r in rows),
        )

    def state_dict(self) -> dict[str, Any]:
        return self.mixture.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mixture.load_state_dict(state)


def validation_batches(
    source: ExampleSource,
    *,
    count: int,
    seq_len: int,
    micro_batch: int,
    rank: int,
    world_size: int,
    pad_id: int,
    seed: int,
) -> list[MicroBatch]:
    """This rank's padded micro-batches over the first ``count`` records of ``source``.

    Every rank gets the same number of batches (FSDP2 needs matching collectives); the
    batches that run past the end are rows without targets.
    """
    count = min(count, len(source))
    rows = [
        make_row([example_arrays(source.example(i, example_rng(seed, _STREAM_VAL, i)), seq_len)])
        for i in range(count)
    ]
    stride = micro_batch * world_size
    total = -(-count // stride) * stride
    empty = Row(
        np.array([pad_id], dtype=np.int64),
        np.array([IGNORE_INDEX], dtype=np.int64),
        np.zeros(1, dtype=np.int64),
        0,
    )
    rows += [empty] * (total - count)
    return [
        collate(
            rows[start + rank * micro_batch : start + (rank + 1) * micro_batch], pad_id, seq_len
        )
        for start in range(0, total, stride)
    ]
