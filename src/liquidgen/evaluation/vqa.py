"""Visual question answering: exact-match accuracy per question type.

Three sources, reported apart:

- ``world``: renders of world scenes the model never saw (a fixed evaluation seed, world split
  ``train``, i.e. seen shape-colour pairs), one question of each type the scene allows
  (colour, shape, size, count, exist, relation);
- ``world_heldout``: the same for scenes that always show a held-out shape-colour pair;
- ``easy_vqa``: the official easy-VQA test split (9,673 questions on 1,000 images; types
  ``shape``, ``color`` and ``yes/no``). By default a fixed, evenly spaced subset of
  :data:`DEFAULT_EASY_VQA_QUESTIONS` questions, which keeps the split's answer mix.

World images are rendered at every size the checkpoint generates and at its square
understanding size, in turn (question ``k`` of scene ``i`` has the size of scene ``i``); the
pipeline pads each to a square and resizes it to the understanding size, as for any user
image. Answers are decoded greedily (at most :data:`MAX_ANSWER_TOKENS` tokens) and judged by
:func:`liquidgen.world.score_answer`: after normalising case, punctuation, articles, number
words and plurals, the answer must be the expected word, or a short phrase whose only
answer-like word is the expected one ("It is red." counts, "red or blue" does not). The
overall accuracy of a source is the fraction of its questions answered right.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from PIL import Image
from tqdm import tqdm

from liquidgen.errors import ConfigError
from liquidgen.evaluation.t2i import size_name
from liquidgen.world import make_example, score_answer
from liquidgen.world.scene import check_image_size

DEFAULT_WORLD_QUESTIONS = 300  # per world source
DEFAULT_EASY_VQA_QUESTIONS = 1000  # of the 9,673 test questions
DEFAULT_ANSWER_BATCH = 16
MAX_ANSWER_TOKENS = 16  # answers are one word; a model that rambles is wrong anyway
WORLD_SOURCES = {"world": "train", "world_heldout": "heldout"}  # source -> world split
SOURCES: tuple[str, ...] = (*WORLD_SOURCES, "easy_vqa")
# Scene seeds of the world sources (training recipes use small seeds); never change them.
WORLD_SEEDS = {"world": 620_001, "world_heldout": 620_002}
EASY_VQA_YES_NO = ("yes", "no")

AnswerFn = Callable[[Sequence[Image.Image], Sequence[str]], list[str]]


@dataclasses.dataclass(frozen=True)
class VQAItem:
    """One question about one image, with the expected answer."""

    source: str
    image: Image.Image
    question: str
    answer: str
    qtype: str
    size: str  # "WxH" of the image as given to the model (before its own pre-processing)


@dataclasses.dataclass(frozen=True)
class VQARecord:
    """The model's answer to one :class:`VQAItem` and the verdict."""

    source: str
    qtype: str
    size: str
    question: str
    answer: str
    prediction: str
    correct: bool

    def to_dict(self) -> dict[str, Any]:
        return {"task": "vqa", **dataclasses.asdict(self)}


def world_items(source: str, limit: int, sizes: Sequence[tuple[int, int]]) -> list[VQAItem]:
    """The first ``limit`` questions of the fixed scenes of a world source.

    Scene ``i`` is example ``i`` of the world stream ``WORLD_SEEDS[source]`` at size
    ``sizes[i % len(sizes)]``; all its questions are taken before the next scene.
    """
    if source not in WORLD_SOURCES:
        raise ConfigError(f"unknown world source {source!r}; expected one of {list(WORLD_SOURCES)}")
    if limit < 1:
        raise ConfigError(f"the question limit must be >= 1, got {limit}")
    if not sizes:
        raise ConfigError("no image size to render")
    for w, h in sizes:
        check_image_size(w, h)
    items: list[VQAItem] = []
    index = 0
    while len(items) < limit:
        size = sizes[index % len(sizes)]
        example = make_example(index, WORLD_SEEDS[source], size, WORLD_SOURCES[source])
        for q in example.questions:
            items.append(
                VQAItem(source, example.image, q.question, q.answer, q.qtype, size_name(size))
            )
        index += 1
    return items[:limit]


