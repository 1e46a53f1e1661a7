"""Text about the world: captions, GenEval-like prompts with machine-readable specs, and QA.

**Captions** describe every object, in :data:`CAPTION_STYLES` paraphrase families (short
GenEval-like lists, full lists with sizes, counted lists, a relation sentence, with the
background). **Prompt specs** follow GenEval's metadata: a ``tag`` (category), the
``prompt`` text, ``include`` requirements (shape, count, optional colour/size, optional
``position = (relation, index of an earlier requirement)``) and ``exclude`` requirements
(fewer than ``count`` of that shape). **Questions** ask colour, shape, size, count,
existence (yes/no) and relations (yes/no); answers are one word or a digit.

Held-out compositions (see :mod:`liquidgen.world.scene`): with ``split="train"`` no text
names a held-out shape-colour pair or states a held-out relation; ``split="heldout"``
prompts always use at least one; ``split=None`` imposes nothing.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from liquidgen.errors import ConfigError
from liquidgen.world.scene import (
    COLORS,
    HELDOUT_PAIRS,
    HELDOUT_RELATIONS,
    RELATIONS,
    SHAPES,
    SIZES,
    ObjectRequest,
    RelationRequest,
    Scene,
    WorldObject,
    check_split,
    is_heldout_pair,
    is_heldout_relation,
    relation_axis,
    sample_scene,
)

NUMBER_WORDS = {0: "zero", 1: "one", 2: "two", 3: "three", 4: "four"}
PLURALS = {"cross": "crosses"}
RELATION_PHRASES = {
    "left of": "to the left of",
    "right of": "to the right of",
    "above": "above",
    "below": "below",
}
TAGS: tuple[str, ...] = (
    "single_object",
    "two_object",
    "counting",
    "colors",
    "position",
    "color_attr",
)
HELDOUT_TAGS: tuple[str, ...] = ("colors", "position", "color_attr")  # tags that can hold out
CAPTION_STYLES: tuple[str, ...] = ("short", "full", "counted", "relation", "background")
QUESTION_TYPES: tuple[str, ...] = ("color", "shape", "size", "count", "exist", "relation")
MAX_COUNT = 4  # counting prompts ask for 1..MAX_COUNT objects


# ---- phrases -----------------------------------------------------------------------------------
def plural(shape: str) -> str:
    """``"circle"`` -> ``"circles"``, ``"cross"`` -> ``"crosses"``."""
    return PLURALS.get(shape, shape + "s")


def with_article(phrase: str) -> str:
    """Prefix ``a``/``an``: ``"orange circle"`` -> ``"an orange circle"``."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def counted(count: int, phrase: str, shape: str) -> str:
    """``(2, "red circle", "circle")`` -> ``"two red circles"``; count 1 takes an article."""
    if count == 1:
        return with_article(phrase)
    return f"{NUMBER_WORDS[count]} {phrase[: -len(shape)]}{plural(shape)}"


def join_list(items: Sequence[str]) -> str:
    """``["a", "b", "c"]`` -> ``"a, b and c"``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."


def _mentionable_pair(shape: str, color: str, split: str | None) -> bool:
    """Whether text in ``split`` may name this shape-colour pair (train: never held-out ones)."""
    return split != "train" or not is_heldout_pair(shape, color)


def _mentionable_relation(shape_a: str, relation: str, shape_b: str, split: str | None) -> bool:
    return split != "train" or not is_heldout_relation(shape_a, relation, shape_b)


# ---- prompt specs --------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Requirement:
    """``count`` objects of ``shape`` (with the given colour/size, if set) must be present.

    In an ``exclude`` list it means: *fewer than* ``count`` objects of that shape (and colour).
    ``position = (relation, i)`` asks ``count`` of these objects to be ``relation`` an object
    matched by requirement ``i`` (an earlier entry of the same ``include`` list).
    """

    shape: str
    count: int = 1
    color: str | None = None
    size: str | None = None
    position: tuple[str, int] | None = None

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ConfigError(f"unknown shape {self.shape!r}")
        if self.color is not None and self.color not in COLORS:
            raise ConfigError(f"unknown colour {self.color!r}")
        if self.size is not None and self.size not in SIZES:
            raise ConfigError(f"unknown size {self.size!r}")
        if self.count < 1:
            raise ConfigError(f"requirement count must be >= 1, got {self.count}")
        if self.position is not None and self.position[0] not in RELATIONS:
            raise ConfigError(f"unknown relation {self.position[0]!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict without unset fields (GenEval's layout, ``shape`` for ``class``)."""
        out: dict[str, Any] = {"shape": self.shape, "count": self.count}
        if self.color is not None:
            out["color"] = self.color
        if self.size is not None:
            out["size"] = self.size
        if self.position is not None:
            out["position"] = [self.position[0], self.position[1]]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Requirement:
        """Inverse of :meth:`to_dict`."""
        position = data.get("position")
        return cls(
            shape=str(data["shape"]),
            count=int(data.get("count", 1)),
            color=data.get("color"),
            size=data.get("size"),
            position=(str(position[0]), int(position[1])) if position is not None else None,
        )


