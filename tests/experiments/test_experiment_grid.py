"""The experiment YAML, the runs it names, their training configs and launch commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from liquidgen.errors import ConfigError
from liquidgen.experiments.grid import Experiment, Mixture
from liquidgen.experiments.runner import Runner, results_csv, train_command

REPO = Path(__file__).resolve().parents[2]
GRIDS = REPO / "configs" / "experiments"
SOURCES = [
    {"name": "text", "modality": "text", "train": "T", "val": "TV", "weight": 1.0},
    {"name": "t2i", "modality": "t2i", "train": "W", "val": "WV", "weight": 4.0},
    {"name": "vqa", "modality": "vqa", "train": "W", "val": "WV", "weight": 2.0},
]


def _experiment(**changes: Any) -> Experiment:
    data = {
        "name": "grid",
        "data_from": "recipe.yaml",
        "out_dir": "out",
        "sizes": [{"name": "small", "budgets": [5, 10]}, "big"],
        "mixtures": [
            {"name": "t2i", "weights": {"t2i": 1.0}},
            {"name": "both", "weights": {"t2i": 1.0, "vqa": 1.0, "text": 0}, "budget_scale": 2},
        ],
        "seeds": [0, 1],
        "budgets": [7],
        "overrides": ["optim.lr=0.01", "data.seq_len=64"],
        **changes,
    }
    return Experiment(**data)


def test_the_grid_names_every_size_mixture_seed_and_budget() -> None:
    exp = _experiment()
    names = [r.name for r in exp.runs()]
    # small has its own budgets, big the experiment's; 2 mixtures x 2 seeds each
    assert len(names) == (2 + 1) * 2 * 2 == len(set(names))
    assert names[:4] == ["small_t2i_s0_b5", "small_t2i_s0_b10", "small_t2i_s1_b5", "small_t2i_s1_b10"]  # fmt: skip
    both = next(r for r in exp.runs() if r.name == "big_both_s1_b7")
    assert both.max_steps == 14  # budget x budget_scale
    assert exp.model_dir(both.size, 1) == Path("out/models/big-s1")


def test_a_run_config_is_the_base_under_its_mixture_and_overrides() -> None:
    exp = _experiment()
    run = next(r for r in exp.runs() if r.name == "big_both_s1_b7")
    base = {"model": {"path": "{work}/model"}, "data": {"sources": SOURCES, "seed": 0}, "x": 1}
    config = exp.run_config(run, base, Path("out/models/big-s1/model"))
    # text weighs 0: left out; the others re-weighted; order kept
    assert [(s["name"], s["weight"]) for s in config["data"]["sources"]] == [("t2i", 1.0), ("vqa", 1.0)]  # fmt: skip
    assert config["optim"]["lr"] == 0.01 and config["data"]["seq_len"] == 64
    assert config["model"]["path"] == "out/models/big-s1/model"
    assert config["out_dir"] == "out/runs/big_both_s1_b7/train"
    assert (config["max_steps"], config["seed"], config["data"]["seed"]) == (14, 1, 1)
    assert base["data"]["sources"][0]["weight"] == 1.0  # the base is not modified
    with pytest.raises(ConfigError, match=r"no source\(s\) \['caption'\]"):
        Mixture("m", weights={"caption": 1.0}).apply(SOURCES)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sizes": [{"name": "a_b", "budgets": [1]}]}, "no '_'"),
        ({"sizes": [{"name": "a", "budgets": [1]}, {"name": "a", "budgets": [1]}]}, "unique"),
        ({"sizes": ["a"], "budgets": None}, "has no budgets"),
        ({"budgets": [0]}, "integers > 0"),
        ({"sizes": [{"name": "a", "init": "pretrained", "backbone": {"x": 1}}]}, "layers: N"),
        ({"sizes": [{"name": "a", "init": "warm"}]}, "init must be"),
        ({"sizes": [{"name": "a", "depth": 3}]}, r"unknown key\(s\) \['depth'\]"),
        ({"mixtures": [{"name": "m", "weights": {"t2i": 0}}]}, "every weight is 0"),
        ({"mixtures": [{"name": "m", "budget_scale": 0}]}, "budget_scale"),
        ({"seeds": [0, 0]}, "duplicates"),
        ({"overrides": ["lr"]}, "key=value"),
    ],
)
def test_bad_grids_are_refused_with_the_key_named(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _experiment(**changes)


def test_load_applies_dotted_overrides(tmp_path: Path) -> None:
    exp = Experiment.load(GRIDS / "fast.yaml", [f"out_dir={tmp_path}", "seeds=[3]"])
    assert exp.root == tmp_path and exp.seeds == [3] and exp.path == str(GRIDS / "fast.yaml")
    assert exp.reports == tmp_path / "report"
    with pytest.raises(ConfigError, match=r"fast\.yaml: .*unknown key"):
        Experiment.load(GRIDS / "fast.yaml", ["colour=red"])


def test_the_torchrun_command_is_what_torchrun_parses_as_liquidgen_train() -> None:
    """Built, not launched: torchrun's own argument parser reads it back."""
    from torch.distributed.run import get_args_parser

    assert train_command("r/train.yaml") == [sys.executable, "-m", "liquidgen", "train", "r/train.yaml"]  # fmt: skip
    command = train_command("r/train.yaml", 2)
    launcher = 1 if command[0].endswith("torchrun") else 3
    assert command[:launcher] in ([str(Path(sys.executable).with_name("torchrun"))],
                                  [sys.executable, "-m", "torch.distributed.run"])  # fmt: skip
    args = get_args_parser().parse_args(command[launcher:])
    assert args.nproc_per_node == "2" and args.standalone and args.module
    assert (args.training_script, args.training_script_args) == ("liquidgen", ["train", "r/train.yaml"])  # fmt: skip
    scaled = train_command("r/train.yaml", 4, ["--nnodes", "2", "--rdzv-endpoint", "h:29400"])
    args = get_args_parser().parse_args(scaled[launcher:])
    assert (args.nnodes, args.rdzv_endpoint, args.standalone) == ("2", "h:29400", False)
    with pytest.raises(ConfigError, match=">= 1 process"):
        train_command("r/train.yaml", 0)


