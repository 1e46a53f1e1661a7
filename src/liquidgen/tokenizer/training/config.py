"""The tokenizer trainer's configuration: the YAML file's sections as typed dataclasses.

``model`` is a :class:`~liquidgen.tokenizer.config.VQGANConfig`; the other sections are
:class:`VQDataConfig` (``data:``), :class:`VQOptimConfig` (``train:``),
:class:`CodebookConfig`, :class:`GANConfig`, :class:`PerceptualConfig` and
:class:`VQOutputConfig`. Values are checked against the annotations by the shared
:func:`~liquidgen.utils.config.coerce` (sizes may be written ``128`` or ``"160x96"``);
``key=value`` overrides use :func:`~liquidgen.utils.config.apply_overrides`.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from liquidgen.errors import ConfigError
from liquidgen.tokenizer.config import VQGANConfig
from liquidgen.utils.config import apply_overrides, coerce, read_yaml_mapping
from liquidgen.utils.size import parse_size

# Independent random streams derived from the seeds (numpy SeedSequence entropy words):
# data.seed picks the world scenes, train.seed the batches and the codebook restarts.
_STREAM_WORLD_TRAIN, _STREAM_WORLD_EVAL, _STREAM_BATCH, _STREAM_CODEBOOK = 0, 1, 2, 3
RESTART_SAMPLING = ("uniform", "distance")
LR_DECAYS = ("cosine", "constant")


@dataclasses.dataclass(frozen=True)
class VQDataConfig:
    """Where training images come from (``data:`` section)."""

    source: str = "world"  # "world" (procedural scenes) or "folder"
    path: str | None = None  # folder of training images (recursive), for source=folder
    sizes: tuple[tuple[int, int], ...] = ((128, 128),)  # (width, height) buckets
    # Train on random (width, height) crops of the images: convolutions are local, so
    # smaller crops give more optimisation steps per second at the same pixel scale.
    crop: tuple[int, int] | None = None
    num_images: int = 512  # world: distinct training scenes
    eval_path: str | None = None  # folder: held-out images for the final evaluation
    eval_images: int = 64  # world: held-out scenes (a separate random stream)
    seed: int = 0  # world scenes
    # world: this fraction of the scenes put object centres on a lattice of this many
    # pixels (liquidgen.world.sample_scene's ``lattice``), the rest anywhere
    lattice: int | None = None
    lattice_fraction: float = 0.5

    def __post_init__(self) -> None:
        if self.lattice is not None and self.lattice <= 0:
            raise ConfigError(f"data.lattice must be > 0 pixels, got {self.lattice}")
        if not 0.0 <= self.lattice_fraction <= 1.0:
            raise ConfigError(
                f"data.lattice_fraction must be in [0, 1], got {self.lattice_fraction}"
            )
        if self.source not in ("world", "folder"):
            raise ConfigError(f"data.source must be 'world' or 'folder', got {self.source!r}")
        if self.source == "folder" and not self.path:
            raise ConfigError("data.source=folder needs data.path")
        if not self.sizes:
            raise ConfigError("data.sizes must list at least one size")
        if self.num_images <= 0 or self.eval_images < 0:
            raise ConfigError("data.num_images must be > 0 and data.eval_images >= 0")
        if self.crop is not None and any(
            self.crop[0] > w or self.crop[1] > h for w, h in self.sizes
        ):
            raise ConfigError(
                f"data.crop {self.crop[0]}x{self.crop[1]} is larger than a size in data.sizes"
            )


@dataclasses.dataclass(frozen=True)
class VQOptimConfig:
    """Steps, batch, optimiser, schedule and reconstruction weights (``train:`` section)."""

    steps: int = 1000
    batch_size: int = 8
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.9)
    weight_decay: float = 0.0  # AdamW; applied to conv weights only (not codebook/norms/biases)
    warmup_steps: int = 50  # linear warm-up from 0
    lr_decay: str = "cosine"  # "cosine" (to min_lr_ratio * lr at the last step) or "constant"
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    l1_weight: float = 1.0
    l2_weight: float = 1.0
    # > 0: L1/L2 weight 1 + foreground_weight on pixels away from the image's median colour
    # (objects on a plain ground); see ``losses.foreground_weights``.
    foreground_weight: float = 0.0
    bf16: bool = True  # bfloat16 autocast for encoder/decoder/discriminator (quantiser in fp32)
    seed: int = 0  # weight init, batch order, restarts

    def __post_init__(self) -> None:
        if self.steps <= 0 or self.batch_size <= 0:
            raise ConfigError("train.steps and train.batch_size must be > 0")
        if self.lr <= 0 or self.warmup_steps < 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError("train.lr must be > 0, warmup_steps >= 0, min_lr_ratio in [0, 1]")
        if self.lr_decay not in LR_DECAYS:
            raise ConfigError(
                f"train.lr_decay must be 'cosine' or 'constant', got {self.lr_decay!r}"
            )
        if (
            min(
                self.l1_weight,
                self.l2_weight,
                self.foreground_weight,
                self.weight_decay,
                self.grad_clip,
            )
            < 0
        ):
            raise ConfigError("train loss weights, weight_decay and grad_clip must be >= 0")


@dataclasses.dataclass(frozen=True)
class CodebookConfig:
    """Usage counting and dead-code restart (``codebook:`` section)."""

    restart: bool = True  # move dead codes onto recent encoder outputs at each window's end
    window: int = 25  # steps over which code usage is counted
    min_uses: int = 1  # codes used fewer times in a window are dead
    pool_size: int = 4096  # recent encoder outputs kept as restart targets
    # > 0: codes follow exponential moving averages of the encoder outputs assigned to them
    # (k-means style, VQ-VAE-2) instead of the codebook loss's gradient; 0: gradient.
    ema_decay: float = 0.0
    # how restart targets are drawn from the pool: "uniform", or "distance" (k-means++
    # seeding: in proportion to the squared distance to the nearest live code). A local,
    # canonical encoder maps every background cell to the same vector, so a uniform draw
    # puts most restarted codes on top of the background code, where they die again.
    restart_sampling: str = "uniform"

    def __post_init__(self) -> None:
        if self.window <= 0 or self.min_uses <= 0 or self.pool_size <= 0:
            raise ConfigError("codebook.window, min_uses and pool_size must be > 0")
        if self.restart_sampling not in RESTART_SAMPLING:
            raise ConfigError(
                f"codebook.restart_sampling must be one of {', '.join(RESTART_SAMPLING)}, "
                f"got {self.restart_sampling!r}"
            )
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"codebook.ema_decay must be in [0, 1), got {self.ema_decay}")


@dataclasses.dataclass(frozen=True)
class GANConfig:
    """Optional hinge PatchGAN (``gan:`` section)."""

    enabled: bool = False
    start_step: int = 1000  # warm-up: the discriminator and its loss start at this step
    weight: float = 0.5  # multiplies the (adaptive) adversarial weight
    adaptive: bool = True  # balance gradients at the decoder's last layer (VQGAN paper)
    ndf: int = 64  # discriminator base width
    n_layers: int = 3  # stride-2 conv layers
    lr: float | None = None  # discriminator learning rate; default train.lr

    def __post_init__(self) -> None:
        if self.start_step < 0 or self.weight < 0 or self.ndf <= 0 or self.n_layers <= 0:
            raise ConfigError("gan.start_step/weight must be >= 0 and gan.ndf/n_layers > 0")


@dataclasses.dataclass(frozen=True)
class PerceptualConfig:
    """Optional LPIPS-style loss from local weight files (``perceptual:`` section)."""

    weight: float = 0.0
    vgg: str | None = None  # torchvision vgg16 state dict (.pth or .safetensors)
    lin: str | None = None  # LPIPS lin layers (vgg.pth: lin{k}.model.1.weight)

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ConfigError("perceptual.weight must be >= 0")
        if self.weight > 0 and not (self.vgg and self.lin):
            raise ConfigError(
                "perceptual.weight > 0 needs local weight files perceptual.vgg and perceptual.lin "
                "(none ship with liquidgen and none can be downloaded)"
            )


@dataclasses.dataclass(frozen=True)
class VQOutputConfig:
    """Run folder, checkpoints and logging (``output:`` section)."""

    run_dir: str = "runs/tokenizer"
    save_every: int = 200
    keep_last: int = 2  # checkpoints kept; older ones are deleted
    log_every: int = 10
    export_dir: str | None = None  # final tokenizer; default RUN_DIR/final

    def __post_init__(self) -> None:
        if self.save_every <= 0 or self.keep_last <= 0 or self.log_every <= 0:
            raise ConfigError("output.save_every, keep_last and log_every must be > 0")


_SECTIONS: dict[str, type] = {
    "data": VQDataConfig,
    "train": VQOptimConfig,
    "codebook": CodebookConfig,
    "gan": GANConfig,
    "perceptual": PerceptualConfig,
    "output": VQOutputConfig,
}


@dataclasses.dataclass(frozen=True)
class VQTrainConfig:
    """Everything a tokenizer training run needs; the YAML file's top-level sections."""

    model: VQGANConfig
    data: VQDataConfig = VQDataConfig()
    train: VQOptimConfig = VQOptimConfig()
    codebook: CodebookConfig = CodebookConfig()
    gan: GANConfig = GANConfig()
    perceptual: PerceptualConfig = PerceptualConfig()
    output: VQOutputConfig = VQOutputConfig()

    def __post_init__(self) -> None:
        f = self.model.downsample
        for w, h in (*self.data.sizes, *([self.data.crop] if self.data.crop else [])):
            if w % f or h % f:
                raise ConfigError(
                    f"data.sizes: {w}x{h} is not divisible by the downsampling factor {f}"
                )

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-ready dict; :func:`vq_config_from_dict` inverts it."""
        out: dict[str, Any] = {"model": self.model.to_dict()}
        for name in _SECTIONS:
            section = dataclasses.asdict(getattr(self, name))
            out[name] = json.loads(json.dumps(section))  # tuples -> lists
        out["data"]["sizes"] = [f"{w}x{h}" for w, h in self.data.sizes]
        if self.data.crop is not None:
            out["data"]["crop"] = "{}x{}".format(*self.data.crop)
        return out


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """A YAML value checked against a field's annotation; sizes may be written "160x96"."""
    return coerce(value, hint, key, parsers={tuple[int, int]: parse_size})


