"""The prompt-reading diagnostics of ``liquidgen eval t2i``: shuffled prompts and chance."""

from __future__ import annotations

import numpy as np
from PIL import Image

from liquidgen.evaluation.t2i import (
    chance_level,
    evaluate_t2i,
    prompt_set,
    shuffled_prompts,
    summarize_t2i,
)
from liquidgen.world import render
from liquidgen.world.text import scene_for_spec


def test_shuffled_prompts_stay_in_category_and_differ() -> None:
    specs = prompt_set(4)["seen"]
    shuffled = shuffled_prompts(specs)
    assert len(shuffled) == len(specs)
    for a, b in zip(specs, shuffled, strict=True):
        assert a.tag == b.tag and a.prompt != b.prompt
    assert sorted(s.prompt for s in shuffled) == sorted(s.prompt for s in specs)  # a permutation


def test_chance_level_is_low_and_deterministic() -> None:
    chance = chance_level(3)
    assert chance == chance_level(3)
    assert 0.0 < chance["seen"] < 0.3 and 0.0 <= chance["heldout"] < 0.3


def _faithful(prompts, *, width, height, n, seed, progress=None):
    """A perfect model: the true scene of each prompt, rendered."""
    spec_of = {s.prompt: s for split in prompt_set(2).values() for s in split}
    return [
        [
            render(scene_for_spec(spec_of[p], np.random.default_rng(seed + j), width, height))
            for j in range(n)
        ]
        for p in prompts
    ]


def _blind(prompts, *, width, height, n, seed, progress=None):
    """A model that ignores its prompt: always the same red circle."""
    spec = prompt_set(1)["seen"][0]
    image = render(scene_for_spec(spec, np.random.default_rng(0), width, height))
    return [[image.copy() for _ in range(n)] for _ in prompts]


def test_sensitivity_separates_a_reading_model_from_a_blind_one() -> None:
    faithful = summarize_t2i(
        evaluate_t2i(_faithful, [(128, 128)], n=1, prompts_per_tag=2, progress=False).records
    )
    assert faithful["seen"]["overall"] == 1.0
    assert faithful["seen"]["sensitivity"] > 0.5
    blind = summarize_t2i(
        evaluate_t2i(_blind, [(128, 128)], n=1, prompts_per_tag=2, progress=False).records
    )
    assert abs(blind["seen"]["sensitivity"]) <= 0.2
    assert isinstance(_blind(["x"], width=32, height=32, n=1, seed=0)[0][0], Image.Image)
