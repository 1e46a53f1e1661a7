"""Exact scorers: does an image follow a prompt spec, is an answer right.

:func:`evaluate_scene` applies GenEval's rules (Ghosh et al. 2023, ``evaluate_images.py``)
to a scene: every ``include`` requirement needs at least ``count`` objects of its shape
with the required colour/size, a ``position`` requirement needs ``count`` such objects to
stand in the relation to an object matched by its target requirement, and every ``exclude``
requirement needs *fewer* than ``count`` objects of its shape — so counts are exact.
Two differences, both because our "detector" is exact: objects are matched by their
attributes rather than by detector confidence order, and relations use the world's
centre-offset margin (:func:`liquidgen.world.scene.relation_holds`) instead of GenEval's
box-size-scaled threshold. :func:`aggregate` reports per-tag accuracy and GenEval's overall
score, the mean of the tag accuracies.
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from PIL import Image

from liquidgen.world.parse import parse
from liquidgen.world.scene import COLORS, SHAPES, SIZES, Scene, WorldObject
from liquidgen.world.text import NUMBER_WORDS, PLURALS, PromptSpec, Question, Requirement


def _matches(obj: WorldObject, req: Requirement) -> bool:
    return (
        obj.shape == req.shape
        and (req.color is None or obj.color == req.color)
        and (req.size is None or obj.size == req.size)
    )


def evaluate_scene(spec: PromptSpec | Mapping[str, Any], scene: Scene) -> tuple[bool, list[str]]:
    """Whether ``scene`` satisfies ``spec``, with the reasons it does not."""
    if not isinstance(spec, PromptSpec):
        spec = PromptSpec.from_dict(spec)
    reasons: list[str] = []
    groups: list[list[WorldObject] | None] = []
    for req in spec.include:
        found = [o for o in scene.objects if _matches(o, req)]
        if len(found) < req.count:
            reasons.append(f"expected {req.to_dict()} at least {req.count}, found {len(found)}")
            groups.append(None)
            continue
        if req.position is not None:
            relation, target = req.position
            targets = groups[target]
            if targets is None:
                reasons.append(f"no target for {req.shape} to be {relation}")
                groups.append(None)
                continue
            placed = [
                o for o in found if any(scene.relation_holds(o, relation, t) for t in targets)
            ]
            if len(placed) < req.count:
                reasons.append(f"expected {req.shape} {relation} {spec.include[target].shape}")
                groups.append(None)
                continue
            found = placed
        groups.append(found)
    for req in spec.exclude:
        n = sum(_matches(o, req) for o in scene.objects)
        if n >= req.count:
            reasons.append(f"expected fewer than {req.count} {req.shape}, found {n}")
    return not reasons, reasons


def score_scene(spec: PromptSpec | Mapping[str, Any], scene: Scene) -> bool:
    """Whether ``scene`` satisfies ``spec`` (GenEval's rules)."""
    return evaluate_scene(spec, scene)[0]


def score(spec: PromptSpec | Mapping[str, Any], image: Image.Image | np.ndarray) -> bool:
    """Whether ``image`` follows ``spec``: parse it, then apply GenEval's rules."""
    return score_scene(spec, parse(image))


@dataclasses.dataclass(frozen=True)
class Report:
    """Per-tag accuracy and GenEval's overall score (the mean over tags)."""

    per_tag: dict[str, float]
    counts: dict[str, int]
    overall: float

    def table(self) -> str:
        """A plain-text table, one row per tag, then the overall score."""
        lines = [f"{'tag':<14}{'n':>6}{'accuracy':>10}"]
        lines += [f"{t:<14}{self.counts[t]:>6}{self.per_tag[t]:>10.3f}" for t in self.per_tag]
        lines.append(f"{'overall':<14}{sum(self.counts.values()):>6}{self.overall:>10.3f}")
        return "\n".join(lines)


def aggregate(results: Iterable[tuple[str, bool]]) -> Report:
    """Fold ``(tag, correct)`` pairs into a :class:`Report`."""
    hits: dict[str, list[bool]] = defaultdict(list)
    for tag, ok in results:
        hits[tag].append(bool(ok))
    per_tag = {t: float(np.mean(v)) for t, v in hits.items()}
    overall = float(np.mean(list(per_tag.values()))) if per_tag else 0.0
    return Report(per_tag, {t: len(v) for t, v in hits.items()}, overall)


# ---- answers -------------------------------------------------------------------------------------
_DIGITS = {word: str(n) for n, word in NUMBER_WORDS.items()}
_SINGULAR = {p: s for s, p in PLURALS.items()} | {s + "s": s for s in SHAPES}
_SYNONYMS = {"grey": "gray", "yeah": "yes", "yep": "yes", "nope": "no"}
_FILLER = {"a", "an", "the", "it", "is", "its", "it's", "there", "are", "answer", "object"}


def normalize_answer(text: str) -> list[str]:
    """Lower-case words of an answer with number words as digits and plurals singular."""
    words = re.findall(r"[a-z0-9']+", text.lower())
    return [_SINGULAR.get(w, _DIGITS.get(w, _SYNONYMS.get(w, w))) for w in words]


_KNOWN_ANSWERS = set(COLORS) | set(SHAPES) | set(SIZES) | {"yes", "no", "not"} | set("0123456789")


def score_answer(question: Question | tuple[str, str, str] | str, answer: str) -> bool:
    """Whether ``answer`` gives the expected answer to ``question``.

    ``question`` is a :class:`~liquidgen.world.text.Question` (or any ``(question, answer,
    ...)`` tuple, e.g. easy-vqa's), or the expected answer itself. The answer counts when,
    after normalisation (case, punctuation, articles, number words, plurals), it is the
    expected word, or it is a short phrase whose only answer-like word is the expected one
    ("It is red." is right; "red or blue" is not).
    """
    expected_text = question if isinstance(question, str) else question[1]
    expected = " ".join(normalize_answer(expected_text))
    words = normalize_answer(answer)
    if " ".join(words) == expected:
        return True
    known = _KNOWN_ANSWERS | {expected}
    content = [w for w in words if w not in _FILLER]
    return bool(content) and {w for w in content if w in known} == {expected}