def _section(cls: type, data: Any, name: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"unknown config key {name}.{unknown[0]} (known: {', '.join(sorted(known))})"
        )
    return cls(**{k: _coerce(v, hints[k], f"{name}.{k}") for k, v in data.items()})


def vq_config_from_dict(data: Any) -> VQTrainConfig:
    """Validate a parsed YAML document into a :class:`VQTrainConfig` (ConfigError on any problem)."""
    if not isinstance(data, dict):
        raise ConfigError("a tokenizer training config must be a YAML mapping")
    unknown = sorted(set(data) - {"model", *_SECTIONS})
    if unknown:
        raise ConfigError(
            f"unknown config section {unknown[0]!r} (known: model, {', '.join(_SECTIONS)})"
        )
    if "model" not in data:
        raise ConfigError("config needs a model: section (ddconfig, n_embed, embed_dim, beta)")
    model = VQGANConfig.from_dict(data["model"])
    sections = {name: _section(cls, data.get(name), name) for name, cls in _SECTIONS.items()}
    return VQTrainConfig(model=model, **sections)


def load_vq_config(path: str | Path, overrides: Sequence[str] = ()) -> VQTrainConfig:
    """Read a YAML training config and apply ``key=value`` overrides."""
    return vq_config_from_dict(apply_overrides(read_yaml_mapping(path), overrides))
