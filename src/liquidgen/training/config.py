"""The training configuration: typed dataclasses loaded from YAML with ``key=value`` overrides.

One :class:`TrainConfig` describes a whole run (model, data mixture, optimiser, schedule,
batching, checkpoints, distribution). Every field is checked in ``__post_init__`` so that a
typo or an impossible value fails before a model is loaded, with the offending key named.
The resolved configuration is written into every checkpoint (``train_config.yaml``).

Overrides use dotted paths, list items by index, values parsed as YAML::

    liquidgen train configs/tiny-smoke.yaml optim.lr=1e-3 data.sources.0.weight=2 max_steps=50
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Sequence
from typing import Any

import yaml

from liquidgen.errors import ConfigError
from liquidgen.utils.config import apply_overrides, coerce, read_yaml_mapping
from liquidgen.utils.schedule import SCHEDULES

MODALITIES = ("text", "t2i", "caption", "vqa", "chat")
PRECISIONS = ("bf16", "fp32")
STRATEGIES = ("auto", "none", "ddp", "fsdp2")
ATTN_IMPLEMENTATIONS = ("packed", "sdpa", "eager")


def _check_field_types(obj: Any) -> None:
    """Coerce/validate each field of a dataclass instance against its annotation.

    Accepts ints where floats are expected and lists where tuples are expected (YAML has
    no tuples); builds nested dataclasses from dicts. Raises :class:`ConfigError` naming
    the field on any mismatch.
    """
    hints = typing.get_type_hints(type(obj))
    for field in dataclasses.fields(obj):
        key = f"{type(obj).__name__}.{field.name}"
        value = coerce(getattr(obj, field.name), hints[field.name], key, nested=_nested)
        object.__setattr__(obj, field.name, value)


def _nested(cls: type, data: dict[str, Any], _key: str) -> Any:
    """:func:`_from_dict` with :func:`~liquidgen.utils.config.coerce`'s ``nested`` signature
    (the key is not needed: ``cls``'s name says where the mapping sits)."""
    return _from_dict(cls, data)


def _from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys by name."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {cls.__name__} (known: {sorted(names)})")
    required = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [name for name in required if name not in data]
    if missing:
        raise ConfigError(f"missing required key(s) {missing} in {cls.__name__}")
    return cls(**data)


def _choice(name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {list(allowed)}, got {value!r}")


@dataclasses.dataclass
class SourceConfig:
    """One stream of the data mixture: a tokenized dataset read in one sequence format."""

    name: str  # unique label, used in metrics ("val/<name>/loss") and in the data state
    modality: str  # text | t2i | caption | vqa | chat (see liquidgen.formats)
    train: str  # folder written by `liquidgen data tokenize`
    val: str | None = None  # held-out folder for validation loss/accuracy (None: no validation)
    weight: float = 1.0  # relative sampling weight; normalised over all sources

    def __post_init__(self) -> None:
        _check_field_types(self)
        _choice(f"source {self.name!r} modality", self.modality, MODALITIES)
        if not self.weight > 0:
            raise ConfigError(f"source {self.name!r}: weight must be > 0, got {self.weight}")
        if not self.name or "/" in self.name:
            raise ConfigError(f"source name must be non-empty without '/', got {self.name!r}")


@dataclasses.dataclass
class DataConfig:
    """How examples are drawn, formatted and laid out into fixed-length rows."""

    sources: list[SourceConfig]
    seq_len: int = 512  # tokens per row; longer examples are truncated (paper: 2048)
    packing: bool = True  # pack several examples per row (isolated by position ids) or pad
    seed: int = 0  # mixture order, epoch permutations and per-example randomness
    cfg_dropout: float = 0.1  # share of T2I examples whose text becomes <unconditional>
    val_examples: int = 64  # validation examples per source (fixed, first N of `val`)
    size_prefix: bool = False  # T2I prompts start with "Image Size: Width is W Height is H. "

    def __post_init__(self) -> None:
        _check_field_types(self)
        if not self.sources:
            raise ConfigError("data.sources must list at least one source")
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ConfigError(f"data.sources names must be unique, got {names}")
        if self.seq_len < 8:
            raise ConfigError(f"data.seq_len must be >= 8, got {self.seq_len}")
        if not 0.0 <= self.cfg_dropout < 1.0:
            raise ConfigError(f"data.cfg_dropout must be in [0, 1), got {self.cfg_dropout}")
        if self.val_examples < 0:
            raise ConfigError(f"data.val_examples must be >= 0, got {self.val_examples}")


@dataclasses.dataclass
class ModelConfig:
    """The model to train: a liquidgen checkpoint folder (HF model + tokenizer + layout)."""

    path: str  # written by `liquidgen expand` or by a previous training run
    # sdpa | eager | packed: causal attention one packed document at a time
    # (liquidgen.training.packed_attention; no faster on CPU, measured). All isolate documents.
    attn_implementation: str = "sdpa"
    gradient_checkpointing: bool = False  # recompute activations in backward (saves memory)
    compile: bool = False  # torch.compile the training forward (per block under FSDP2)

    def __post_init__(self) -> None:
        _check_field_types(self)
        _choice("model.attn_implementation", self.attn_implementation, ATTN_IMPLEMENTATIONS)
        if self.attn_implementation == "packed" and self.gradient_checkpointing:
            # the backward's recomputation runs after the forward's switch to packed attention
            # has ended: it would attend across documents (torch refuses the mismatch)
            raise ConfigError(
                "model.attn_implementation=packed cannot be combined with "
                "model.gradient_checkpointing: use sdpa with checkpointing"
            )


@dataclasses.dataclass
class OptimConfig:
    """AdamW, the learning-rate schedule, clipping and the auxiliary z-loss."""

    lr: float = 3e-4  # peak learning rate
    weight_decay: float = 0.1  # decoupled weight decay on matrices (not on norms/biases)
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    # cosine (decay to min_lr_ratio * lr) | constant (after warm-up) | wsd (warm-up, stable,
    # then a linear decay to min_lr_ratio * lr over the last decay_fraction of the steps)
    schedule: str = "cosine"
    warmup_steps: int = 0  # linear warm-up from 0 to lr
    min_lr_ratio: float = 0.1  # floor of the cosine / wsd schedule, as a share of lr
    decay_fraction: float = 0.2  # wsd: share of max_steps spent decaying
    grad_clip: float | None = 1.0  # max global grad norm (None: no clipping; paper 7B: 0.5)
    z_loss: float = 0.0  # weight of logsumexp(logits)^2 (PaLM uses 1e-4; paper: on for >= 7B)

    def __post_init__(self) -> None:
        _check_field_types(self)
        _choice("optim.schedule", self.schedule, SCHEDULES)
        if not self.lr > 0:
            raise ConfigError(f"optim.lr must be > 0, got {self.lr}")
        if self.weight_decay < 0 or self.eps <= 0 or self.z_loss < 0:
            raise ConfigError("optim.weight_decay and optim.z_loss must be >= 0, optim.eps > 0")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"optim.betas must lie in [0, 1), got {self.betas}")
        if self.warmup_steps < 0:
            raise ConfigError(f"optim.warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0.0 < self.decay_fraction <= 1.0:
            raise ConfigError(f"optim.decay_fraction must be in (0, 1], got {self.decay_fraction}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"optim.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"optim.grad_clip must be > 0 or null, got {self.grad_clip}")


@dataclasses.dataclass
class LoRAConfig:
    """Low-rank adapters through peft; the image/special token rows always stay trainable."""

    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] = dataclasses.field(
        default_factory=lambda: [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ]
    )

    def __post_init__(self) -> None:
        _check_field_types(self)
        if self.r <= 0 or self.alpha <= 0 or not 0.0 <= self.dropout < 1.0:
            raise ConfigError("lora.r and lora.alpha must be > 0 and lora.dropout in [0, 1)")
        if not self.target_modules:
            raise ConfigError("lora.target_modules must not be empty")


