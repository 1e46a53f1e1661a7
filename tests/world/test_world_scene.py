"""Scenes: determinism, JSON, layout rules (bounds, gaps, unambiguous relations), splits."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from liquidgen.errors import ConfigError
from liquidgen.world.scene import (
    BORDER_MARGIN,
    HELDOUT_PAIRS,
    OBJECT_GAP,
    RELATION_BAND,
    RELATION_MARGIN,
    SIZES,
    ObjectRequest,
    RelationRequest,
    Scene,
    is_heldout_pair,
    make_object,
    parse_size,
    relation_holds,
    sample_scene,
    scenes_match,
)

SIZES_TESTED = [(64, 64), (128, 128), (96, 160), (160, 96)]


def test_same_seed_same_scene_and_json_roundtrip() -> None:
    a = sample_scene(np.random.default_rng(3), 160, 96)
    b = sample_scene(np.random.default_rng(3), 160, 96)
    c = sample_scene(np.random.default_rng(4), 160, 96)
    assert a == b and a != c
    assert Scene.from_json(a.to_json()) == a


@pytest.mark.parametrize(("width", "height"), SIZES_TESTED)
def test_layout_rules_hold(width: int, height: int) -> None:
    rng = np.random.default_rng(0)
    s = min(width, height)
    counts = set()
    for _ in range(150):
        scene = sample_scene(rng, width, height)
        counts.add(len(scene.objects))
        for o in scene.objects:
            x0, y0, x1, y1 = o.bbox
            assert x1 - x0 == pytest.approx(SIZES[o.size] * s, abs=0.02)
            margin = BORDER_MARGIN * s - 0.02
            assert x0 >= margin and y0 >= margin
            assert x1 <= width - margin and y1 <= height - margin
        for a, b in itertools.combinations(scene.objects, 2):
            gap = OBJECT_GAP * s - 0.02
            apart_x = a.bbox[2] + gap <= b.bbox[0] or b.bbox[2] + gap <= a.bbox[0]
            apart_y = a.bbox[3] + gap <= b.bbox[1] or b.bbox[3] + gap <= a.bbox[1]
            assert apart_x or apart_y
            for delta in (abs(a.cx - b.cx) / s, abs(a.cy - b.cy) / s):
                assert not (
                    RELATION_MARGIN - RELATION_BAND < delta < RELATION_MARGIN + RELATION_BAND
                )
    assert counts == {1, 2, 3, 4}


def test_relations_follow_centres_with_margin() -> None:
    s = 100
    a = make_object("circle", "red", "small", 20, 50, s)
    b = make_object("square", "blue", "small", 60, 52, s)
    assert relation_holds(a, "left of", b, s) and relation_holds(b, "right of", a, s)
    # 2 px apart vertically is below the 10 px margin: neither above nor below
    assert not relation_holds(a, "above", b, s) and not relation_holds(a, "below", b, s)
    scene = Scene(s, s, "white", (a, b))
    assert sorted(scene.relations()) == [(0, "left of", 1), (1, "right of", 0)]
    with pytest.raises(ConfigError):
        relation_holds(a, "near", b, s)


def test_train_split_avoids_and_heldout_split_shows_heldout_pairs() -> None:
    rng = np.random.default_rng(1)
    for _ in range(300):
        scene = sample_scene(rng, 128, 128, split="train")
        assert not any(is_heldout_pair(o.shape, o.color) for o in scene.objects)
    for _ in range(100):
        scene = sample_scene(rng, 128, 128, split="heldout")
        assert any((o.shape, o.color) in HELDOUT_PAIRS for o in scene.objects)


def test_requests_and_relations_are_honoured() -> None:
    rng = np.random.default_rng(2)
    requests = [ObjectRequest("star", "blue", "large"), ObjectRequest("circle")]
    for _ in range(20):
        scene = sample_scene(
            rng, 96, 160, objects=requests, relations=[RelationRequest(1, "above", 0)]
        )
        star, circle = scene.objects
        assert (star.shape, star.color, star.size) == ("star", "blue", "large")
        assert circle.shape == "circle"
        assert scene.relation_holds(circle, "above", star)
    with pytest.raises(ConfigError):  # a held-out pair cannot be asked for in training
        sample_scene(rng, 128, 128, objects=[ObjectRequest("circle", "purple")])


def test_bad_sizes_and_splits_are_config_errors() -> None:
    assert parse_size("160x96") == (160, 96)
    for bad in ("160", "axb", "16x16", "400x64"):
        with pytest.raises(ConfigError):
            parse_size(bad)
    with pytest.raises(ConfigError):
        sample_scene(np.random.default_rng(0), 128, 128, split="validation")


def test_scenes_match_needs_same_objects_and_places() -> None:
    scene = sample_scene(np.random.default_rng(5), 128, 128, objects=[ObjectRequest()] * 3)
    shuffled = Scene(scene.width, scene.height, "white", scene.objects[::-1])
    assert scenes_match(scene, shuffled)
    moved = scene.objects[0]
    far = make_object(moved.shape, moved.color, moved.size, moved.cx + 6, moved.cy, 128)
    assert not scenes_match(scene, Scene(128, 128, "white", (far, *scene.objects[1:])))
    recoloured = make_object(
        moved.shape,
        "black" if moved.color != "black" else "red",
        moved.size,
        moved.cx,
        moved.cy,
        128,
    )
    assert not scenes_match(scene, Scene(128, 128, "white", (recoloured, *scene.objects[1:])))
    assert not scenes_match(scene, Scene(128, 128, "white", scene.objects[1:]))