def easy_vqa_type(answer: str) -> str:
    """easy-VQA question type from its answer: ``yes/no``, ``shape`` or ``color``."""
    from liquidgen.corpora.easy_vqa import COLORS, SHAPES

    if answer in EASY_VQA_YES_NO:
        return "yes/no"
    if answer in SHAPES:
        return "shape"
    if answer in COLORS:
        return "color"
    raise ConfigError(f"unexpected easy-VQA answer {answer!r}")


def easy_vqa_items(limit: int | None = DEFAULT_EASY_VQA_QUESTIONS) -> list[VQAItem]:
    """easy-VQA test questions: all of them (``limit=None``) or ``limit`` evenly spaced ones.

    Questions are stored image by image, so even spacing spreads the subset over the images.
    Raises :class:`~liquidgen.corpora.DatasetUnavailableError` without the ``easy-vqa`` package.
    """
    from liquidgen.corpora.easy_vqa import load_questions

    data = load_questions("test")
    total = len(data)
    if limit is not None and limit < 1:
        raise ConfigError(f"the question limit must be >= 1, got {limit}")
    count = total if limit is None else min(limit, total)
    items = []
    for k in range(count):
        image, question, answer = data[k * total // count]
        size = size_name(image.size)
        items.append(VQAItem("easy_vqa", image, question, answer, easy_vqa_type(answer), size))
    return items


def evaluate_vqa(
    answer: AnswerFn,
    items: Sequence[VQAItem],
    *,
    batch_size: int = DEFAULT_ANSWER_BATCH,
    progress: bool = True,
) -> list[VQARecord]:
    """Ask every question (``batch_size`` at a time) and judge each answer.

    ``answer(images, questions) -> answers`` is usually ``pipeline.answers`` with greedy
    decoding; tests pass an oracle to check the scoring path without a model.
    """
    if batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    records: list[VQARecord] = []
    with tqdm(total=len(items), unit="q", desc="vqa", disable=not progress) as bar:
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            predictions = answer([i.image for i in chunk], [i.question for i in chunk])
            if len(predictions) != len(chunk):
                raise ConfigError(
                    f"the answer function returned {len(predictions)} answers for "
                    f"{len(chunk)} questions"
                )
            for item, prediction in zip(chunk, predictions, strict=True):
                records.append(
                    VQARecord(
                        source=item.source,
                        qtype=item.qtype,
                        size=item.size,
                        question=item.question,
                        answer=item.answer,
                        prediction=prediction,
                        correct=score_answer(item.answer, prediction),
                    )
                )
            bar.update(len(chunk))
    return records


def _accuracy(records: Sequence[VQARecord]) -> float:
    return sum(r.correct for r in records) / len(records)


def summarize_vqa(records: Sequence[VQARecord]) -> dict[str, Any]:
    """Per source: overall accuracy (fraction of questions right), accuracy and question count
    per type, and accuracy per image size."""
    summary: dict[str, Any] = {}
    for source in SOURCES:
        mine = [r for r in records if r.source == source]
        if not mine:
            continue
        types = list(dict.fromkeys(r.qtype for r in mine))
        sizes = list(dict.fromkeys(r.size for r in mine))
        by_type = {t: [r for r in mine if r.qtype == t] for t in types}
        summary[source] = {
            "overall": _accuracy(mine),
            "questions": len(mine),
            "per_type": {t: _accuracy(rs) for t, rs in by_type.items()},
            "counts": {t: len(rs) for t, rs in by_type.items()},
            "per_size": {s: _accuracy([r for r in mine if r.size == s]) for s in sizes},
        }
    return summary
