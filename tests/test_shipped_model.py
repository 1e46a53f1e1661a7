"""Regression guard on the shipped liquidgen-tiny: it draws what it is asked and answers right.

Fixed prompts, seeds and questions; each check asserts a floor a little under what the
shipped weights score (see the model card), so a change that breaks generation, the
vocabulary layout, the size prefix or the chat format fails here — this is not a tuning
target. Also: ``liquidgen demo`` (what ``make demo`` runs) end to end, and the size budget.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from liquidgen.assets import TINY_MODEL, shipped
from liquidgen.cli import main
from liquidgen.evaluation.t2i import score_image
from liquidgen.evaluation.vqa import easy_vqa_items, world_items
from liquidgen.inference.pipeline import Pipeline
from liquidgen.world.score import score_answer
from liquidgen.world.text import sample_spec

SIZE_BUDGET_MB = 40.0  # tokenizer + LM, as shipped


@pytest.fixture(scope="module")
def pipe() -> Pipeline:
    return Pipeline.from_pretrained(shipped(TINY_MODEL))


def test_shipped_model_fits_the_size_budget() -> None:
    folder = shipped(TINY_MODEL)
    weights = sum(p.stat().st_size for p in folder.rglob("*.safetensors"))
    assert weights / 2**20 <= SIZE_BUDGET_MB
    card = (folder / "README.md").read_text()
    assert "## Evaluation" in card and "## Training" in card


def test_generated_images_follow_simple_prompts_at_every_bucket(pipe: Pipeline) -> None:
    rng = np.random.default_rng(2024)
    specs = [sample_spec(rng, tag) for tag in ("single_object", "two_object") for _ in range(2)]
    buckets = pipe.defaults.buckets
    assert len(buckets) >= 3, "multi-ratio: square, wide and tall buckets"
    verdicts = []
    for width, height in buckets:
        images = pipe.generate_images([s.prompt for s in specs], width=width, height=height, seed=7)
        for spec, (image,) in zip(specs, images, strict=True):
            assert image.size == (width, height)
            verdicts.append(score_image(spec, image)[0])
    # shipped weights: 4 / 12 (model card: single object 0.57, two objects 0.31 overall)
    assert sum(verdicts) >= 3, f"{sum(verdicts)}/{len(verdicts)} follow"


def test_answers_about_world_and_easy_vqa_images(pipe: Pipeline) -> None:
    side = pipe.defaults.understanding_size
    items = world_items("world", 12, [(side, side)]) + easy_vqa_items(8)
    answers = pipe.answers([i.image for i in items], [i.question for i in items])
    right = [score_answer(i.answer, a) for i, a in zip(items, answers, strict=True)]
    # shipped weights: 15 / 20 (world 8 / 12, easy-vqa 7 / 8); chance is about 1 / 5
    assert sum(right) >= 12, answers


def test_chat_runs_through_the_template(pipe: Pipeline) -> None:
    # the tiny model's text is poor (held-out perplexity ~41, model card): only the path
    reply = pipe.chat([{"role": "user", "content": "What does the len function return?"}])
    assert isinstance(reply, str) and reply.strip()


def test_demo_draws_and_answers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--seed", "0"]) == 0
    printed = capsys.readouterr().out
    assert "draw:" in printed and "see:" in printed and "true answer" in printed
    summary = json.loads((out / "demo.json").read_text())
    assert Image.open(out / "generated.png").size == tuple(summary["size"])
    assert Image.open(out / "scene.png").size == (128, 128)
    assert summary["question"]["answer"].strip()


def test_demo_missing_model_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--out", str(tmp_path / "o"), "--model", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o" / "generated.png").exists()
