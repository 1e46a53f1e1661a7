"""Captions, prompt specs and questions agree with the scene; held-out compositions stay out."""

from __future__ import annotations

import re

import numpy as np
import pytest

from liquidgen.errors import ConfigError
from liquidgen.world.scene import (
    COLORS,
    HELDOUT_PAIRS,
    SHAPES,
    Scene,
    WorldObject,
    make_object,
    sample_scene,
)
from liquidgen.world.score import score_scene
from liquidgen.world.text import (
    CAPTION_STYLES,
    HELDOUT_TAGS,
    NUMBER_WORDS,
    QUESTION_TYPES,
    RELATION_PHRASES,
    TAGS,
    PromptSpec,
    captions,
    evaluation_prompts,
    plural,
    questions,
    reference,
    sample_spec,
    scene_for_spec,
    scene_prompts,
)

HELDOUT_PHRASES = [f"{color} {shape}" for shape, color in HELDOUT_PAIRS]
PHRASE_TO_RELATION = {v: k for k, v in RELATION_PHRASES.items()}


def _scenes(n: int, seed: int = 0, split: str = "train") -> list[Scene]:
    rng = np.random.default_rng(seed)
    sizes = [(64, 64), (128, 128), (96, 160), (160, 96)]
    return [sample_scene(rng, *sizes[i % 4], split=split) for i in range(n)]


def _find(scene: Scene, phrase: str) -> list[WorldObject]:
    """Objects a reference phrase ("large red circle", "blue object") denotes."""
    words = phrase.split()
    return [
        o
        for o in scene.objects
        if all(w in (o.size, o.color, o.shape, "object") for w in words)
        and (words[-1] == "object" or words[-1] == o.shape)
    ]


def test_captions_name_every_object_and_are_deterministic() -> None:
    for scene in _scenes(120):
        caps = captions(scene, np.random.default_rng(7))
        assert caps == captions(scene, np.random.default_rng(7))
        assert len(caps) == len(CAPTION_STYLES)
        short, full, counted_caption, relation, background = caps
        n = len(scene.objects)
        assert counted_caption.lower().startswith(f"{NUMBER_WORDS[n]} object")
        assert scene.background in background
        for o in scene.objects:
            for caption in caps:
                assert o.color in caption and (o.shape in caption or plural(o.shape) in caption)
            assert o.size in full
        assert short == short.rstrip(".") + "." and short[0].isupper()
        # the relation style states a true relation between the two objects it names
        m = re.match(
            r"An? (\w+ \w+ \w+) (to the left of|to the right of|above|below) an? (\w+ \w+ \w+)",
            relation,
        )
        if n >= 2 and m:
            a, rel, b = (
                _find(scene, m.group(1)),
                PHRASE_TO_RELATION[m.group(2)],
                _find(scene, m.group(3)),
            )
            assert any(scene.relation_holds(x, rel, y) for x in a for y in b), relation


def test_scene_prompts_are_satisfied_by_their_scene() -> None:
    rng = np.random.default_rng(1)
    seen = set()
    for scene in _scenes(200, seed=1):
        for spec in scene_prompts(scene, rng):
            seen.add(spec.tag)
            assert score_scene(spec, scene), (spec, scene)
            assert PromptSpec.from_dict(spec.to_dict()) == spec
            assert not spec.is_heldout()
            for req in spec.include:
                assert req.shape in spec.prompt or plural(req.shape) in spec.prompt
    assert seen == set(TAGS)


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_sampled_specs_can_be_drawn_and_scored(split: str) -> None:
    rng = np.random.default_rng(2)
    tags = HELDOUT_TAGS if split == "heldout" else TAGS
    for tag in tags:
        for _ in range(15):
            spec = sample_spec(rng, tag, split)
            assert spec.tag == tag
            assert spec.is_heldout() == (split == "heldout")
            scene = scene_for_spec(spec, rng, 128, 128)
            assert score_scene(spec, scene), (spec, scene)
            expected = sum(req.count for req in spec.include)
            assert len(scene.objects) == expected


