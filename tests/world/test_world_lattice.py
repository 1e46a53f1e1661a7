"""Issue 15's world changes: uniform object counts, lattice placement, prompted examples."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from liquidgen.errors import ConfigError
from liquidgen.world import WorldDataset, evaluate_scene, sample_scene
from liquidgen.world.scene import MAX_OBJECTS
from liquidgen.world.text import TAGS


@pytest.mark.parametrize(("width", "height"), [(128, 128), (160, 96)])
def test_object_counts_are_uniform(width: int, height: int) -> None:
    counts = collections.Counter(
        len(sample_scene(np.random.default_rng([5, i]), width, height).objects) for i in range(800)
    )
    assert set(counts) == set(range(1, MAX_OBJECTS + 1))
    # 200 expected each; a count that fails to lay out is no longer redrawn as a smaller one
    assert all(160 <= c <= 240 for c in counts.values()), counts


@pytest.mark.parametrize(("width", "height"), [(128, 128), (160, 96), (96, 160)])
def test_lattice_puts_every_centre_on_multiples(width: int, height: int) -> None:
    seen = set()
    for i in range(150):
        scene = sample_scene(np.random.default_rng([6, i]), width, height, lattice=8)
        for o in scene.objects:
            assert o.cx % 8 == 0 and o.cy % 8 == 0
            seen.add(len(scene.objects))
    assert seen == {1, 2, 3, 4}  # four objects still fit on the lattice


def test_fixed_count_and_bad_lattice() -> None:
    scene = sample_scene(np.random.default_rng(0), 128, 128, num_objects=3, lattice=8)
    assert len(scene.objects) == 3
    with pytest.raises(ConfigError, match="lattice"):
        sample_scene(np.random.default_rng(0), 128, 128, lattice=0)
    with pytest.raises(ConfigError, match="num_objects"):
        sample_scene(np.random.default_rng(0), 128, 128, num_objects=5)
    with pytest.raises(ConfigError, match="kind"):
        WorldDataset(2, [(64, 64)], seed=0, kind="stories")


def test_prompted_examples_cycle_categories_and_satisfy_their_prompt() -> None:
    data = WorldDataset(24, [(128, 128), (160, 96)], seed=1, kind="prompted", lattice=8)
    for i in range(len(data)):
        example = data[i]
        (spec,) = example.prompts
        assert spec.tag == TAGS[i % len(TAGS)]
        ok, reasons = evaluate_scene(spec, example.scene)
        assert ok, (spec.prompt, reasons)
        # exactly the objects the prompt asks for, nothing more
        assert len(example.scene.objects) == sum(r.count for r in spec.include)
        assert all(o.cx % 8 == 0 and o.cy % 8 == 0 for o in example.scene.objects)
        full, short = example.captions
        assert len(full) > len(short)
    assert (
        data[3].scene
        == WorldDataset(24, [(128, 128), (160, 96)], 1, kind="prompted", lattice=8)[3].scene
    )
