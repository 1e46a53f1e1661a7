"""Running a grid: shared data, one model per size and seed, one training run per cell.

Layout of an experiment's ``out_dir``::

    data-sources.yaml          the union of every mixture's sources: what stage 6 tokenizes
    models/SIZE-sSEED/         backbone/ (random or cut) + model/ (expanded, generation defaults)
    runs/RUN/train.yaml        the run's ordinary `liquidgen train` config
    runs/RUN/train/            its out_dir: metrics.jsonl, checkpoints/ (the trainer resumes)
    runs/RUN/eval/             `liquidgen eval` of the final checkpoint (with `evaluate:`)
    runs/RUN/stage_times.json  wall-clock seconds of training and evaluation (kept on resume)
    runs/RUN/done.json         the run's results, written last: a run that has it is skipped
    runs/RUN/.lock             held (flock) by the process training RUN
    results.json, results.csv  every finished run's results, in grid order

Data are prepared once by the recipe named in ``data_from`` (stages 1-6 of
:func:`liquidgen.recipes.build.prepare`: tokenizer, world data, text tokenizer, model,
tokenized data), in the recipe's own ``work_dir``: every run, of every grid that names the
same recipe, reads the same ``work_dir/tok`` folders.

Several runner processes may share one grid (``--jobs N``, or the same command started
twice, e.g. one per core): each run is trained by the process that holds its lock, which
the others skip; data preparation and each model's build wait for the process doing them.
The locks are ``flock`` locks, released when their holder exits or is killed.

FLOPs are ``6 * N * D`` with ``N`` the non-embedding parameters (the input embedding and
LM-head rows, text and image, are not counted) and ``D`` the real (non-padding) tokens the
run trained on, from its ``metrics.jsonl`` (Kaplan et al.'s convention). ``flops_head`` is
what the LM head adds: ``6 * hidden * vocabulary`` per target token (the trainer runs the
head only where a target is); for these small models it is not negligible (width 64 and a
3,072-row vocabulary: about as much as the whole decoder), so ``flops_total`` = ``flops +
flops_head`` is the compute a run actually spent.
"""

from __future__ import annotations

import contextlib
import csv
import fnmatch
import io
import json
import math
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from liquidgen.errors import ConfigError, LiquidgenError
from liquidgen.experiments.grid import Experiment, RunSpec, Size
from liquidgen.utils.config import apply_overrides, read_yaml_mapping
from liquidgen.utils.io import atomic_dir, atomic_path, file_lock

DONE_FILE = "done.json"
LOCK_FILE = ".lock"
RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
# the columns every results row has, in this order; val/* and eval/* follow, sorted
COLUMNS = (
    "run", "size", "mixture", "seed", "budget", "max_steps", "steps", "params",
    "params_non_embedding", "tokens", "flops", "flops_head", "flops_total", "train_loss",
    "train_seconds", "busy_seconds", "eval_seconds", "wall_seconds",
)  # fmt: skip
# evaluation results kept in the table (the whole results.json stays in RUN/eval)
EVAL_COLUMNS = {
    "eval/text_bpb": ("text", "bits_per_byte"),
    "eval/text_perplexity": ("text", "perplexity"),
    "eval/t2i_seen": ("t2i", "seen", "overall"),
    "eval/t2i_heldout": ("t2i", "heldout", "overall"),
    "eval/t2i_sensitivity": ("t2i", "seen", "sensitivity"),
    "eval/vqa_world": ("vqa", "sources", "world", "overall"),
    "eval/vqa_easy_vqa": ("vqa", "sources", "easy_vqa", "overall"),
    "eval/tokenizer_roundtrip": ("tokenizer", "roundtrip"),
}
_HF_IDS = ("vocab_size", "bos_token_id", "eos_token_id", "pad_token_id")


def _log(message: str) -> None:
    print(f"[experiment] {message}", flush=True)


