"""The experiment YAML: model sizes x data mixtures x seeds x compute budgets.

::

    name: scaling
    data_from: configs/liquidgen-tiny-local/recipe.yaml  # stages 1-6 run or reused
    out_dir: runs/experiments/scaling                     # runs/NAME/, models/, results.*
    overrides: [eval_every=0, save_every=100]             # on every run's training config
    sizes:
      - {name: d64, backbone: {hidden_size: 64, num_hidden_layers: 2}}
      - {name: d128, backbone: {hidden_size: 128}, budgets: [500, 1000]}
    mixtures:
      - {name: t2i, weights: {t2i: 1.0}}
    seeds: [0]
    budgets: [250, 500, 1000]                             # max_steps of each run

Every run is one ``liquidgen train`` config: the recipe's training config (``{work}``
substituted, the recipe's own ``train.overrides`` applied), its sources re-weighted by the
mixture (a source the mixture does not name, or weighs 0, is left out), then the
experiment's, the size's and the mixture's ``key=value`` overrides, then the run's own
``model.path``, ``out_dir``, ``max_steps``, ``seed`` and ``data.seed``.

A size is a model built once per seed (``out_dir/models/SIZE-sSEED``):

- ``init: random`` (default): the recipe's architecture (its ``backbone`` YAML, or the
  pretrained base's ``config.json``) with ``backbone``'s keys replaced (a mapping) or
  another backbone YAML (a path), randomly initialised with the recipe's text tokenizer;
- ``init: pretrained``: the recipe's pretrained base as it is (a ``base:`` recipe only);
- ``layers: N``: keep the first N decoder layers (a pretrained base is cut, a random one is
  built with N layers).

Either way the backbone is expanded with the recipe's image tokenizer and generation
defaults, exactly as the recipe's own stage 5 does.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
from pathlib import Path
from typing import Any

from liquidgen.errors import ConfigError
from liquidgen.utils.config import apply_overrides, read_yaml_mapping

INITS = ("random", "pretrained")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+-]*$")


def _check_name(kind: str, name: Any) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"{kind} name must be letters, digits, '.', '+' or '-' (no '_' or '/'), got {name!r}"
        )
    return name


def _positive_ints(key: str, values: Any) -> list[int]:
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{key} must be a non-empty list of integers, got {values!r}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ConfigError(f"{key} must hold integers > 0, got {v!r}")
    if len(set(values)) != len(values):
        raise ConfigError(f"{key} has duplicates: {values}")
    return list(values)


def _overrides(key: str, value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and "=" in v for v in value):
        raise ConfigError(f"{key} must be a list of key=value strings, got {value!r}")
    return list(value)


def _build(cls: type, data: Any, where: str) -> Any:
    """``cls`` from a YAML mapping (a size or mixture may be just its name)."""
    if isinstance(data, cls):
        return data
    if isinstance(data, str) and cls is not Experiment:
        data = {"name": data}
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {data!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown} (known: {sorted(names)})")
    try:
        return cls(**data)
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None


@dataclasses.dataclass(frozen=True)
class Size:
    """One model size (or initialisation) of the grid."""

    name: str
    # mapping: keys replaced in the recipe's architecture; str: a backbone YAML (model_type + sizes)
    backbone: dict[str, Any] | str | None = None
    init: str = "random"  # random | pretrained (the recipe's base)
    layers: int | None = None  # keep the first N decoder layers
    budgets: list[int] | None = None  # this size's max_steps (default: the experiment's)
    overrides: list[str] = dataclasses.field(default_factory=list)  # key=value, its runs only

    def __post_init__(self) -> None:
        _check_name("size", self.name)
        if self.init not in INITS:
            raise ConfigError(f"size {self.name}: init must be one of {INITS}, got {self.init!r}")
        if self.backbone is not None and not isinstance(self.backbone, (dict, str)):
            raise ConfigError(f"size {self.name}: backbone must be a mapping or a YAML path")
        if self.init == "pretrained" and self.backbone is not None:
            raise ConfigError(
                f"size {self.name}: a pretrained base keeps its architecture (use layers: N)"
            )
        if self.layers is not None and (
            isinstance(self.layers, bool) or not isinstance(self.layers, int) or self.layers < 1
        ):
            raise ConfigError(f"size {self.name}: layers must be an integer >= 1")
        if self.budgets is not None:
            object.__setattr__(
                self, "budgets", _positive_ints(f"size {self.name} budgets", self.budgets)
            )
        object.__setattr__(
            self, "overrides", _overrides(f"size {self.name} overrides", self.overrides)
        )

    def architecture(self, reference: dict[str, Any]) -> dict[str, Any]:
        """The backbone config of a random size: ``reference`` (the recipe's architecture)
        with this size's changes."""
        if isinstance(self.backbone, str):
            from liquidgen.model.scratch import read_backbone_config

            arch = read_backbone_config(self.backbone)
        else:
            arch = {**reference, **(self.backbone or {})}
        if self.layers is not None:
            arch["num_hidden_layers"] = self.layers
        return arch


@dataclasses.dataclass(frozen=True)
class Mixture:
    """One data mixture: the training config's sources re-weighted."""

    name: str
    # source name -> weight; sources not named (or weighing 0) are left out; None: as they are
    weights: dict[str, float] | None = None
    # max_steps = budget x budget_scale (e.g. 2 for "both" at equal compute per capability)
    budget_scale: float = 1.0
    overrides: list[str] = dataclasses.field(default_factory=list)  # key=value, its runs only

    def __post_init__(self) -> None:
        _check_name("mixture", self.name)
        if self.weights is not None:
            if not isinstance(self.weights, dict) or not self.weights:
                raise ConfigError(f"mixture {self.name}: weights must be a non-empty mapping")
            for source, w in self.weights.items():
                if isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0:
                    raise ConfigError(f"mixture {self.name}: weight of {source} must be >= 0")
            if not any(w > 0 for w in self.weights.values()):
                raise ConfigError(f"mixture {self.name}: every weight is 0")
        if (
            isinstance(self.budget_scale, bool)
            or not isinstance(self.budget_scale, (int, float))
            or not self.budget_scale > 0
        ):
            raise ConfigError(f"mixture {self.name}: budget_scale must be > 0")
        object.__setattr__(
            self, "overrides", _overrides(f"mixture {self.name} overrides", self.overrides)
        )

    def apply(self, sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The training config's ``data.sources`` under this mixture."""
        if self.weights is None:
            return copy.deepcopy(sources)
        known = [s.get("name") for s in sources]
        unknown = sorted(set(self.weights) - set(known))
        if unknown:
            raise ConfigError(
                f"mixture {self.name}: no source(s) {unknown} in the training config "
                f"(it has {known})"
            )
        return [
            {**copy.deepcopy(s), "weight": float(self.weights[s["name"]])}
            for s in sources
            if self.weights.get(s["name"], 0) > 0
        ]


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run of the grid."""

    size: Size
    mixture: Mixture
    seed: int
    budget: int  # the grid's compute budget (max_steps before the mixture's budget_scale)

    @property
    def name(self) -> str:
        return f"{self.size.name}_{self.mixture.name}_s{self.seed}_b{self.budget}"

    @property
    def max_steps(self) -> int:
        return max(1, round(self.budget * self.mixture.budget_scale))


@dataclasses.dataclass(frozen=True)
class Experiment:
    """An experiment YAML (``configs/experiments/*.yaml``); see the module docstring."""

    name: str
    data_from: str  # a recipe YAML: its stages 1-6 (tokenizer, data, model) are run or reused
    out_dir: str  # runs/RUN/, models/, results.csv, results.json
    sizes: list[Size]
    budgets: list[int] | None = None  # max_steps of each run (a size may give its own)
    mixtures: list[Mixture] = dataclasses.field(default_factory=lambda: [Mixture("recipe")])
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0])
    data_overrides: dict[str, Any] = dataclasses.field(default_factory=dict)  # recipe keys
    train_config: str | None = None  # default: the recipe's training config
    overrides: list[str] = dataclasses.field(default_factory=list)  # key=value, every run
    # EvalSettings keyword arguments (tasks, n, limit, ...; text_corpus defaults to the
    # recipe's): `liquidgen eval` on each run's final checkpoint into RUN/eval; None: none
    evaluate: dict[str, Any] | None = None
    report: dict[str, Any] = dataclasses.field(default_factory=dict)  # analyses (.report)
    report_dir: str | None = None  # default: out_dir/report
    description: str | None = None
    path: str | None = None  # the YAML this was read from (set by ``load``)

    def __post_init__(self) -> None:
        _check_name("experiment", self.name)
        for key in ("data_from", "out_dir"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise ConfigError(f"experiment {self.name}: {key} must be a path")
        sizes = [_build(Size, s, f"sizes[{i}]") for i, s in enumerate(self.sizes or [])]
        mixtures = [_build(Mixture, m, f"mixtures[{i}]") for i, m in enumerate(self.mixtures)]
        for kind, items in (("sizes", sizes), ("mixtures", mixtures)):
            names = [x.name for x in items]
            if not items or len(set(names)) != len(names):
                raise ConfigError(f"{kind} must be non-empty with unique names, got {names}")
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "mixtures", mixtures)
        if self.budgets is not None:
            object.__setattr__(self, "budgets", _positive_ints("budgets", self.budgets))
        for size in sizes:
            if size.budgets is None and self.budgets is None:
                raise ConfigError(f"size {size.name} has no budgets (and the experiment none)")
        if not isinstance(self.seeds, list) or not self.seeds:
            raise ConfigError("seeds must be a non-empty list of integers")
        if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in self.seeds):
            raise ConfigError(f"seeds must be integers >= 0, got {self.seeds}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds has duplicates: {self.seeds}")
        object.__setattr__(self, "overrides", _overrides("overrides", self.overrides))
        if not isinstance(self.data_overrides, dict):
            raise ConfigError("data_overrides must be a mapping of recipe keys")
        if self.evaluate is not None and not isinstance(self.evaluate, dict):
            raise ConfigError("evaluate must be a mapping of `liquidgen eval` settings or null")
        if not isinstance(self.report, dict):
            raise ConfigError("report must be a mapping (see liquidgen.experiments.report)")

    @classmethod
    def load(cls, path: str | os.PathLike[str], overrides: list[str] | None = None) -> Experiment:
        """Read an experiment YAML; ``overrides`` are dotted ``key=value`` (e.g.
        ``out_dir=/tmp/x``, ``sizes.0.budgets=[2]``)."""
        data = apply_overrides(read_yaml_mapping(path), overrides or [])
        data["path"] = str(path)
        try:
            return _build(cls, data, "experiment")
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None

    @property
    def root(self) -> Path:
        return Path(self.out_dir)

    @property
    def reports(self) -> Path:
        return Path(self.report_dir) if self.report_dir else self.root / "report"

    def runs(self) -> list[RunSpec]:
        """Every run, in grid order: size, mixture, seed, budget."""
        return [
            RunSpec(size, mixture, seed, budget)
            for size in self.sizes
            for mixture in self.mixtures
            for seed in self.seeds
            for budget in (size.budgets or self.budgets or [])
        ]

    def run_dir(self, run: RunSpec) -> Path:
        return self.root / "runs" / run.name

    def model_dir(self, size: Size, seed: int) -> Path:
        """Where the model of ``size`` for ``seed`` is built (backbone/, model/)."""
        return self.root / "models" / f"{size.name}-s{seed}"

    def run_config(self, run: RunSpec, base: dict[str, Any], model: Path) -> dict[str, Any]:
        """The ``liquidgen train`` config of ``run``: ``base`` (the recipe's training config)
        under the run's mixture and overrides; see the module docstring."""
        config = copy.deepcopy(base)
        data = config.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("sources"), list):
            raise ConfigError("the training config has no data.sources list")
        data["sources"] = run.mixture.apply(data["sources"])
        apply_overrides(config, [*self.overrides, *run.size.overrides, *run.mixture.overrides])
        config["model"] = {**config.get("model", {}), "path": str(model)}
        config["out_dir"] = str(self.run_dir(run) / "train")
        config["max_steps"] = run.max_steps
        config["seed"] = run.seed
        config["data"]["seed"] = run.seed
        return config