def test_evaluation_prompts_are_deterministic_and_cover_tags() -> None:
    a = evaluation_prompts(4, seed=3)
    assert a == evaluation_prompts(4, seed=3) and a != evaluation_prompts(4, seed=4)
    assert [s.tag for s in a] == [t for t in TAGS for _ in range(4)]
    held = evaluation_prompts(4, seed=3, split="heldout")
    assert {s.tag for s in held} == set(HELDOUT_TAGS) and all(s.is_heldout() for s in held)
    with pytest.raises(ConfigError):
        sample_spec(np.random.default_rng(0), "counting", "heldout")
    with pytest.raises(ConfigError):
        sample_spec(np.random.default_rng(0), "texture")


def _check_answer(scene: Scene, question: str, answer: str, qtype: str) -> None:
    """Answer ``question`` independently from the scene and compare."""
    if qtype == "count":
        m = re.fullmatch(r"How many (.+) are there\?", question)
        assert m
        words = m.group(1).split()
        shape_word = words[-1]
        color = words[0] if words[0] in COLORS else None
        shape = next((s for s in SHAPES if plural(s) == shape_word), None)
        n = sum(
            (color is None or o.color == color) and (shape is None or o.shape == shape)
            for o in scene.objects
        )
        assert answer == str(n)
    elif qtype == "exist":
        m = re.search(r"an? (\w+) (\w+)\?$", question)
        assert m
        present = any(o.color == m.group(1) and o.shape == m.group(2) for o in scene.objects)
        assert answer == ("yes" if present else "no")
    elif qtype == "relation":
        m = re.fullmatch(
            r"Is the (.+) (to the left of|to the right of|above|below) the (.+)\?", question
        )
        assert m
        (a,), (b,) = _find(scene, m.group(1)), _find(scene, m.group(3))
        holds = scene.relation_holds(a, PHRASE_TO_RELATION[m.group(2)], b)
        assert answer == ("yes" if holds else "no")
    else:
        phrase = question.rsplit(" the ", 1)[1].removesuffix("?").removesuffix(" small or large")
        found = _find(scene, phrase)
        assert len(found) == 1, (question, scene)  # the reference is unique
        obj = found[0]
        assert answer == getattr(obj, qtype)


def test_answers_are_correct_against_the_scene() -> None:
    rng = np.random.default_rng(4)
    counts: dict[str, list[str]] = {t: [] for t in QUESTION_TYPES}
    for scene in _scenes(300, seed=4):
        for q in questions(scene, rng):
            question, answer, qtype = q
            _check_answer(scene, question, answer, qtype)
            counts[qtype].append(answer)
    assert all(len(v) > 50 for v in counts.values()), {k: len(v) for k, v in counts.items()}
    for qtype in ("exist", "relation"):  # yes/no questions are balanced
        share = counts[qtype].count("yes") / len(counts[qtype])
        assert 0.35 < share < 0.65, (qtype, share)
    assert {"0", "1", "2"} <= set(counts["count"])


def test_references_are_minimal_and_unique() -> None:
    a = make_object("circle", "red", "large", 30, 30, 128)
    b = make_object("circle", "blue", "large", 90, 30, 128)
    c = make_object("star", "red", "small", 60, 100, 128)
    scene = Scene(128, 128, "white", (a, b, c))
    assert reference(c, scene) == "star"
    assert reference(a, scene) == "red circle"
    assert reference(a, scene, omit="color") is None  # two large circles
    assert reference(c, scene, omit="shape") == "small object"
    assert reference(b, scene, omit="shape") == "blue object"


def test_train_text_never_names_heldout_compositions() -> None:
    rng = np.random.default_rng(5)
    for scene in _scenes(300, seed=5):
        texts = captions(scene, rng) + [s.prompt for s in scene_prompts(scene, rng)]
        texts += [q.question for q in questions(scene, rng)]
        for text in texts:
            assert not any(p in text.lower() for p in HELDOUT_PHRASES), text
        for spec in scene_prompts(scene, rng):
            assert not spec.is_heldout()