@contextlib.contextmanager
def _lock_or_wait(path: Path, what: str, log: Callable[[str], None]) -> Iterator[None]:
    """Hold the lock at ``path``, saying so when another process has it and we wait."""
    with file_lock(path, wait=False) as held:
        if held:
            yield
            return
    log(f"waiting: another process is {what}")
    with file_lock(path):
        yield


# --------------------------------------------------------------------------- commands
def train_command(
    config: str | Path, nproc: int | None = None, launcher_args: Sequence[str] = ("--standalone",)
) -> list[str]:
    """The command line that trains ``config``: ``liquidgen train CONFIG`` (this
    interpreter), or with ``nproc`` ``torchrun LAUNCHER_ARGS --nproc_per_node N -m liquidgen
    train CONFIG`` (the venv's ``torchrun`` next to the interpreter, else
    ``python -m torch.distributed.run``, which is the same program)."""
    if nproc is None:
        return [sys.executable, "-m", "liquidgen", "train", str(config)]
    if nproc < 1:
        raise ConfigError(f"--torchrun needs >= 1 process per node, got {nproc}")
    torchrun = Path(sys.executable).with_name("torchrun")
    launcher = [str(torchrun)] if torchrun.is_file() else [
        sys.executable, "-m", "torch.distributed.run"
    ]  # fmt: skip
    return [
        *launcher, *launcher_args, "--nproc_per_node", str(nproc),
        "-m", "liquidgen", "train", str(config),
    ]  # fmt: skip


def display_command(command: Sequence[str]) -> str:
    """``command`` as a shell line, with this interpreter written ``python``."""
    return shlex.join(["python" if c == sys.executable else c for c in command])


# --------------------------------------------------------------------------- models
def count_parameters(model_dir: str | Path) -> tuple[int, int]:
    """``(total, embedding)`` parameters of an HF folder's ``model*.safetensors``, from the
    headers only. Embedding = every matrix with one row per vocabulary entry
    (``config.json`` ``vocab_size``): the input embedding and an untied LM head."""
    from safetensors import safe_open

    model_dir = Path(model_dir)
    vocab = json.loads((model_dir / "config.json").read_text()).get("vocab_size")
    files = sorted(model_dir.glob("model*.safetensors"))
    if not files:
        raise ConfigError(f"{model_dir}: no model*.safetensors to count")
    total = embedding = 0
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            names = f.keys()  # safe_open is not iterable
            for name in names:
                shape = f.get_slice(name).get_shape()
                numel = math.prod(shape)
                total += numel
                if len(shape) == 2 and shape[0] == vocab:
                    embedding += numel
    return total, embedding


def head_parameters(model_dir: str | Path) -> int:
    """``hidden * vocabulary``: the LM head's weights, each used once per target token."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    config = config.get("text_config", config)
    return int(config["hidden_size"]) * int(config["vocab_size"])


def head_flops(model_dir: str | Path, train_records: Sequence[dict[str, Any]]) -> float:
    """FLOPs of the LM head over a run: ``6 * hidden * vocabulary`` per target token (forward
    and backward), the targets summed from the trainer's ``train`` records."""
    targets = sum(int(r.get("targets", 0)) for r in train_records)
    return 6.0 * head_parameters(model_dir) * targets


def busy_seconds(train_records: Sequence[dict[str, Any]]) -> float | None:
    """Training seconds at the run's own median speed: its real tokens over the median
    ``tokens_per_s`` of its ``train`` log records.

    ``train_seconds`` is the wall clock of the invocation that finished the run: it leaves out
    the part trained before a resume and counts any time the process was paused or starved.
    This figure counts every token and none of the stalls, so runs can be compared and a grid's
    cost stated; it is ``None`` when the log has no rate."""
    rates = [
        float(r["tokens_per_s"])
        for r in train_records
        if _number(r.get("tokens_per_s")) and r["tokens_per_s"] > 0
    ]
    if not rates:
        return None
    tokens = sum(int(r.get("tokens", 0)) for r in train_records)
    return round(tokens / statistics.median(rates), 1)


