"""What the serving engine is asked and what it answers.

The HTTP layer turns a checked request into a :class:`Job` (:class:`ImageJob`: a resolved
:class:`~liquidgen.inference.request.ImageRequest` of one prompt; :class:`TextJob`: prompt ids,
settings, budget and stop ids) and submits it to the :class:`~liquidgen.serving.engine.Engine`,
which reports to the job's ``sink`` from its scheduler thread: :class:`Progress`,
:class:`ImageCodes`, :class:`TextPiece`, :class:`TextDone`, :class:`Failed`; every admitted
job ends with exactly one :class:`Finished` or :class:`Failed`. :meth:`Engine.submit
<liquidgen.serving.engine.Engine.submit>` raises :class:`QueueFull` or :class:`EngineStopped`.
"""

from __future__ import annotations

import abc
import dataclasses
import itertools
from collections.abc import Callable, Sequence

import torch
from PIL import Image

from liquidgen.errors import ConfigError
from liquidgen.inference.request import ImageRequest
from liquidgen.inference.sampling import TextSampling

# --------------------------------------------------------------------------- events


@dataclasses.dataclass(frozen=True)
class Progress:
    done: int  # tokens drawn for the job so far
    total: int


@dataclasses.dataclass(frozen=True)
class ImageCodes:
    index: int  # image i of the job (seed + i)
    codes: torch.Tensor  # (h, w) long
    image: Image.Image | None = None  # the decoded picture, when the engine decodes


@dataclasses.dataclass(frozen=True)
class TextPiece:
    text: str


@dataclasses.dataclass(frozen=True)
class TextDone:
    text: str  # the whole reply, stripped (what Pipeline.chat returns)
    finish_reason: str  # "stop" | "length"
    prompt_tokens: int
    completion_tokens: int


@dataclasses.dataclass(frozen=True)
class Finished:
    """The job's last event after a success: every image or text piece has been sent."""


@dataclasses.dataclass(frozen=True)
class Failed:
    status: int  # HTTP status the API answers with
    message: str
    kind: str = "server_error"  # OpenAI error type


Event = Progress | ImageCodes | TextPiece | TextDone | Finished | Failed
Sink = Callable[[Event], None]


class QueueFull(Exception):
    """The waiting queue is full (the API answers 429)."""


class EngineStopped(Exception):
    """The engine is shutting down."""


# --------------------------------------------------------------------------- jobs
_ids = itertools.count(1)


@dataclasses.dataclass(eq=False)
class Job(abc.ABC):
    """A user's request as the engine runs it (built by the API after all checks); one of
    :class:`ImageJob` or :class:`TextJob`."""

    sink: Sink
    timeout: float | None = None  # seconds from submission (None: no limit)
    progress: bool = False  # send Progress events
    id: int = dataclasses.field(default_factory=lambda: next(_ids))
    cancelled: bool = False  # set by the API when the client goes away
    submitted: float = 0.0
    deadline: float | None = None

    @property
    @abc.abstractmethod
    def rows(self) -> int:
        """Decode rows the job holds in every step's batch (its CFG partners included)."""

    def cancel(self) -> None:
        """Free the job's rows at the next step (thread-safe: one boolean)."""
        self.cancelled = True


@dataclasses.dataclass(eq=False)
class ImageJob(Job):
    """Text-to-image: a resolved :class:`ImageRequest` of one prompt (``n`` images)."""

    request: ImageRequest | None = None

    def __post_init__(self) -> None:
        if self.request is None or len(self.request.cond_ids) != 1:
            raise ConfigError("an ImageJob holds a resolved request of exactly one prompt")

    @property
    def rows(self) -> int:
        r = self.request
        return r.n * (2 if r.sampling.uses_cfg else 1)


@dataclasses.dataclass(eq=False)
class TextJob(Job):
    """Text decoding (chat, VQA, captions): prompt ids, settings, budget and stop ids."""

    prompt_ids: Sequence[int] = ()
    sampling: TextSampling = dataclasses.field(default_factory=TextSampling)
    budget: int = 1  # new tokens at most (already capped to the context)
    stop_ids: frozenset[int] = frozenset()

    @property
    def rows(self) -> int:
        return 1
