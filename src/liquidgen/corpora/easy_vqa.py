"""easy-VQA (Victor Zhou, 2019; MIT licence), loaded through its PyPI package ``easy-vqa``.

The package ships 4,000 train and 1,000 test 64x64 PNGs, each one coloured shape
(rectangle, circle or triangle in one of 8 colours) on a random light background, with
38,575 / 9,673 questions over 13 answers. The official train/test split is kept.

Two views are exposed: :func:`load_questions` gives ``(image, question, answer)`` triples;
:func:`load_captions` gives ``(image, caption)`` pairs built from the dataset's metadata.
easy-VQA ships no per-image labels, so each image's shape and colour are *derived from its
own questions and answers* ("what color is the shape?" -> blue; "is there not a circle?"
-> yes rules circles out): every question narrows the image's candidate shapes and colours.
Images whose attributes stay ambiguous get a caption naming only what is known ("a
circle.", "a blue shape.") and images with nothing known are left out of the captions.

:data:`EASY_VQA_VOCABULARY` lets :func:`liquidgen.world.parse.parse` read these images
(palette from easy-VQA's generator, ``gen_data/color.py``).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import types
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from liquidgen.corpora import DatasetUnavailableError
from liquidgen.errors import ConfigError
from liquidgen.world.parse import STRAY_BLOB_FRACTION, ParseVocabulary, load_image
from liquidgen.world.scene import BACKGROUNDS, SIZES

SPLITS = ("train", "test")
SHAPES: tuple[str, ...] = ("rectangle", "circle", "triangle")
COLORS: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "gray": (128, 128, 128),
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "teal": (0, 128, 128),
    "brown": (165, 42, 42),
}
# The smallest easy-VQA object is a triangle of side 8 px in a 64 px image.
_SMALLEST_AREA = 0.5 * (8 / 64) ** 2 * 3**0.5 / 2
EASY_VQA_VOCABULARY = ParseVocabulary(
    colors=COLORS,
    shapes={"rectangle": "square", "circle": "circle", "triangle": "triangle"},
    sizes=SIZES,
    backgrounds=BACKGROUNDS,
    min_object_area=STRAY_BLOB_FRACTION * _SMALLEST_AREA,
    square_boxes=False,  # rectangles take any aspect ratio
)

_WHAT_SHAPE = re.compile(
    r"what (?:shape is in the image|shape is present|shape does the image contain"
    r"|is the (\w+) shape)\?"
)
_WHAT_COLOR = re.compile(r"what (?:color is the (\w+)|is the color of the (\w+))\?")


def _package() -> types.ModuleType:
    """The optional ``easy_vqa`` package, or a clear error saying how to install it."""
    try:
        import easy_vqa
    except ImportError:
        raise DatasetUnavailableError(
            "the easy-vqa package is not installed; install liquidgen's data extra "
            "(pip install 'liquidgen[data]')"
        ) from None
    return easy_vqa


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ConfigError(f"easy-VQA split must be one of {', '.join(SPLITS)}, got {split!r}")
    return split


@functools.cache
def _raw(split: str) -> tuple[list[str], list[str], list[int], dict[int, str]]:
    """Questions, answers, image ids and image paths of a split, straight from the package."""
    pkg = _package()
    if _check_split(split) == "train":
        texts, answers, ids = pkg.get_train_questions()
        paths = pkg.get_train_image_paths()
    else:
        texts, answers, ids = pkg.get_test_questions()
        paths = pkg.get_test_image_paths()
    return list(texts), list(answers), [int(i) for i in ids], {int(k): v for k, v in paths.items()}


@dataclasses.dataclass(frozen=True)
class ImageAttributes:
    """What an image's questions reveal: its shape and colour, ``None`` where ambiguous."""

    shape: str | None
    color: str | None


def _narrow(question: str, answer: str, shapes: set[str], colors: set[str]) -> None:
    """Remove from ``shapes``/``colors`` every value the question-answer pair rules out."""
    if m := _WHAT_SHAPE.fullmatch(question):
        shapes &= {answer}
        if m.group(1):
            colors &= {m.group(1)}
        return
    if m := _WHAT_COLOR.fullmatch(question):
        colors &= {answer}
        named = m.group(1) or m.group(2)
        if named != "shape":
            shapes &= {named}
        return
    # yes/no: "is there (not) a X ...", "does the image (not) contain ...", "is (no|a) X present"
    negated = " not " in question or question.startswith("is no ")
    holds = (answer == "yes") != negated
    words = set(re.findall(r"\w+", question))
    for values, vocabulary in ((shapes, SHAPES), (colors, tuple(COLORS))):
        named = {v for v in vocabulary if v in words}
        if named:
            if holds:
                values &= named
            else:
                values -= named


@functools.cache
def image_attributes(split: str) -> dict[int, ImageAttributes]:
    """Shape and colour of every image of ``split``, derived from its questions."""
    texts, answers, ids, paths = _raw(split)
    candidates = {i: (set(SHAPES), set(COLORS)) for i in paths}
    for text, answer, image_id in zip(texts, answers, ids, strict=True):
        shapes, colors = candidates[image_id]
        _narrow(text, answer, shapes, colors)
    return {
        i: ImageAttributes(
            next(iter(s)) if len(s) == 1 else None, next(iter(c)) if len(c) == 1 else None
        )
        for i, (s, c) in sorted(candidates.items())
    }


def caption_for(attributes: ImageAttributes) -> str | None:
    """``"a blue circle."``, ``"a circle."``, ``"a blue shape."`` or ``None``."""
    noun = attributes.shape or "shape"
    if attributes.color is None and attributes.shape is None:
        return None
    phrase = f"{attributes.color} {noun}" if attributes.color else noun
    return f"a {phrase}."


class EasyVQAQuestions(Sequence[tuple[Image.Image, str, str]]):
    """``(image, question, answer)`` triples of one split; images load on access."""

    def __init__(self, split: str) -> None:
        self.split = _check_split(split)
        self.questions, self.answers, self.image_ids, self.paths = _raw(split)

    def __len__(self) -> int:
        return len(self.questions)

    def __getitem__(self, index: int) -> tuple[Image.Image, str, str]:  # type: ignore[override]
        path = self.paths[self.image_ids[index]]
        return load_image(path).convert("RGB"), self.questions[index], self.answers[index]


class EasyVQACaptions(Sequence[tuple[Image.Image, str]]):
    """``(image, caption)`` pairs of one split, captions from the derived attributes."""

    def __init__(self, split: str) -> None:
        self.split = _check_split(split)
        paths = _raw(split)[3]
        self.items: list[tuple[Path, str]] = [
            (Path(paths[i]), caption)
            for i, attrs in image_attributes(split).items()
            if (caption := caption_for(attrs)) is not None
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Image.Image, str]:  # type: ignore[override]
        path, caption = self.items[index]
        return load_image(path).convert("RGB"), caption


def load_questions(split: str) -> EasyVQAQuestions:
    """easy-VQA's question-answer triples for ``split`` (``"train"`` or ``"test"``)."""
    return EasyVQAQuestions(split)


def load_captions(split: str) -> EasyVQACaptions:
    """easy-VQA images with captions built from their metadata, for ``split``."""
    return EasyVQACaptions(split)


def answers() -> list[str]:
    """The 13 possible answers, as the package lists them."""
    return list(_package().get_answers())


def image_paths(split: str) -> dict[int, str]:
    """Image id -> PNG path of ``split``."""
    return dict(_raw(split)[3])
