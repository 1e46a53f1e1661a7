"""GenEval-rule scoring of specs on scenes and images, aggregation, answer scoring."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from liquidgen.world.render import render
from liquidgen.world.scene import Scene, make_object, sample_scene
from liquidgen.world.score import aggregate, evaluate_scene, score, score_answer, score_scene
from liquidgen.world.text import (
    PromptSpec,
    Question,
    Requirement,
    evaluation_prompts,
    scene_for_spec,
)

S = 128


def _scene(*objects: tuple[str, str, str, float, float]) -> Scene:
    return Scene(
        S, S, "white", tuple(make_object(sh, co, si, x, y, S) for sh, co, si, x, y in objects)
    )


RED_CIRCLE_LEFT = ("circle", "red", "small", 30, 60)
BLUE_STAR_RIGHT = ("star", "blue", "large", 95, 60)


def test_counting_is_exact() -> None:
    spec = PromptSpec("counting", "two stars", (Requirement("star", 2),), (Requirement("star", 3),))
    one = _scene(("star", "red", "small", 30, 30))
    two = _scene(("star", "red", "small", 30, 30), ("star", "blue", "small", 90, 30))
    three = _scene(*(("star", "red", "small", x, 30) for x in (20, 64, 108)))
    assert [score_scene(spec, s) for s in (one, two, three)] == [False, True, False]
    ok, reasons = evaluate_scene(spec, three)
    assert not ok and "fewer than 3 star" in reasons[0]


def test_colour_and_size_must_match() -> None:
    scene = _scene(RED_CIRCLE_LEFT, BLUE_STAR_RIGHT)
    assert score_scene(
        PromptSpec("colors", "a red circle", (Requirement("circle", color="red"),)), scene
    )
    assert not score_scene(
        PromptSpec("colors", "a blue circle", (Requirement("circle", color="blue"),)), scene
    )
    attr = PromptSpec(
        "color_attr",
        "a blue circle and a red star",
        (Requirement("circle", color="blue"), Requirement("star", color="red")),
    )
    assert not score_scene(attr, scene)  # colours swapped between the objects
    sized = PromptSpec("single_object", "a large star", (Requirement("star", size="large"),))
    assert score_scene(sized, scene)
    assert not score_scene(
        PromptSpec("single_object", "x", (Requirement("circle", size="large"),)), scene
    )


def test_position_needs_the_relation_and_a_target() -> None:
    scene = _scene(RED_CIRCLE_LEFT, BLUE_STAR_RIGHT)

    def position(a: str, rel: str, b: str) -> PromptSpec:
        return PromptSpec(
            "position", f"{a} {rel} {b}", (Requirement(b), Requirement(a, position=(rel, 0)))
        )

    assert score_scene(position("circle", "left of", "star"), scene)
    assert score_scene(position("star", "right of", "circle"), scene)
    assert not score_scene(position("circle", "right of", "star"), scene)
    assert not score_scene(position("circle", "above", "star"), scene)  # same height
    ok, reasons = evaluate_scene(position("circle", "left of", "square"), scene)
    assert not ok and any("no target" in r for r in reasons)
    assert score_scene(position("circle", "left of", "star").to_dict(), scene)  # dicts work too


def test_score_parses_images() -> None:
    rng = np.random.default_rng(0)
    for spec in evaluation_prompts(3, seed=1):
        image = render(scene_for_spec(spec, rng, 128, 128))
        assert score(spec, image), spec
        assert not score(spec, Image.new("RGB", (128, 128), "white"))
    wrong = render(sample_scene(rng, 128, 128, objects=[]))
    assert not score(evaluation_prompts(1, seed=0)[0], wrong)


def test_aggregate_is_the_mean_of_tag_accuracies() -> None:
    report = aggregate(
        [("a", True), ("a", False), ("b", True), ("b", True), ("b", True), ("b", False)]
    )
    assert report.per_tag == {"a": 0.5, "b": 0.75}
    assert report.counts == {"a": 2, "b": 4}
    assert report.overall == pytest.approx(0.625)
    assert "overall" in report.table()
    assert aggregate([]).overall == 0.0


@pytest.mark.parametrize(
    ("expected", "answer", "ok"),
    [
        ("red", "red", True),
        ("red", "Red.", True),
        ("red", "It is red.", True),
        ("red", "red or blue", False),
        ("red", "not red", False),
        ("red", "blue", False),
        ("2", "two", True),
        ("2", "There are 2.", True),
        ("2", "3", False),
        ("yes", "Yes!", True),
        ("no", "yes", False),
        ("circle", "circles", True),
        ("cross", "a cross", True),
        ("gray", "grey", True),
        ("red", "", False),
    ],
)
def test_score_answer_normalises(expected: str, answer: str, ok: bool) -> None:
    assert score_answer(Question("q?", expected, "color"), answer) is ok
    assert score_answer(expected, answer) is ok