def _trim_layer_types(config: Any, layers: int) -> None:
    types = getattr(config, "layer_types", None)
    if isinstance(types, list) and len(types) > layers:
        config.layer_types = types[:layers]


def _save_backbone(model: Any, tokenizer_dir: Path, out: Path) -> Path:
    from transformers import AutoTokenizer

    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(str(tokenizer_dir)).save_pretrained(tmp)
        if (tokenizer_dir / "generation_config.json").is_file():
            shutil.copy2(tokenizer_dir / "generation_config.json", tmp)
    return out


def random_like(
    base_dir: Path, changes: dict[str, Any], out: Path, *, seed: int, layers: int | None = None
) -> Path:
    """A random backbone with ``base_dir``'s architecture (``config.json``) and tokenizer,
    ``changes`` applied to its config (``layers``: ``num_hidden_layers``)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(base_dir))
    for key, value in changes.items():
        if key in _HF_IDS or key == "model_type":
            raise ConfigError(f"backbone: {key} comes from the pretrained base; remove it")
        setattr(config, key, value)
    if layers is not None:
        config.num_hidden_layers = layers
    _trim_layer_types(config, config.num_hidden_layers)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    return _save_backbone(model, base_dir, out)


def first_layers(base_dir: Path, layers: int, out: Path) -> Path:
    """``base_dir``'s pretrained backbone cut to its first ``layers`` decoder layers."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base_dir))
    decoder = model.get_decoder()
    if layers > len(decoder.layers):
        raise ConfigError(f"layers: {layers} > the base's {len(decoder.layers)} layers")
    decoder.layers = decoder.layers[:layers]
    model.config.num_hidden_layers = layers
    _trim_layer_types(model.config, layers)
    return _save_backbone(model, base_dir, out)


# --------------------------------------------------------------------------- runs
def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    from liquidgen.training.report import read_metrics

    return read_metrics(path)