@pytest.mark.parametrize("grid", ["scaling", "mixing", "mutual", "pretrained", "fast"])
def test_every_shipped_grid_plans_valid_training_configs(grid: str) -> None:
    """--dry-run of each example grid: every run's config passes TrainConfig's checks."""
    exp = Experiment.load(GRIDS / f"{grid}.yaml", ["out_dir=/nonexistent/experiment"])
    runner = Runner(exp, torchrun=2)
    plan = runner.plan()
    assert len(plan) == len(exp.runs()) and {p["status"] for p in plan} == {"todo"}
    assert all("--nproc_per_node 2 -m liquidgen train" in p["command"] for p in plan)
    if exp.evaluate is not None:  # `liquidgen eval` settings, on the recipe's text corpus
        assert runner.eval_settings().text_corpus == runner.recipe.text_corpus
    if grid == "scaling":  # issue 20: >= 4 sizes x >= 3 budgets, text to image only
        assert len(exp.sizes) >= 4 and all(
            len(s.budgets or exp.budgets or []) >= 3 for s in exp.sizes
        )
        assert all(set(p["sources"]) == {"t2i"} for p in plan)
    if grid == "mutual":
        assert len(exp.seeds) >= 2 and {m.name for m in exp.mixtures} == {"t2i", "understanding", "both"}  # fmt: skip


def test_pretrained_sizes_need_a_recipe_with_a_pretrained_base() -> None:
    exp = Experiment.load(
        GRIDS / "pretrained.yaml", ["data_from=configs/liquidgen-tiny-local/recipe.yaml"]
    )
    with pytest.raises(ConfigError, match="init: pretrained needs"):
        Runner(exp)


def test_only_selects_by_glob_or_by_size_or_mixture_name() -> None:
    runner = Runner(Experiment.load(GRIDS / "mutual.yaml"))
    assert {r.mixture.name for r in runner.select(["both"])} == {"both"}
    assert [r.name for r in runner.select(["*_t2i_s1_*"])] == ["d128-l3_t2i_s1_b1000"]
    with pytest.raises(ConfigError, match="matches no run"):
        runner.select(["nothing"])


def test_results_csv_puts_the_fixed_columns_first() -> None:
    rows = [{"run": "a", "val/t2i/loss": 3.0, "flops": 1e12, "command": "x"}, {"run": "b"}]
    lines = results_csv(rows).splitlines()
    header = lines[0].split(",")
    assert header[0] == "run" and header[-2:] == ["val/t2i/loss", "command"]
    assert lines[1].startswith("a,") and len(lines) == 3
    assert json.dumps(rows)  # records stay JSON
