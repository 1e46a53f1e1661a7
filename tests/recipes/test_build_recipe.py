"""The liquidgen-tiny recipe end to end, as a short variant (every stage, a few steps each)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from liquidgen.recipes.build import Recipe, _substitute, run
from liquidgen.training import load_config
from liquidgen.utils.config import read_yaml_mapping
from liquidgen.world.text import TAGS

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_short_recipe_runs_every_stage_and_exports_a_loadable_model(tmp_path: Path) -> None:
    backbone = tmp_path / "backbone.yaml"
    backbone.write_text(
        yaml.safe_dump(
            {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
             "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 256,
             "tie_word_embeddings": True}
        )
    )  # fmt: skip
    recipe = Recipe.load(
        REPO / "configs/liquidgen-tiny-local/recipe.yaml",
        {
            "work_dir": str(tmp_path / "work"),
            "out_dir": str(tmp_path / "out"),
            "sizes": ["64x64", "96x48"],
            "understanding_size": 64,
            "easy_vqa_size": 32,
            "tokenizer": {
                "config": str(REPO / "configs/tokenizer-world-local.yaml"),
                "overrides": [
                    "train.steps=2",
                    "train.warmup_steps=1",
                    "data.num_images=6",
                    "data.eval_images=2",
                    "data.sizes=[64x64]",
                    "data.crop=null",
                    "data.lattice=8",
                    "train.batch_size=2",
                    "output.save_every=1",
                    "output.log_every=1",
                ],
                "phases": [["train.steps=3"]],
            },
            "world": {"train": 12, "val": 4, "seed": 0},
            "world_prompted": {"train": 12, "val": 4, "seed": 2, "lattice": 8},
            "text_tokenizer": {"vocab_size": 400},
            "backbone": str(backbone),
            "train": {
                "config": str(REPO / "configs/liquidgen-tiny-local/train.yaml"),
                "overrides": [
                    "max_steps=2",
                    "global_batch=2",
                    "micro_batch=2",
                    "data.seq_len=128",
                    "data.val_examples=2",
                    "optim.warmup_steps=1",
                    "eval_every=0",
                    "save_every=0",
                    "precision=fp32",
                    "progress=false",
                ],
            },
            "evaluation": {"limit": 1, "n": 1, "progress": False},
        },
    )
    out = run(recipe, progress=False)
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["steps"] == 2
    work = tmp_path / "work"
    # text to image read the prompted scenes: one prompt per GenEval category in turn
    prompted = [json.loads(line) for line in (work / "world-prompted-train/metadata.jsonl").open()]
    assert [r["prompts"][0]["tag"] for r in prompted[:6]] == list(TAGS)
    assert json.loads((work / "world-prompted-train/dataset.json").read_text())["lattice"] == 8
    # the tokenizer's second phase resumed the first one's run and trained one more step
    assert (work / "vq/phase-1.done").is_file() and (work / "vq/phase-2.done").is_file()
    assert (work / "vq/checkpoints/step-00000003").is_dir()
    times = json.loads((work / "stage_times.json").read_text())
    assert {"1-tokenizer", "2-world", "7-train", "9-eval"} <= set(times)
    results = json.loads((out / "eval/results.json").read_text())
    assert {"t2i", "vqa", "text", "tokenizer"} <= set(results)
    card = (out / "README.md").read_text()
    assert "## Evaluation" in card and results["command"] in card
    assert "| 7-train |" in card
    assert not (out / "optimizer.pt").exists()
    generation = json.loads((out / "liquid_generation.json").read_text())
    assert generation["size_prefix"] is True and generation["buckets"] == [[64, 64], [96, 48]]

    from liquidgen import Pipeline

    pipe = Pipeline.from_pretrained(out)
    (image,) = pipe.generate_image("a red circle", width=96, height=48, seed=0)
    assert image.size == (96, 48)
    assert isinstance(pipe.answer(image, "What color is the circle?", max_new_tokens=4), str)
    # A rerun finds every stage done and only re-exports.
    assert run(recipe, progress=False) == out


def test_recipe_needs_a_backbone_or_a_base() -> None:
    from liquidgen.errors import ConfigError

    with pytest.raises(ConfigError, match="either `base`"):
        Recipe.load(REPO / "configs/smollm2-liquid/recipe.yaml", {"backbone": "x.yaml"})
    with pytest.raises(ConfigError, match="tokenizer needs"):
        Recipe.load(REPO / "configs/smollm2-liquid/recipe.yaml", {"tokenizer": {}})
    with pytest.raises(ConfigError, match="text_corpus 'wiki'"):
        Recipe.load(REPO / "configs/smollm2-liquid/recipe.yaml", {"text_corpus": "wiki"})


def test_evaluations_measure_the_recipes_text_corpus_unless_told_otherwise() -> None:
    recipe = Recipe.load(REPO / "configs/smollm2-liquid/recipe.yaml")
    assert recipe.text_corpus == "stdlib-docs"
    assert recipe.eval_settings() == {"text_corpus": "stdlib-docs"}
    tiny = Recipe.load(REPO / "configs/liquidgen-tiny/recipe.yaml")
    assert tiny.eval_settings()["text_corpus"] == tiny.text_corpus == "stdlib-docs"
    on_pydoc = Recipe.load(REPO / "configs/liquidgen-tiny/recipe.yaml", {"text_corpus": "pydoc"})
    assert on_pydoc.eval_settings()["text_corpus"] == "pydoc"
    told = Recipe.load(
        REPO / "configs/smollm2-liquid/recipe.yaml", {"evaluation": {"text_corpus": "pydoc"}}
    )
    assert told.eval_settings() == {"text_corpus": "pydoc"}


def test_only_the_datasets_the_training_mixture_reads_are_built(tmp_path: Path) -> None:
    from liquidgen.recipes.build import _used_datasets

    work = tmp_path / "work"
    config = {
        "data": {
            "sources": [
                {"train": f"{work}/tok/pydoc-train", "val": f"{work}/tok/pydoc-validation"},
                {"train": f"{work}/tok/easy-vqa-train", "val": None},
                {"train": str(tmp_path / "elsewhere" / "world-train")},  # not a recipe dataset
            ]
        }
    }
    assert _used_datasets(config, work) == {"pydoc-train", "pydoc-validation", "easy-vqa-train"}
    assert _used_datasets({}, work) == set()


def test_stage_clock_records_a_running_stage_before_it_ends(tmp_path: Path) -> None:
    """A build killed mid-stage (no cleanup) must still have recorded most of its time."""
    import time

    from liquidgen.recipes.build import _StageClock

    (tmp_path / "stage_times.json").write_text(json.dumps({"1-tokenizer": 10.0}))
    clock = _StageClock(tmp_path, flush_every=0.05)
    with clock.stage("1-tokenizer"):
        time.sleep(0.4)
        running = json.loads((tmp_path / "stage_times.json").read_text())
        assert 10.1 <= running["1-tokenizer"] <= 10.5  # flushed while the stage runs
    with clock.stage("2-world"):
        pass
    final = json.loads((tmp_path / "stage_times.json").read_text())
    assert 10.4 <= final["1-tokenizer"] < 11.0 and final["2-world"] < 0.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage_times.json"]  # no temp file


@pytest.mark.parametrize(
    "path",
    sorted(p for p in (REPO / "configs").rglob("*.yaml") if "work_dir:" in p.read_text()),
    ids=lambda p: str(p.relative_to(REPO / "configs")),
)
def test_every_shipped_recipe_and_its_training_config_load(path: Path, tmp_path: Path) -> None:
    recipe = Recipe.load(path)
    train_cfg = _substitute(read_yaml_mapping(REPO / recipe.train["config"]), tmp_path)
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(train_cfg))
    config = load_config(tmp_path / "train.yaml", recipe.train.get("overrides", []))
    assert config.max_steps > 0 and config.data.sources