@dataclasses.dataclass
class TrainConfig:
    """A complete training run. Batches are counted in rows of ``data.seq_len`` tokens."""

    model: ModelConfig
    data: DataConfig
    out_dir: str  # metrics.jsonl, loss_curve.png and checkpoints/step-NNNNNNN/
    max_steps: int  # optimiser steps
    global_batch: int  # rows per optimiser step, over all ranks and accumulation steps
    micro_batch: int = 1  # rows per forward pass per rank (accumulation = global/(micro*world))
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    lora: LoRAConfig = dataclasses.field(default_factory=LoRAConfig)
    precision: str = "bf16"  # bf16 autocast (fp32 master weights) | fp32; see docs/training.md
    distributed: str = "auto"  # auto (ddp when launched by torchrun) | none | ddp | fsdp2
    seed: int = 0  # model-side randomness (dropout, LoRA init)
    log_every: int = 1  # steps between metrics.jsonl records
    eval_every: int = 0  # steps between validations (0: only at the end)
    save_every: int = 0  # steps between checkpoints (0: only at the end)
    keep_last: int = 3  # checkpoints kept on disk (older ones are deleted)
    resume: str = "auto"  # auto (latest valid checkpoint in out_dir) | never | PATH
    threads: int | None = None  # torch intra-op threads per process (None: torch default)
    progress: bool = True  # tqdm bar on rank 0

    def __post_init__(self) -> None:
        _check_field_types(self)
        _choice("precision", self.precision, PRECISIONS)
        _choice("distributed", self.distributed, STRATEGIES)
        for name in ("max_steps", "global_batch", "micro_batch", "log_every"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("eval_every", "save_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.keep_last < 1:
            raise ConfigError(f"keep_last must be >= 1, got {self.keep_last}")
        if self.global_batch % self.micro_batch:
            raise ConfigError(
                f"global_batch ({self.global_batch}) must be a multiple of micro_batch ({self.micro_batch})"
            )
        if self.threads is not None and self.threads <= 0:
            raise ConfigError(f"threads must be > 0 or null, got {self.threads}")
        if self.lora.enabled and self.distributed == "fsdp2":
            raise ConfigError("LoRA training supports distributed: none/ddp/auto, not fsdp2")

    def grad_accum(self, world_size: int) -> int:
        """Micro-batches per rank per optimiser step for ``world_size`` processes."""
        rows_per_pass = self.micro_batch * world_size
        if self.global_batch % rows_per_pass:
            raise ConfigError(
                f"global_batch ({self.global_batch}) must be a multiple of "
                f"micro_batch x world_size ({self.micro_batch} x {world_size})"
            )
        return self.global_batch // rows_per_pass

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        data = self.to_dict()
        data["optim"]["betas"] = list(data["optim"]["betas"])
        return yaml.safe_dump(data, sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"a training config must be a mapping, got {type(data).__name__}")
        return _from_dict(cls, data)


def load_config(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML recipe, apply dotted overrides and validate it into a :class:`TrainConfig`."""
    data = apply_overrides(read_yaml_mapping(path), overrides)
    try:
        return TrainConfig.from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
