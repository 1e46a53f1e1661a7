"""configs/smollm2-liquid end to end as a short variant: the real SmolLM2 GGUF, a few steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from liquidgen.recipes.build import Recipe, run

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_short_smollm2_recipe_expands_the_real_pretrained_llm(tmp_path: Path) -> None:
    """configs/smollm2-liquid: GGUF import, expansion with the shipped codes, a few steps."""
    from liquidgen.assets import TINY_MODEL, shipped

    recipe = Recipe.load(
        REPO / "configs/smollm2-liquid/recipe.yaml",
        {
            "work_dir": str(tmp_path / "work"),
            "out_dir": str(tmp_path / "out"),
            "tokenizer": {"pretrained": str(shipped(TINY_MODEL) / "vq")},
            "sizes": ["128x128", "160x96"],
            "easy_vqa_size": 32,  # easy-vqa's 4,000 + 1,000 images: 16x fewer pixels to encode
            "world": {"train": 6, "val": 2, "seed": 0},
            "train": {
                "config": str(REPO / "configs/smollm2-liquid/train.yaml"),
                "overrides": [
                    "max_steps=1",
                    "global_batch=1",
                    "micro_batch=1",
                    "data.seq_len=160",
                    "data.val_examples=1",
                    "optim.warmup_steps=0",
                    "eval_every=0",
                    "save_every=0",
                    "progress=false",
                ],
            },
            "evaluation": None,
        },
    )
    out = run(recipe, progress=False)
    config = json.loads((out / "config.json").read_text())
    layout = json.loads((out / "liquid_layout.json").read_text())
    assert config["model_type"] == "llama" and layout["codebook_size"] == 512
    # SmolLM2 has no unused slots: <boi>/<eoi>/<unconditional> are added after its 49,152
    assert layout["image_offset"] == 49152 + 3
    assert "## Training" in (out / "README.md").read_text()

    from liquidgen import Pipeline

    pipe = Pipeline.from_pretrained(out)
    assert "<|im_start|>" in (pipe.tokenizer.chat_template or "")
    (image,) = pipe.generate_image("a red circle", width=160, height=96, seed=0)
    assert image.size == (160, 96)
    assert isinstance(pipe.answer(image, "What color is the circle?", max_new_tokens=3), str)
    reply = pipe.chat([{"role": "user", "content": "What is the capital of France?"}])
    assert isinstance(reply, str)


@pytest.mark.slow
def test_short_text_only_control_skips_images_and_measures_the_base_first(
    tmp_path: Path, smollm2_hf: Path
) -> None:
    """configs/smollm2-liquid/recipe-text-only.yaml: no world data is made or tokenized, and
    the expanded base's held-out text is measured before training (the control's start). The
    base is the session's imported HF folder (the GGUF import runs in the test above)."""
    recipe = Recipe.load(
        REPO / "configs/smollm2-liquid/recipe-text-only.yaml",
        {
            "base": str(smollm2_hf),
            "work_dir": str(tmp_path / "work"),
            "out_dir": str(tmp_path / "out"),
            "train": {
                "config": str(REPO / "configs/smollm2-liquid/train-text-only.yaml"),
                "overrides": [
                    "max_steps=1",
                    "global_batch=1",
                    "micro_batch=1",
                    "data.seq_len=64",
                    "data.val_examples=1",
                    "optim.warmup_steps=0",
                    "eval_every=0",
                    "save_every=0",
                    "progress=false",
                ],
            },
            "evaluation": {"tasks": ["text"], "limit": 1, "progress": False},
        },
    )
    out = run(recipe, progress=False)
    work = tmp_path / "work"
    assert sorted(p.name for p in (work / "tok").iterdir()) == [
        "stdlib-docs-train",
        "stdlib-docs-validation",
    ]
    assert not (work / "world-train").exists() and not (work / "world-val").exists()
    before = json.loads((out / "eval-base" / "results.json").read_text())["text"]
    after = json.loads((out / "eval" / "results.json").read_text())["text"]
    assert before["documents"] == after["documents"] == 1
    assert before["bytes"] == after["bytes"] > 0  # the same text before and after
    assert before["corpus"] == after["corpus"] == "stdlib-docs"  # the recipe's text_corpus
    # SmolLM2 knows Python's docs: well under the 8 bits of a uniform byte model
    assert 0.3 < before["bits_per_byte"] < 2.0
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["text_before_training"] == before
    card = (out / "README.md").read_text()
    assert card.startswith("# smollm2-text-only\n") and "before training" in card