@dataclasses.dataclass(frozen=True)
class PromptSpec:
    """A prompt and the machine-readable condition an image must meet to follow it."""

    tag: str
    prompt: str
    include: tuple[Requirement, ...]
    exclude: tuple[Requirement, ...] = ()

    def __post_init__(self) -> None:
        if self.tag not in TAGS:
            raise ConfigError(f"unknown prompt tag {self.tag!r}; expected one of {', '.join(TAGS)}")
        for i, req in enumerate(self.include):
            if req.position is not None and not 0 <= req.position[1] < i:
                raise ConfigError(f"requirement {i} refers to requirement {req.position[1]}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "tag": self.tag,
            "prompt": self.prompt,
            "include": [r.to_dict() for r in self.include],
            "exclude": [r.to_dict() for r in self.exclude],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PromptSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(
            tag=str(data["tag"]),
            prompt=str(data["prompt"]),
            include=tuple(Requirement.from_dict(r) for r in data.get("include", ())),
            exclude=tuple(Requirement.from_dict(r) for r in data.get("exclude", ())),
        )

    def is_heldout(self) -> bool:
        """Whether the prompt names a held-out shape-colour pair or states a held-out relation."""
        for req in self.include:
            if req.color is not None and is_heldout_pair(req.shape, req.color):
                return True
            if req.position is not None:
                target = self.include[req.position[1]]
                if is_heldout_relation(req.shape, req.position[0], target.shape):
                    return True
        return False


def _single_object(shape: str) -> PromptSpec:
    return PromptSpec("single_object", with_article(shape), (Requirement(shape),))


def _two_object(a: str, b: str) -> PromptSpec:
    return PromptSpec(
        "two_object", f"{with_article(a)} and {with_article(b)}", (Requirement(a), Requirement(b))
    )


def _counting(shape: str, count: int) -> PromptSpec:
    return PromptSpec(
        "counting",
        f"{NUMBER_WORDS[count]} {plural(shape) if count > 1 else shape}",
        (Requirement(shape, count),),
        (Requirement(shape, count + 1),),
    )


def _colors(shape: str, color: str) -> PromptSpec:
    return PromptSpec(
        "colors", with_article(f"{color} {shape}"), (Requirement(shape, color=color),)
    )


def _position(a: str, relation: str, b: str) -> PromptSpec:
    """``a relation b``; GenEval lists the target ``b`` first."""
    return PromptSpec(
        "position",
        f"{with_article(a)} {RELATION_PHRASES[relation]} {with_article(b)}",
        (Requirement(b), Requirement(a, position=(relation, 0))),
    )


def _color_attr(a: str, color_a: str, b: str, color_b: str) -> PromptSpec:
    return PromptSpec(
        "color_attr",
        f"{with_article(f'{color_a} {a}')} and {with_article(f'{color_b} {b}')}",
        (Requirement(a, color=color_a), Requirement(b, color=color_b)),
    )


def _choice(rng: np.random.Generator, items: Sequence[Any]) -> Any:
    return items[int(rng.integers(len(items)))]


def sample_spec(rng: np.random.Generator, tag: str, split: str = "train") -> PromptSpec:
    """Draw a prompt of category ``tag`` for evaluation.

    ``split="train"`` prompts use only training compositions (an in-distribution test set
    comes from a different seed); ``split="heldout"`` prompts always use a held-out
    composition, and exist only for :data:`HELDOUT_TAGS`.
    """
    check_split(split)
    if tag not in TAGS:
        raise ConfigError(f"unknown prompt tag {tag!r}; expected one of {', '.join(TAGS)}")
    heldout = split == "heldout"
    if heldout and tag not in HELDOUT_TAGS:
        raise ConfigError(
            f"tag {tag!r} has no held-out prompts; use one of {', '.join(HELDOUT_TAGS)}"
        )
    train_pairs = sorted((sh, co) for sh in SHAPES for co in COLORS if not is_heldout_pair(sh, co))
    heldout_pairs = sorted(HELDOUT_PAIRS)
    if tag == "single_object":
        return _single_object(_choice(rng, SHAPES))
    if tag == "two_object":
        a, b = rng.choice(len(SHAPES), size=2, replace=False)
        return _two_object(SHAPES[a], SHAPES[b])
    if tag == "counting":
        return _counting(_choice(rng, SHAPES), int(rng.integers(1, MAX_COUNT + 1)))
    if tag == "colors":
        return _colors(*_choice(rng, heldout_pairs if heldout else train_pairs))
    if tag == "position":
        if heldout:
            pair, axis = _choice(rng, sorted(HELDOUT_RELATIONS, key=lambda p: (sorted(p[0]), p[1])))
            a, b = sorted(pair)
            if rng.random() < 0.5:
                a, b = b, a
            relation = _choice(rng, [r for r in RELATIONS if relation_axis(r) == axis])
            return _position(a, relation, b)
        while True:
            a, b = (SHAPES[i] for i in rng.choice(len(SHAPES), size=2, replace=False))
            relation = _choice(rng, RELATIONS)
            if not is_heldout_relation(a, relation, b):
                return _position(a, relation, b)
    # color_attr: two different shapes; held-out prompts have a held-out first pair
    first = _choice(rng, heldout_pairs if heldout else train_pairs)
    second = _choice(rng, [p for p in train_pairs if p[0] != first[0]])
    if rng.random() < 0.5:
        first, second = second, first
    return _color_attr(first[0], first[1], second[0], second[1])


def evaluation_prompts(n_per_tag: int, seed: int, split: str = "train") -> list[PromptSpec]:
    """``n_per_tag`` prompts for every tag the split has, deterministic from ``seed``."""
    rng = np.random.default_rng(seed)
    tags = HELDOUT_TAGS if check_split(split) == "heldout" else TAGS
    return [sample_spec(rng, tag, split) for tag in tags for _ in range(n_per_tag)]


def scene_for_spec(
    spec: PromptSpec,
    rng: np.random.Generator,
    width: int,
    height: int,
    *,
    lattice: int | None = None,
) -> Scene:
    """A scene holding exactly the objects ``spec`` asks for (free attributes drawn at random).

    Useful for training on prompts whose image shows nothing more than the prompt says.
    ``lattice`` is :func:`~liquidgen.world.scene.sample_scene`'s.
    """
    requests: list[ObjectRequest] = []
    relations: list[RelationRequest] = []
    first_index: list[int] = []
    for req in spec.include:
        first_index.append(len(requests))
        requests += [ObjectRequest(req.shape, req.color, req.size)] * req.count
    for i, req in enumerate(spec.include):
        if req.position is not None:
            relation, target = req.position
            for k in range(req.count):
                for t in range(spec.include[target].count):
                    relations.append(
                        RelationRequest(first_index[i] + k, relation, first_index[target] + t)
                    )
    # Only what the spec asks is fixed; free colours may not form held-out pairs by accident.
    split = None if spec.is_heldout() else "train"
    return sample_scene(
        rng, width, height, split=split, objects=requests, relations=relations, lattice=lattice
    )


def _unique_shapes(scene: Scene) -> list[str]:
    counts = Counter(o.shape for o in scene.objects)
    return sorted(s for s, c in counts.items() if c == 1)


def scene_prompts(
    scene: Scene, rng: np.random.Generator, split: str | None = "train"
) -> list[PromptSpec]:
    """At most one prompt per tag that ``scene`` satisfies (by GenEval's rules)."""
    objects = scene.objects
    shapes_present = sorted({o.shape for o in objects})
    counts = Counter(o.shape for o in objects)
    specs = [_single_object(_choice(rng, shapes_present))]
    if len(shapes_present) >= 2:
        a, b = (shapes_present[i] for i in rng.choice(len(shapes_present), 2, replace=False))
        specs.append(_two_object(a, b))
    shape = _choice(rng, shapes_present)
    specs.append(_counting(shape, counts[shape]))
    nameable = [o for o in objects if _mentionable_pair(o.shape, o.color, split)]
    if nameable:
        obj = _choice(rng, nameable)
        specs.append(_colors(obj.shape, obj.color))
    unique = _unique_shapes(scene)
    by_shape = {o.shape: o for o in objects}
    facts = [
        (a, rel, b)
        for a in unique
        for b in unique
        if a != b
        for rel in RELATIONS
        if scene.relation_holds(by_shape[a], rel, by_shape[b])
        and _mentionable_relation(a, rel, b, split)
    ]
    if facts:
        specs.append(_position(*_choice(rng, facts)))
    pairs = [(a, b) for a in nameable for b in nameable if a.shape < b.shape]
    if pairs:
        a, b = _choice(rng, pairs)
        if rng.random() < 0.5:
            a, b = b, a
        specs.append(_color_attr(a.shape, a.color, b.shape, b.color))
    return specs


# ---- captions ------------------------------------------------------------------------------------
def _grouped(objects: Sequence[WorldObject], *, with_size: bool) -> list[str]:
    """Noun phrases with identical objects counted: ``["two small red circles", ...]``."""
    keys = [o.describe(with_size=with_size) for o in objects]
    counts = Counter(keys)
    seen: list[str] = []
    for key in keys:
        if key not in seen:
            seen.append(key)
    shape_of = {o.describe(with_size=with_size): o.shape for o in objects}
    return [counted(counts[k], k, shape_of[k]) for k in seen]


_REFERENCE_ATTRIBUTES: dict[str | None, tuple[tuple[str, ...], ...]] = {
    None: (("shape",), ("color", "shape"), ("size", "shape"), ("size", "color", "shape")),
    "color": (("shape",), ("size", "shape")),
    "shape": (("color",), ("size",), ("size", "color")),
    "size": (("shape",), ("color", "shape")),
}


def reference(obj: WorldObject, scene: Scene, *, omit: str | None = None) -> str | None:
    """Shortest phrase naming ``obj`` uniquely in ``scene`` without the attribute ``omit``.

    E.g. ``"circle"``, ``"red circle"``, ``"large circle"``, ``"large red circle"``; when
    the shape is omitted, ``"object"`` stands in for it. ``None`` if no phrase is unique.
    """
    for attrs in _REFERENCE_ATTRIBUTES[omit]:
        matches = [o for o in scene.objects if all(getattr(o, a) == getattr(obj, a) for a in attrs)]
        if len(matches) == 1:
            words = [getattr(obj, a) for a in attrs]
            return " ".join(words if "shape" in attrs else [*words, "object"])
    return None


def captions(scene: Scene, rng: np.random.Generator, split: str | None = "train") -> list[str]:
    """One caption per style in :data:`CAPTION_STYLES`, each naming every object.

    Objects are listed in a random order; the relation style states one true relation
    (falling back to the full style if none may be stated in ``split``).
    """
    order = [scene.objects[i] for i in rng.permutation(len(scene.objects))]
    short = join_list(_grouped(order, with_size=False))
    full = join_list(_grouped(order, with_size=True))
    n = len(scene.objects)
    counted_caption = f"{NUMBER_WORDS[n]} object{'s' if n > 1 else ''}: {full}"
    relation_caption = full
    facts = [
        (a, rel, b)
        for a in order
        for b in order
        if a is not b
        for rel in RELATIONS
        if scene.relation_holds(a, rel, b) and _mentionable_relation(a.shape, rel, b.shape, split)
    ]
    if facts:
        a, rel, b = _choice(rng, facts)
        rest = [o for o in order if o is not a and o is not b]
        relation_caption = (
            f"{with_article(a.describe())} {RELATION_PHRASES[rel]} {with_article(b.describe())}"
        )
        if rest:
            relation_caption += ", with " + join_list(_grouped(rest, with_size=True))
    background = f"{full} on a {scene.background} background"
    return [_sentence(t) for t in (short, full, counted_caption, relation_caption, background)]


# ---- questions -----------------------------------------------------------------------------------
class Question(NamedTuple):
    """A question about a scene, its one-word (or digit) answer and its type."""

    question: str
    answer: str
    qtype: str


# The attribute questions: a template pair per attribute (one is drawn per question).
_ATTRIBUTE_TEMPLATES = {
    "color": ("What color is the {}?", "What is the color of the {}?"),
    "shape": ("What shape is the {}?", "Which shape is the {}?"),
    "size": ("What size is the {}?", "Is the {} small or large?"),
}


def _attribute_question(scene: Scene, rng: np.random.Generator, attribute: str) -> Question | None:
    """Ask for ``attribute`` (color, shape or size) of an object named without it; ``None``
    when no object can be named uniquely that way."""
    options = [(o, r) for o in scene.objects if (r := reference(o, scene, omit=attribute))]
    if not options:
        return None
    obj, ref = _choice(rng, options)
    template = _choice(rng, _ATTRIBUTE_TEMPLATES[attribute])
    return Question(template.format(ref), getattr(obj, attribute), attribute)


def _count_question(scene: Scene, rng: np.random.Generator, split: str | None) -> Question:
    kind = _choice(rng, ("all", "shape", "color", "color_shape"))
    shape = _choice(rng, SHAPES)
    color = _choice(rng, list(COLORS))
    if kind == "color_shape" and not _mentionable_pair(shape, color, split):
        kind = "shape"
    if kind == "all":
        return Question("How many objects are there?", str(len(scene.objects)), "count")
    if kind == "shape":
        n = sum(o.shape == shape for o in scene.objects)
        return Question(f"How many {plural(shape)} are there?", str(n), "count")
    if kind == "color":
        n = sum(o.color == color for o in scene.objects)
        return Question(f"How many {color} objects are there?", str(n), "count")
    n = sum(o.shape == shape and o.color == color for o in scene.objects)
    return Question(f"How many {color} {plural(shape)} are there?", str(n), "count")


def _exist_question(scene: Scene, rng: np.random.Generator, split: str | None) -> Question | None:
    present = sorted({(o.shape, o.color) for o in scene.objects})
    absent = [
        (sh, co)
        for sh in SHAPES
        for co in COLORS
        if (sh, co) not in present and _mentionable_pair(sh, co, split)
    ]
    present = [p for p in present if _mentionable_pair(*p, split)]
    ask_present = bool(present) and (not absent or rng.random() < 0.5)
    if not ask_present and not absent:
        return None
    shape, color = _choice(rng, present if ask_present else absent)
    template = _choice(rng, ("Is there {}?", "Does the image contain {}?"))
    phrase = with_article(f"{color} {shape}")
    return Question(template.format(phrase), "yes" if ask_present else "no", "exist")


def _relation_question(
    scene: Scene, rng: np.random.Generator, split: str | None
) -> Question | None:
    named = [(o, r) for o in scene.objects if (r := reference(o, scene))]
    options = [
        (a, ra, rel, b, rb)
        for a, ra in named
        for b, rb in named
        if a is not b
        for rel in RELATIONS
        if _mentionable_relation(a.shape, rel, b.shape, split)
    ]
    if not options:
        return None
    true = [opt for opt in options if scene.relation_holds(opt[0], opt[2], opt[3])]
    false = [opt for opt in options if not scene.relation_holds(opt[0], opt[2], opt[3])]
    ask_true = bool(true) and (not false or rng.random() < 0.5)
    _, ra, rel, _, rb = _choice(rng, true if ask_true else false)
    return Question(
        f"Is the {ra} {RELATION_PHRASES[rel]} the {rb}?", "yes" if ask_true else "no", "relation"
    )


def questions(
    scene: Scene, rng: np.random.Generator, split: str | None = "train"
) -> list[Question]:
    """One question of each type in :data:`QUESTION_TYPES` that the scene allows.

    References are the shortest unique phrase, so every question has exactly one answer;
    yes/no questions are balanced in expectation.
    """
    candidates = [
        *(_attribute_question(scene, rng, attribute) for attribute in _ATTRIBUTE_TEMPLATES),
        _count_question(scene, rng, split),
        _exist_question(scene, rng, split),
        _relation_question(scene, rng, split),
    ]
    return [q for q in candidates if q is not None]
