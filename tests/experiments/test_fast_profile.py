"""configs/experiments/fast.yaml end to end on tiny data built here: the runner, the done
markers (a second invocation trains nothing), results.csv/json and --report's fit and PNGs."""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

import pytest
import yaml

from liquidgen.cli import main
from tiny_models import make_tiny_backbone, make_tiny_vq

REPO = Path(__file__).resolve().parents[2]
FAST = REPO / "configs" / "experiments" / "fast.yaml"
RUNS = ["w16_t2i_s0_b2", "w16_t2i_s0_b4", "w32_t2i_s0_b2", "w32_t2i_s0_b4"]


@pytest.fixture
def tiny_recipe(tmp_path: Path) -> Path:
    """A data recipe on a tiny random Llama base and a tiny random VQGAN (64 codes, 4x):
    stages 1-6 then only write 24 + 8 world scenes at 32x32 and tokenize them."""
    recipe = {
        "work_dir": str(tmp_path / "work"),
        "out_dir": str(tmp_path / "export"),
        "sizes": ["32x32"],
        "understanding_size": 32,
        "easy_vqa_size": 32,
        "base": str(make_tiny_backbone(tmp_path / "base", "llama")),
        "tokenizer": {"pretrained": str(make_tiny_vq(tmp_path / "vq"))},
        "world": {"train": 24, "val": 8, "seed": 0},
        "text_corpus": "pydoc",  # what `evaluate:`'s text task reads unless it names another
        "train": {"config": str(REPO / "configs/experiments/fast/train.yaml"), "overrides": []},
        "evaluation": None,
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_the_fast_profile_runs_skips_when_done_gathers_and_reports(
    tmp_path: Path, tiny_recipe: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "exp"
    args = ["experiment", str(FAST), "--set", f"data_from={tiny_recipe}", "--set", f"out_dir={out}"]
    assert main([*args, "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert [r["run"] for r in results["runs"]] == RUNS and results["missing"] == []
    by_run = {r["run"]: r for r in results["runs"]}
    for record in results["runs"]:
        assert record["steps"] == record["max_steps"] == record["budget"]
        assert 0 < record["params_non_embedding"] < record["params"]
        assert record["tokens"] > 0
        assert record["flops"] == 6.0 * record["params_non_embedding"] * record["tokens"]
        model = json.loads((out / "models" / f"{record['size']}-s0/model/config.json").read_text())
        log = out / "runs" / record["run"] / "train/metrics.jsonl"
        train = [r for r in map(json.loads, log.open()) if r["kind"] == "train"]
        targets = sum(r["targets"] for r in train)
        assert targets > 0 and record["flops_head"] == (
            6.0 * model["hidden_size"] * model["vocab_size"] * targets
        )
        assert record["flops_total"] == record["flops"] + record["flops_head"]
        assert math.isfinite(record["val/t2i/loss"]) and record["wall_seconds"] > 0
        rates = [r["tokens_per_s"] for r in train if r["tokens_per_s"] > 0]
        assert record["busy_seconds"] == round(record["tokens"] / statistics.median(rates), 1)
        assert record["command"].endswith(f"liquidgen train {out}/runs/{record['run']}/train.yaml")
    assert by_run["w32_t2i_s0_b4"]["params"] > by_run["w16_t2i_s0_b4"]["params"]
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["run"] for r in rows] == RUNS and "val/t2i/loss" in rows[0]
    # each run is an ordinary `liquidgen train` config, and every run read the one dataset
    from liquidgen.training import load_config

    config = load_config(out / "runs" / RUNS[3] / "train.yaml")
    assert config.model.path == str(out / "models" / "w32-s0" / "model") and config.max_steps == 4
    assert [s.train for s in config.data.sources] == [str(tmp_path / "work/tok/world-train")]
    assert sorted(p.name for p in (tmp_path / "work" / "tok").iterdir()) == ["world-train", "world-val"]  # fmt: skip
    assert sorted(p.name for p in (out / "models").iterdir()) == ["w16-s0", "w32-s0"]

    # a second invocation finds every run done: nothing is prepared, built or trained
    done = {r: (out / "runs" / r / "done.json").stat().st_mtime_ns for r in RUNS}
    capsys.readouterr()
    assert main([*args, "--quiet"]) == 0
    assert "4 runs, 4 done already" in capsys.readouterr().out
    assert {r: (out / "runs" / r / "done.json").stat().st_mtime_ns for r in RUNS} == done
    # a run trained to the end but without its marker (killed while evaluating) is not
    # retrained; its evaluation runs (on the recipe's text corpus) and lands in its record
    checkpoint = out / "runs" / RUNS[0] / "train" / "checkpoints" / "step-0000002"
    before = checkpoint.stat().st_mtime_ns
    (out / "runs" / RUNS[0] / "done.json").unlink()
    evaluate = "evaluate={tasks: [t2i, vqa, text], n: 1, limit: 1}"
    assert main([*args, "--quiet", "--only", RUNS[0], "--set", evaluate]) == 0
    assert checkpoint.stat().st_mtime_ns == before
    again = json.loads((out / "runs" / RUNS[0] / "done.json").read_text())
    assert again["val/t2i/loss"] == by_run[RUNS[0]]["val/t2i/loss"]
    assert {"eval/text_bpb", "eval/t2i_seen", "eval/vqa_world"} <= set(again)
    assert "--corpus pydoc" in again["eval_command"]  # the recipe's corpus

    # a marker written before the head-FLOPs columns existed gets them when results gather
    marker = out / "runs" / RUNS[1] / "done.json"
    old = json.loads(marker.read_text())
    marker.write_text(
        json.dumps(
            {k: v for k, v in old.items() if k not in ("flops_head", "flops_total", "busy_seconds")}
        )
    )

    # --report: the fit on the 4 (compute, loss) points, the frontier, the PNGs
    assert main([*args, "--report"]) == 0
    gathered = {r["run"]: r for r in json.loads((out / "results.json").read_text())["runs"]}
    assert gathered[RUNS[1]]["flops_total"] == old["flops_total"] > old["flops"]
    assert old["busy_seconds"] is not None  # (a tiny run's rounds to 0.0 s on a fast machine)
    assert gathered[RUNS[1]]["busy_seconds"] == old["busy_seconds"]
    report = out / "report"
    for png in ("scaling.png", "curves.png"):
        assert (report / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    scaling = json.loads((report / "scaling.json").read_text())
    assert len(scaling["runs"]) == 4 and scaling["frontier"]
    assert "b" in scaling["fit"] or "error" in scaling["fit"]
    assert "## Scaling" in (report / "report.md").read_text()

    # --largest-first / --jobs: (decoder + LM head parameters) x steps, most expensive first
    from liquidgen.experiments.grid import Experiment
    from liquidgen.experiments.runner import Runner

    runner = Runner(Experiment.load(str(FAST), args[3::2]))
    ordered = runner.by_cost(runner.select(), prepared=None)  # models built: none rebuilt
    assert [r.name for r in ordered] == [RUNS[3], RUNS[2], RUNS[1], RUNS[0]]


def test_two_jobs_share_the_grid_and_a_held_run_is_left_to_its_holder(
    tmp_path: Path, tiny_recipe: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from liquidgen.utils.io import file_lock

    out = tmp_path / "exp"
    args = ["experiment", str(FAST), "--set", f"data_from={tiny_recipe}", "--set", f"out_dir={out}"]
    # a run whose lock another process holds is skipped, not trained twice
    with file_lock(out / "runs" / RUNS[0] / ".lock"):
        assert main([*args, "--quiet", "--only", RUNS[0], RUNS[1]]) == 0
    printed = capfd.readouterr().out
    assert f"{RUNS[0]}: another process has it" in printed
    results = json.loads((out / "results.json").read_text())
    assert [r["run"] for r in results["runs"]] == [RUNS[1]] and RUNS[0] in results["missing"]

    # --jobs 2: a second process of the same command; every run is trained exactly once
    assert main([*args, "--quiet", "--jobs", "2"]) == 0
    printed = capfd.readouterr().out
    assert "[experiment 2/2]" in printed  # the second process ran (and logged as job 2)
    trained = [line for line in printed.splitlines() if ": training " in line]
    assert sorted(line.split("] ")[1].split(":")[0] for line in trained) == sorted(set(RUNS) - {RUNS[1]})  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    assert [r["run"] for r in results["runs"]] == RUNS and results["missing"] == []
    for run in RUNS:
        log = out / "runs" / run / "train" / "metrics.jsonl"
        steps = [r["step"] for r in map(json.loads, log.open()) if r["kind"] == "train"]
        assert steps == sorted(set(steps)) and steps[-1] == int(run.rsplit("_b", 1)[1])


def test_first_layers_keeps_the_pretrained_weights_of_the_kept_layers(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from liquidgen.experiments.runner import first_layers, random_like

    base = make_tiny_backbone(tmp_path / "base", "llama")
    cut = first_layers(base, 1, tmp_path / "cut")
    assert json.loads((cut / "config.json").read_text())["num_hidden_layers"] == 1
    old, new = load_file(base / "model.safetensors"), load_file(cut / "model.safetensors")
    assert not any(".layers.1." in name for name in new)
    for name, tensor in new.items():
        assert (old[name] == tensor).all(), name
    fresh = random_like(base, {"intermediate_size": 48}, tmp_path / "rand", seed=0, layers=1)
    config = json.loads((fresh / "config.json").read_text())
    assert (config["num_hidden_layers"], config["intermediate_size"]) == (1, 48)
    assert not (load_file(fresh / "model.safetensors")["model.norm.weight"] != 1).any()


def test_a_from_scratch_recipe_builds_each_size_from_its_backbone_with_the_changes(
    tmp_path: Path,
) -> None:
    """fast/recipe.yaml trains its own BPE: a size is that recipe's backbone YAML with the
    size's keys replaced, random with the BPE's vocabulary, expanded with the recipe's VQGAN."""
    from types import SimpleNamespace

    from liquidgen.experiments.grid import Experiment
    from liquidgen.experiments.runner import Runner
    from liquidgen.model import save_text_tokenizer, train_text_tokenizer
    from tiny_models import tiny_corpus

    work = tmp_path / "work"
    save_text_tokenizer(train_text_tokenizer(tiny_corpus(), 300), work / "text-tok")
    exp = Experiment.load(FAST, [f"out_dir={tmp_path / 'exp'}"])
    runner = Runner(exp)
    assert runner.recipe.base is None  # the shipped fast recipe trains from scratch
    prepared = SimpleNamespace(work=work, vq_dir=make_tiny_vq(tmp_path / "vq"), backbone_dir=None)
    model = runner.build_model(exp.sizes[0], 0, prepared)
    config = json.loads((model / "config.json").read_text())
    assert (config["hidden_size"], config["num_hidden_layers"], config["head_dim"]) == (16, 1, 8)
    assert (
        config["max_position_embeddings"] == 256
    )  # kept from configs/experiments/fast/backbone.yaml
    layout = json.loads((model / "liquid_layout.json").read_text())
    assert layout["codebook_size"] == 64
    assert runner.build_model(exp.sizes[0], 0, prepared) == model  # built once