def _dig(data: Any, keys: Sequence[str]) -> Any:
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Runner:
    """Runs an :class:`Experiment`; see the module docstring."""

    def __init__(
        self,
        experiment: Experiment,
        *,
        torchrun: int | None = None,
        torchrun_args: Sequence[str] = ("--standalone",),
        progress: bool = True,
        log: Callable[[str], None] = _log,
    ) -> None:
        from liquidgen.recipes.build import Recipe

        self.exp = experiment
        self.torchrun = torchrun
        self.torchrun_args = list(torchrun_args)
        self.progress = progress
        self.log = log
        self.recipe = Recipe.load(experiment.data_from, experiment.data_overrides)
        if any(s.init == "pretrained" for s in experiment.sizes) and self.recipe.base is None:
            raise ConfigError(
                f"init: pretrained needs a recipe with a pretrained base; {experiment.data_from} "
                "trains from scratch"
            )

    # -- selection and status ---------------------------------------------------------
    def select(self, only: Sequence[str] | None = None) -> list[RunSpec]:
        """The grid's runs, or those matching ``only``: glob patterns on run names, or a
        size's or a mixture's name."""
        runs = self.exp.runs()
        if not only:
            return runs
        chosen = []
        for run in runs:
            keys = (run.size.name, run.mixture.name)
            if any(p in keys or fnmatch.fnmatchcase(run.name, p) for p in only):
                chosen.append(run)
        unmatched = [
            p
            for p in only
            if not any(
                p in (r.size.name, r.mixture.name) or fnmatch.fnmatchcase(r.name, p) for r in runs
            )
        ]
        if unmatched:
            names = ", ".join(r.name for r in runs[:4]) + (", ..." if len(runs) > 4 else "")
            raise ConfigError(f"--only {unmatched[0]!r} matches no run (runs: {names})")
        return chosen

    def status(self, run: RunSpec) -> str:
        """``done`` (its done marker exists), ``started`` (a checkpoint exists) or ``todo``."""
        from liquidgen.training import checkpoint as ckpt

        run_dir = self.exp.run_dir(run)
        if (run_dir / DONE_FILE).is_file():
            return "done"
        if ckpt.list_checkpoints(run_dir / "train"):
            return "started"
        return "todo"

    # -- configs ----------------------------------------------------------------------
    def _raw_train_config(self) -> tuple[dict[str, Any], list[str]]:
        """The training config the runs start from (``{work}`` not yet substituted) and the
        recipe's overrides that go with it (none for the experiment's own config)."""
        if self.exp.train_config is not None:
            return read_yaml_mapping(self.exp.train_config), []
        return read_yaml_mapping(self.recipe.train["config"]), list(
            self.recipe.train.get("overrides", [])
        )

    def base_train_config(self) -> dict[str, Any]:
        """The training config of the runs before the grid's changes: ``{work}`` substituted,
        the recipe's overrides applied."""
        from liquidgen.recipes.build import _substitute

        raw, overrides = self._raw_train_config()
        return apply_overrides(_substitute(raw, Path(self.recipe.work_dir)), overrides)

    def train_config(self, run: RunSpec) -> dict[str, Any]:
        """The ``liquidgen train`` config of ``run``, checked by :class:`TrainConfig`."""
        from liquidgen.training.config import TrainConfig

        model = self.exp.model_dir(run.size, run.seed) / "model"
        config = self.exp.run_config(run, self.base_train_config(), model)
        try:
            TrainConfig.from_dict(copy_of(config))
        except ConfigError as e:
            raise ConfigError(f"run {run.name}: {e}") from None
        return config

    def command(self, run: RunSpec) -> list[str]:
        return train_command(
            self.exp.run_dir(run) / "train.yaml", self.torchrun, self.torchrun_args
        )

    def plan(self, only: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """What a run of the grid would do, without doing it (``--dry-run``)."""
        rows = []
        for run in self.select(only):
            config = self.train_config(run)
            rows.append(
                {
                    "run": run.name,
                    "status": self.status(run),
                    "max_steps": run.max_steps,
                    "sources": {s["name"]: s["weight"] for s in config["data"]["sources"]},
                    "model": str(self.exp.model_dir(run.size, run.seed) / "model"),
                    "command": display_command(self.command(run)),
                }
            )
        return rows

    # -- data and models --------------------------------------------------------------
    def prepare(self) -> Any:
        """Stages 1-6 of the ``data_from`` recipe for the union of the mixtures' sources."""
        from liquidgen.recipes.build import prepare

        raw, _ = self._raw_train_config()
        sources: dict[str, dict[str, Any]] = {}
        for mixture in self.exp.mixtures:
            for source in mixture.apply(raw.get("data", {}).get("sources", [])):
                sources.setdefault(source["name"], source)
        union = self.exp.root / "data-sources.yaml"
        union.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(union) as tmp:
            tmp.write_text(yaml.safe_dump({**raw, "data": {"sources": list(sources.values())}}))
        self.log(f"data: stages 1-6 of {self.exp.data_from} in {self.recipe.work_dir}")
        work = Path(self.recipe.work_dir)
        with _lock_or_wait(work / ".prepare.lock", f"preparing {work}", self.log):
            return prepare(self.recipe, train_config=union, progress=self.progress)

    def build_model(self, size: Size, seed: int, prepared: Any) -> Path:
        """The model of ``size`` for ``seed`` (built once, reused by every run of it)."""
        from liquidgen.checkpoint import has_generation_defaults

        where = self.exp.model_dir(size, seed)
        model = where / "model"
        if has_generation_defaults(model):
            return model
        with _lock_or_wait(where / LOCK_FILE, f"building {where}", self.log):
            if has_generation_defaults(model):  # built by that other process
                return model
            return self._build_model(size, seed, prepared, where)

    def _build_model(self, size: Size, seed: int, prepared: Any, where: Path) -> Path:
        """:meth:`build_model`'s work, under the model folder's lock."""
        from liquidgen.model.scratch import init_backbone, read_backbone_config
        from liquidgen.recipes.build import build_model

        model = where / "model"
        self.log(f"model {size.name} (seed {seed}, init {size.init})")
        backbone = where / "backbone"
        recipe = self.recipe
        if (backbone / "config.json").is_file():
            pass  # built before an interruption
        elif size.init == "pretrained":
            if size.layers is None:
                backbone = prepared.backbone_dir
            else:
                first_layers(prepared.backbone_dir, size.layers, backbone)
        elif recipe.base is None:
            assert recipe.backbone is not None
            arch = size.architecture(read_backbone_config(recipe.backbone))
            init_backbone(arch, prepared.work / "text-tok", backbone, seed=seed)
        elif isinstance(size.backbone, str):
            arch = size.architecture({})
            init_backbone(arch, prepared.backbone_dir, backbone, seed=seed)
        else:
            random_like(
                prepared.backbone_dir, size.backbone or {}, backbone, seed=seed, layers=size.layers
            )
        return build_model(recipe, backbone, prepared.vq_dir, model, seed=seed)

    # -- one run ----------------------------------------------------------------------
    def _train(self, run: RunSpec, config_path: Path) -> None:
        from liquidgen.training import checkpoint as ckpt

        done = ckpt.list_checkpoints(self.exp.run_dir(run) / "train")
        if done and done[-1][0] >= run.max_steps:
            return  # trained before an interruption (e.g. during the evaluation)
        if self.torchrun is None:
            from transformers.utils import logging as hf_logging

            from liquidgen.training import load_config, train

            hf_logging.disable_progress_bar()
            train(load_config(config_path, [] if self.progress else ["progress=false"]))
            return
        command = self.command(run)
        self.log(f"{run.name}: {display_command(command)}")
        code = subprocess.call(command)
        if code != 0:
            raise LiquidgenError(f"run {run.name}: the training command exited with status {code}")

    def eval_settings(self) -> Any:
        """The ``EvalSettings`` of ``evaluate:`` (the text task on the recipe's corpus unless
        it names another); :class:`ConfigError` for a bad key or value."""
        from liquidgen.evaluation.harness import EvalSettings

        fields = {
            "progress": self.progress,
            "text_corpus": self.recipe.text_corpus,
            **(self.exp.evaluate or {}),
        }
        for key in ("tasks", "sizes"):  # YAML lists -> the tuples EvalSettings holds
            if isinstance(fields.get(key), list):
                fields[key] = tuple(tuple(v) if isinstance(v, list) else v for v in fields[key])
        try:
            return EvalSettings(**fields)
        except TypeError as e:
            raise ConfigError(f"evaluate: {e}") from None

    def _evaluate(self, run: RunSpec) -> dict[str, Any] | None:
        if self.exp.evaluate is None:
            return None
        out = self.exp.run_dir(run) / "eval"
        if not (out / "results.json").is_file():
            from liquidgen.evaluation.harness import run_evaluation, write_outputs
            from liquidgen.inference.pipeline import Pipeline
            from liquidgen.training import checkpoint as ckpt

            last = ckpt.latest_valid(self.exp.run_dir(run) / "train")
            if last is None:
                raise LiquidgenError(f"run {run.name}: no valid checkpoint to evaluate")
            settings = self.eval_settings()
            self.log(f"{run.name}: {settings.command(str(last))}")
            evaluation = run_evaluation(Pipeline.from_pretrained(last), settings, model=str(last))
            write_outputs(out, evaluation)
        return json.loads((out / "results.json").read_text())

    def run_one(self, run: RunSpec, prepared: Any) -> dict[str, Any]:
        """Train (or resume) ``run``, evaluate it, write its done marker; returns its record."""
        from liquidgen.recipes.build import StageClock

        run_dir = self.exp.run_dir(run)
        if (run_dir / DONE_FILE).is_file():
            return json.loads((run_dir / DONE_FILE).read_text())
        model = self.build_model(run.size, run.seed, prepared)
        config = self.exp.run_config(run, self.base_train_config(), model)
        run_dir.mkdir(parents=True, exist_ok=True)
        config_path = run_dir / "train.yaml"
        with atomic_path(config_path) as tmp:
            tmp.write_text(yaml.safe_dump(config, sort_keys=False))
        clock = StageClock(run_dir)
        self.log(f"{run.name}: training {run.max_steps} steps ({self.status(run)})")
        with clock.stage("train"):
            self._train(run, config_path)
        with clock.stage("eval"):
            evaluation = self._evaluate(run)
        record = self.record(run, model, evaluation, clock.times)
        with atomic_path(run_dir / DONE_FILE) as tmp:  # last: the run is done
            tmp.write_text(json.dumps(record, indent=2) + "\n")
        return record

    def record(
        self,
        run: RunSpec,
        model: Path,
        evaluation: dict[str, Any] | None,
        seconds: dict[str, float],
    ) -> dict[str, Any]:
        """The results row of a finished run."""
        run_dir = self.exp.run_dir(run)
        metrics = _read_jsonl(run_dir / "train" / "metrics.jsonl")
        train = [r for r in metrics if r.get("kind") == "train"]
        val = [r for r in metrics if r.get("kind") == "val"]
        total, embedding = count_parameters(model)
        tokens = sum(int(r.get("tokens", 0)) for r in train)
        non_embedding = total - embedding
        head = head_flops(model, train)
        record: dict[str, Any] = {
            "run": run.name,
            "size": run.size.name,
            "mixture": run.mixture.name,
            "seed": run.seed,
            "budget": run.budget,
            "max_steps": run.max_steps,
            "steps": train[-1]["step"] if train else 0,
            "params": total,
            "params_non_embedding": non_embedding,
            "tokens": tokens,
            "flops": 6.0 * non_embedding * tokens,
            "flops_head": head,
            "flops_total": 6.0 * non_embedding * tokens + head,
            "train_loss": train[-1].get("loss") if train else None,
            "train_seconds": seconds.get("train"),
            "busy_seconds": busy_seconds(train),
            "eval_seconds": seconds.get("eval"),
            "wall_seconds": round(sum(seconds.values()), 1),
        }
        if val:
            record.update(
                {
                    f"val/{k}": v
                    for k, v in val[-1].items()
                    if k not in ("kind", "step") and _number(v)
                }
            )
        if evaluation is not None:
            for column, keys in EVAL_COLUMNS.items():
                value = _dig(evaluation, keys)
                if _number(value):
                    record[column] = value
            record["eval_command"] = evaluation.get("command")
        record["command"] = display_command(self.command(run))
        record["run_dir"] = str(run_dir)
        return record

    # -- the whole grid ---------------------------------------------------------------
    def by_cost(self, runs: Sequence[RunSpec], prepared: Any) -> list[RunSpec]:
        """``runs``, the most expensive first (grid order among equals), building any model
        not yet built. Cost: (non-embedding + LM-head parameters) x optimiser steps, which is
        proportional to a run's training FLOPs at the grid's fixed batch.

        Several processes sharing a grid (``--jobs``) take the longest runs first, so they
        finish together rather than one training the largest run alone at the end (the
        longest-processing-time rule)."""
        per_step: dict[Path, int] = {}  # model folder -> parameters a token passes through
        cost: dict[str, float] = {}
        for run in runs:
            model = self.build_model(run.size, run.seed, prepared)
            if model not in per_step:
                total, embedding = count_parameters(model)
                per_step[model] = total - embedding + head_parameters(model)
            cost[run.name] = float(per_step[model]) * run.max_steps
        return sorted(runs, key=lambda run: -cost[run.name])

    def run(self, only: Sequence[str] | None = None, *, largest_first: bool = False) -> Path:
        """Run every selected run not yet done (one after another, in grid order or with
        ``largest_first`` the most expensive first; runs another process holds are skipped),
        then gather results."""
        runs = self.select(only)
        todo = [r for r in runs if self.status(r) != "done"]
        self.log(f"{self.exp.name}: {len(runs)} runs, {len(runs) - len(todo)} done already")
        if todo:
            if self.exp.evaluate is not None:
                self.eval_settings()  # a bad `evaluate:` fails now, not after the first run
            prepared = self.prepare()
            if largest_first:
                todo = self.by_cost(todo, prepared)
            for i, run in enumerate(todo, start=1):
                with file_lock(self.exp.run_dir(run) / LOCK_FILE, wait=False) as held:
                    if not held:
                        self.log(f"run {i}/{len(todo)}: {run.name}: another process has it")
                        continue
                    if self.status(run) == "done":  # finished meanwhile by another process
                        continue
                    self.log(f"run {i}/{len(todo)}: {run.name}")
                    start = time.time()
                    self.run_one(run, prepared)
                    self.log(f"{run.name}: done in {time.time() - start:.0f} s")
        return self.collect()

    def records(self) -> list[dict[str, Any]]:
        """The results of every finished run of the grid, in grid order."""
        out = []
        for run in self.exp.runs():
            done = self.exp.run_dir(run) / DONE_FILE
            if done.is_file():
                record = json.loads(done.read_text())
                # a marker written before a column existed gets it from the run's log
                missing = {"busy_seconds", "flops_total"} - record.keys()
                if missing:
                    log = self.exp.run_dir(run) / "train" / "metrics.jsonl"
                    train = [r for r in _read_jsonl(log) if r.get("kind") == "train"]
                    if "busy_seconds" in missing:
                        record["busy_seconds"] = busy_seconds(train)
                    if "flops_total" in missing:
                        model = self.exp.model_dir(run.size, run.seed) / "model"
                        record["flops_head"] = head_flops(model, train)
                        record["flops_total"] = record["flops"] + record["flops_head"]
                out.append(record)
        return out

    def collect(self) -> Path:
        """Write ``results.json`` and ``results.csv`` from the finished runs' done markers."""
        records = self.records()
        missing = [
            r.name for r in self.exp.runs() if not (self.exp.run_dir(r) / DONE_FILE).is_file()
        ]
        root = self.exp.root
        root.mkdir(parents=True, exist_ok=True)
        summary = {
            "experiment": self.exp.name,
            "config": self.exp.path,
            "data_from": self.exp.data_from,
            "runs": records,
            "missing": missing,
        }
        with atomic_path(root / RESULTS_JSON) as tmp:
            tmp.write_text(json.dumps(summary, indent=2) + "\n")
        with atomic_path(root / RESULTS_CSV) as tmp:
            tmp.write_text(results_csv(records))
        self.log(f"results: {len(records)} runs -> {root / RESULTS_CSV} ({len(missing)} missing)")
        return root / RESULTS_JSON


def copy_of(config: dict[str, Any]) -> dict[str, Any]:
    """A deep copy through YAML (what a written train.yaml reads back as)."""
    return yaml.safe_load(yaml.safe_dump(config))


def results_csv(records: list[dict[str, Any]]) -> str:
    """``records`` as CSV: :data:`COLUMNS` first, then every other key sorted."""
    extra = sorted({k for r in records for k in r} - set(COLUMNS))
    extra = [k for k in extra if k not in ("command", "eval_command", "run_dir")] + [
        k for k in ("command", "eval_command", "run_dir") if any(k in r for r in records)
    ]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*COLUMNS, *extra], lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow({k: r.get(k, "") for k in writer.fieldnames})
    return buffer.getvalue()
