"""VQA scoring: fixed world questions, easy-VQA subset, oracle and hand-checked accuracies."""

from __future__ import annotations

from collections import Counter

import pytest

from liquidgen.corpora.easy_vqa import load_questions
from liquidgen.errors import ConfigError
from liquidgen.evaluation.vqa import (
    VQAItem,
    easy_vqa_items,
    evaluate_vqa,
    summarize_vqa,
    world_items,
)
from liquidgen.world.text import QUESTION_TYPES

SIZES = [(32, 32), (48, 32)]


def oracle(items: list[VQAItem]):
    """Answers every question right by looking it up (keyed by image pixels and question)."""
    table = {(i.image.tobytes(), i.question): i.answer for i in items}
    return lambda images, questions: [
        table[(im.tobytes(), q)] for im, q in zip(images, questions, strict=True)
    ]


def test_world_items_are_fixed_and_cover_every_question_type() -> None:
    items = world_items("world", 60, SIZES)
    again = world_items("world", 60, SIZES)
    assert len(items) == 60
    assert [(i.question, i.answer, i.size) for i in items] == [
        (i.question, i.answer, i.size) for i in again
    ]
    assert {i.qtype for i in items} == set(QUESTION_TYPES)
    assert {i.size for i in items} == {"32x32", "48x32"}
    assert all(i.image.size == tuple(int(v) for v in i.size.split("x")) for i in items)
    # a shorter list is a prefix; the held-out source shows other scenes
    assert [i.question for i in world_items("world", 7, SIZES)] == [i.question for i in items[:7]]
    heldout = world_items("world_heldout", 60, SIZES)
    assert [i.image.tobytes() for i in heldout[:1]] != [i.image.tobytes() for i in items[:1]]
    with pytest.raises(ConfigError, match="too small"):
        world_items("world", 5, [(16, 16)])
    with pytest.raises(ConfigError):
        world_items("world", 0, SIZES)


def test_oracle_answers_score_one_and_a_fixed_answer_scores_by_hand() -> None:
    items = world_items("world", 40, SIZES) + world_items("world_heldout", 40, SIZES)
    summary = summarize_vqa(evaluate_vqa(oracle(items), items, batch_size=7, progress=False))
    for source in ("world", "world_heldout"):
        assert summary[source]["overall"] == 1.0
        assert set(summary[source]["per_type"].values()) == {1.0}
        assert summary[source]["questions"] == 40

    always_yes = evaluate_vqa(lambda ims, qs: ["Yes."] * len(qs), items, progress=False)
    summary = summarize_vqa(always_yes)
    world = [i for i in items if i.source == "world"]
    by_type = Counter(i.qtype for i in world)
    yes = Counter(i.qtype for i in world if i.answer == "yes")
    assert summary["world"]["counts"] == dict(by_type)
    for qtype, count in by_type.items():
        assert summary["world"]["per_type"][qtype] == pytest.approx(yes[qtype] / count)
    # overall is the fraction of questions answered right (micro average)
    assert summary["world"]["overall"] == pytest.approx(sum(yes.values()) / len(world))


def test_easy_vqa_subset_is_evenly_spaced_and_typed_by_answer() -> None:
    data = load_questions("test")
    items = easy_vqa_items(40)
    assert len(items) == 40
    expected = [data.questions[k * len(data) // 40] for k in range(40)]
    assert [i.question for i in items] == expected
    assert {i.qtype for i in items} <= {"yes/no", "shape", "color"}
    assert all(
        (i.qtype == "yes/no") == (i.answer in ("yes", "no")) and i.size == "64x64" for i in items
    )
    summary = summarize_vqa(evaluate_vqa(oracle(items), items, progress=False))
    assert summary["easy_vqa"]["overall"] == 1.0


def test_answer_functions_that_break_the_contract_are_reported() -> None:
    items = world_items("world", 3, SIZES)
    with pytest.raises(ConfigError, match="2 answers for 3 questions"):
        evaluate_vqa(lambda ims, qs: ["red", "red"], items, progress=False)
