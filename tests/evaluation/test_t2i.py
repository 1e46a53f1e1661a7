"""Text-to-image scoring: fixed prompt sets, perfect and wrong 'generations', GenEval's mean."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from PIL import Image

from liquidgen.errors import ConfigError
from liquidgen.evaluation import t2i
from liquidgen.evaluation.t2i import (
    T2IRecord,
    evaluate_t2i,
    prompt_set,
    summarize_t2i,
)
from liquidgen.world import BACKGROUNDS, TAGS, render, scene_for_spec
from liquidgen.world.text import HELDOUT_TAGS

SIZES = [(32, 32), (48, 32)]


def _spec_index() -> dict:
    return {s.prompt: s for split in t2i.SPLITS for s in prompt_set(3)[split]}


def perfect_generator(specs: dict):
    """Renders, for each prompt, a scene holding exactly what the prompt asks."""
    calls: list[dict] = []

    def generate(prompts: Sequence[str], *, width, height, n, seed, progress=None):
        calls.append({"prompts": list(prompts), "seed": seed, "n": n})
        out = []
        for p, prompt in enumerate(prompts):
            row = []
            for j in range(n):
                rng = np.random.default_rng(seed + p * n + j)
                row.append(render(scene_for_spec(specs[prompt], rng, width, height)))
            out.append(row)
        if progress is not None:
            progress(1, 1)
        return out

    generate.calls = calls  # type: ignore[attr-defined]
    return generate


def blank_generator(prompts, *, width, height, n, seed, progress=None):
    """Empty backgrounds: no prompt is ever followed."""
    return [[Image.new("RGB", (width, height), BACKGROUNDS["white"])] * n for _ in prompts]


def test_prompt_set_is_fixed_distinct_and_split_by_composition() -> None:
    a, b = prompt_set(4), prompt_set(4)
    assert [s.to_dict() for s in a["seen"]] == [s.to_dict() for s in b["seen"]]
    for split, tags in (("seen", TAGS), ("heldout", HELDOUT_TAGS)):
        specs = a[split]
        assert [s.tag for s in specs] == sorted((s.tag for s in specs), key=tags.index)
        assert {s.tag for s in specs} == set(tags)
        assert len({s.prompt for s in specs}) == len(specs)  # no prompt twice
        assert all(s.is_heldout() == (split == "heldout") for s in specs)
    # a smaller set is a prefix of a larger one, category by category
    big = prompt_set(8)
    for split in t2i.SPLITS:
        for tag in {s.tag for s in a[split]}:
            small = [s.prompt for s in a[split] if s.tag == tag]
            assert [s.prompt for s in big[split] if s.tag == tag][: len(small)] == small
    # categories with fewer possible prompts give all they have: six shapes, six held-out pairs
    assert sum(s.tag == "single_object" for s in big["seen"]) == 6
    assert sum(s.tag == "colors" for s in big["heldout"]) == 6
    with pytest.raises(ConfigError):
        prompt_set(0)
    # other seeds and an exclusion list give a disjoint set drawn the same way (validation)
    taken = {s.prompt for split in t2i.SPLITS for s in big[split]}
    other = prompt_set(4, seeds={"seen": 1, "heldout": 2}, exclude=taken)
    assert other["seen"] and not {s.prompt for split in t2i.SPLITS for s in other[split]} & taken
    assert not any(s.tag == "single_object" for s in other["seen"])  # all six are taken


def test_perfect_generations_score_one_everywhere() -> None:
    generate = perfect_generator(_spec_index())
    result = evaluate_t2i(
        generate, SIZES, n=2, prompts_per_tag=3, seed=5, batch_size=4, progress=False
    )
    summary = summarize_t2i(result.records)
    for split in t2i.SPLITS:
        assert summary[split]["overall"] == 1.0
        assert set(summary[split]["per_tag"].values()) == {1.0}
        assert [summary[split]["per_size"][f"{w}x{h}"]["overall"] for w, h in SIZES] == [1.0, 1.0]
    n_prompts = len(prompt_set(3)["seen"]) + len(prompt_set(3)["heldout"])
    assert len(result.records) == n_prompts * 2 * len(SIZES)
    # image j of global prompt p has seed 5 + p * n + j, whatever the batching
    first_size = [r for r in result.records if r.size == "32x32"]
    assert [r.seed for r in first_size] == [5 + i for i in range(n_prompts * 2)]
    assert [c["seed"] for c in generate.calls[:2]] == [5, 5 + 4 * 2]
    # one sample per (split, category, size): the first prompt's first image
    assert len(result.samples) == (len(TAGS) + len(HELDOUT_TAGS)) * len(SIZES)
    assert all(s.record.image == 0 and s.record.correct for s in result.samples)


def test_wrong_generations_score_zero_with_reasons() -> None:
    result = evaluate_t2i(blank_generator, SIZES[:1], n=1, prompts_per_tag=2, progress=False)
    assert not any(r.correct for r in result.records)
    assert all(r.reasons for r in result.records)
    summary = summarize_t2i(result.records)
    assert summary["seen"]["overall"] == 0.0 and summary["heldout"]["overall"] == 0.0


def test_overall_is_the_mean_over_categories_not_over_images() -> None:
    def rec(split: str, tag: str, ok: bool, size: str = "32x32") -> T2IRecord:
        return T2IRecord(split, tag, "p", size, 0, 0, ok, ())

    records = [rec("seen", "single_object", ok) for ok in (True, False)]  # 1/2
    records += [rec("seen", "counting", ok) for ok in (True, False, False, False)]  # 1/4
    records += [rec("seen", "counting", True, "48x32")]  # the other size: 1/1
    records += [rec("heldout", "colors", ok) for ok in (True, True, False)]  # 2/3
    summary = summarize_t2i(records)
    seen = summary["seen"]
    assert seen["per_tag"] == {"single_object": 0.5, "counting": 0.4}
    assert seen["counts"] == {"single_object": 2, "counting": 5}
    assert seen["overall"] == pytest.approx(0.45)  # (0.5 + 0.4) / 2, not 3/7 pooled
    assert seen["per_size"]["32x32"]["overall"] == pytest.approx((0.5 + 0.25) / 2)
    assert seen["per_size"]["48x32"]["overall"] == 1.0
    assert summary["heldout"]["overall"] == pytest.approx(2 / 3)


def test_unreadable_images_fail_instead_of_ending_the_run(monkeypatch) -> None:
    def broken(image):
        raise ValueError("math domain error")

    monkeypatch.setattr(t2i, "parse", broken)
    result = evaluate_t2i(blank_generator, SIZES[:1], n=1, prompts_per_tag=1, progress=False)
    assert not any(r.correct for r in result.records)
    assert "the parser failed" in result.records[0].reasons[0]


def test_generators_that_break_the_contract_are_reported() -> None:
    def too_few(prompts, *, width, height, n, seed, progress=None):
        return [[Image.new("RGB", (width, height))] * (n - 1) for _ in prompts]

    def wrong_size(prompts, *, width, height, n, seed, progress=None):
        return [[Image.new("RGB", (width + 4, height))] * n for _ in prompts]

    with pytest.raises(ConfigError, match="expected 2"):
        evaluate_t2i(too_few, SIZES, n=2, prompts_per_tag=1, progress=False)
    with pytest.raises(ConfigError, match="36x32"):
        evaluate_t2i(wrong_size, SIZES, n=1, prompts_per_tag=1, progress=False)
    with pytest.raises(ConfigError, match="n \\(images per prompt\\)"):
        evaluate_t2i(blank_generator, SIZES, n=0, progress=False)
