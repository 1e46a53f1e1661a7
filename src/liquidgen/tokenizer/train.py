"""Train a VQGAN tokenizer: ``liquidgen tokenizer train CONFIG.yaml [key=value ...]``.

The model is the same :class:`~liquidgen.tokenizer.vqgan.VQGAN` as Liquid's tokenizer,
built from a smaller :class:`~liquidgen.tokenizer.config.VQGANConfig`. Objective per step::

    l1 * |x - x'| + l2 * (x - x')^2                 reconstruction
    + ||sg(z) - e||^2 + beta * ||z - sg(e)||^2      codebook + commitment (the quantiser's)
    [+ perceptual * LPIPS(x, x')]                   only with local LPIPS weights
    [+ lambda * hinge_G(D(x'))]                     after gan.start_step; lambda adaptive

and, when the GAN is on, one hinge step of the PatchGAN discriminator ``D``.

Codebook usage is kept high by **dead-code restart**: the codes picked by the encoder are
counted over a window of ``codebook.window`` steps; at the end of each window the codes
used fewer than ``codebook.min_uses`` times are moved onto encoder outputs drawn from a
pool of recent ones (and their AdamW moments are cleared). Optionally
(``codebook.ema_decay``) codes follow moving averages of their encoder outputs instead
of the codebook gradient.

Data: a folder of images (decoded once, kept in memory as uint8, each resized and
centre-cropped to the configured size closest to its aspect ratio) or the procedural
world (:mod:`liquidgen.world`), rendered at start. Each batch comes from one size,
optionally as random crops (``data.crop``).

Every random choice is a function of ``(seed, step)`` or of saved state, so a run that is
interrupted and resumed from a checkpoint continues exactly as an uninterrupted one.

Run folder layout::

    RUN_DIR/config.yaml                      resolved configuration
    RUN_DIR/log.jsonl                        one line of metrics every output.log_every steps
    RUN_DIR/checkpoints/step-00000200/       tokenizer/ (config.json, model.safetensors),
                                             train_state.json, train_state.safetensors,
                                             optimizer.pt, [discriminator.safetensors]
    RUN_DIR/final/ (or output.export_dir)    the trained tokenizer (VQGAN.from_pretrained)
    RUN_DIR/eval.json                        held-out PSNR / usage / perplexity
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import pickle
import re
import shutil
import sys
import time
import typing
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from liquidgen.errors import CheckpointError, ConfigError
from liquidgen.tokenizer.config import VQGANConfig
from liquidgen.tokenizer.evaluate import (
    EvalResult,
    code_statistics,
    evaluate_tokenizer,
    find_images,
    parse_size,
    psnr_db,
    to_uint8_tensor,
    uint8_to_pixels,
)
from liquidgen.tokenizer.images import load_image, resize_center_crop
from liquidgen.tokenizer.losses import (
    PatchDiscriminator,
    PerceptualLoss,
    adaptive_gan_weight,
    foreground_weights,
    hinge_d_loss,
    hinge_g_loss,
    reconstruction_losses,
)
from liquidgen.tokenizer.quantizer import VectorQuantizer
from liquidgen.tokenizer.vqgan import VQGAN
from liquidgen.utils.config import apply_overrides, coerce, read_yaml_mapping
from liquidgen.utils.io import atomic_dir, atomic_path

PIXEL_RANGE = 2.0  # pixels live in [-1, 1]: PSNR peak-to-peak value
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_PATTERN = re.compile(r"^step-(\d+)$")
# Independent random streams derived from the seed (numpy SeedSequence entropy words).
_STREAM_WORLD_TRAIN, _STREAM_WORLD_EVAL, _STREAM_BATCH, _STREAM_CODEBOOK = 0, 1, 2, 3
RESTART_SAMPLING = ("uniform", "distance")


# ====================================================================================== config
@dataclasses.dataclass(frozen=True)
class DataConfig:
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
class OptimConfig:
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
        if self.lr_decay not in ("cosine", "constant"):
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
class OutputConfig:
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
    "data": DataConfig,
    "train": OptimConfig,
    "codebook": CodebookConfig,
    "gan": GANConfig,
    "perceptual": PerceptualConfig,
    "output": OutputConfig,
}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a tokenizer training run needs; the YAML file's top-level sections."""

    model: VQGANConfig
    data: DataConfig = DataConfig()
    train: OptimConfig = OptimConfig()
    codebook: CodebookConfig = CodebookConfig()
    gan: GANConfig = GANConfig()
    perceptual: PerceptualConfig = PerceptualConfig()
    output: OutputConfig = OutputConfig()

    def __post_init__(self) -> None:
        f = self.model.downsample
        for w, h in (*self.data.sizes, *([self.data.crop] if self.data.crop else [])):
            if w % f or h % f:
                raise ConfigError(
                    f"data.sizes: {w}x{h} is not divisible by the downsampling factor {f}"
                )

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-ready dict; :func:`config_from_dict` inverts it."""
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


def config_from_dict(data: Any) -> TrainConfig:
    """Validate a parsed YAML document into a :class:`TrainConfig` (ConfigError on any problem)."""
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
    return TrainConfig(model=model, **sections)


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML training config and apply ``key=value`` overrides."""
    return config_from_dict(apply_overrides(read_yaml_mapping(path), overrides))


# ====================================================================================== data
class ImageBank:
    """Training images in memory as uint8, one tensor (N, 3, H, W) per (width, height)."""

    def __init__(self, buckets: dict[tuple[int, int], torch.Tensor]) -> None:
        self.buckets = {size: t for size, t in buckets.items() if len(t)}
        if not self.buckets:
            raise ConfigError("no training images")
        self._sizes = sorted(self.buckets)
        counts = np.array([len(self.buckets[s]) for s in self._sizes], dtype=np.float64)
        self._weights = counts / counts.sum()

    def __len__(self) -> int:
        return sum(len(t) for t in self.buckets.values())

    def sample(
        self, rng: np.random.Generator, batch_size: int, crop: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """A batch of one size: uint8 (B, 3, H, W); a bucket is drawn in proportion to its size.

        With ``crop`` = (width, height), each image is cut at its own random offset.
        """
        bucket = self.buckets[self._sizes[rng.choice(len(self._sizes), p=self._weights)]]
        n = len(bucket)
        idx = rng.choice(n, size=batch_size, replace=n < batch_size)
        batch = bucket[torch.from_numpy(np.sort(idx))]  # (B, 3, H, W)
        if crop is None:
            return batch
        cw, ch = crop
        _, _, h, w = batch.shape
        xs = rng.integers(0, w - cw + 1, size=batch_size)
        ys = rng.integers(0, h - ch + 1, size=batch_size)
        return torch.stack(
            [img[:, y : y + ch, x : x + cw] for img, x, y in zip(batch, xs, ys, strict=True)]
        )


def _stack_by_size(images: list[torch.Tensor]) -> dict[tuple[int, int], torch.Tensor]:
    groups: dict[tuple[int, int], list[torch.Tensor]] = {}
    for img in images:
        groups.setdefault((img.shape[2], img.shape[1]), []).append(img)
    return {size: torch.stack(g) for size, g in groups.items()}


def render_world(
    sizes: Sequence[tuple[int, int]],
    count: int,
    seed: int,
    stream: int,
    *,
    lattice: int | None = None,
    lattice_fraction: float = 0.5,
) -> list[torch.Tensor]:
    """``count`` world scenes as uint8 (3, H, W); scene ``i`` has size ``sizes[i % len(sizes)]``
    and, with ``lattice``, its centres on that lattice with probability ``lattice_fraction``."""
    # Imported here: the world package is an optional data source of this trainer.
    from liquidgen.world.render import render
    from liquidgen.world.scene import sample_scene

    out = []
    for i in range(count):
        w, h = sizes[i % len(sizes)]
        rng = np.random.default_rng([seed, stream, i])
        on_lattice = lattice if lattice and rng.random() < lattice_fraction else None
        scene = sample_scene(rng, w, h, lattice=on_lattice)
        out.append(to_uint8_tensor(render(scene)))
    return out


def nearest_size(width: int, height: int, sizes: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The configured size whose aspect ratio is closest (in log scale) to ``width/height``."""
    ratio = math.log(width / height)
    return min(sizes, key=lambda s: abs(math.log(s[0] / s[1]) - ratio))


def load_folder(
    path: str | Path, sizes: Sequence[tuple[int, int]], *, progress: bool = False
) -> list[torch.Tensor]:
    """Decode every image under ``path`` once: resized + centre-cropped to its nearest size.

    Raises :class:`~liquidgen.errors.ImageReadError` naming the first unreadable file.
    """
    files = find_images([path])
    out = []
    for file in tqdm(files, desc=f"loading {path}", disable=not progress, leave=False):
        img = load_image(file)
        out.append(to_uint8_tensor(resize_center_crop(img, nearest_size(*img.size, sizes))))
    return out


def build_data(cfg: DataConfig, *, progress: bool = False) -> tuple[ImageBank, list[torch.Tensor]]:
    """Training bank and held-out images (uint8 (3, H, W) each; may be empty)."""
    if cfg.source == "world":
        lattice = {"lattice": cfg.lattice, "lattice_fraction": cfg.lattice_fraction}
        train = render_world(cfg.sizes, cfg.num_images, cfg.seed, _STREAM_WORLD_TRAIN, **lattice)
        held_out = render_world(cfg.sizes, cfg.eval_images, cfg.seed, _STREAM_WORLD_EVAL, **lattice)
    else:
        assert cfg.path is not None  # checked by DataConfig
        train = load_folder(cfg.path, cfg.sizes, progress=progress)
        held_out = load_folder(cfg.eval_path, cfg.sizes, progress=progress) if cfg.eval_path else []
    return ImageBank(_stack_by_size(train)), held_out


# ====================================================================================== codebook
def restart_dead_codes(
    quantizer: VectorQuantizer,
    counts: torch.Tensor,
    pool: torch.Tensor,
    min_uses: int,
    generator: torch.Generator,
    optimizer: torch.optim.Optimizer | None = None,
    ema: CodebookEMA | None = None,
    sampling: str = "uniform",
) -> int:
    """Move every code used fewer than ``min_uses`` times onto a distinct recent encoder output.

    ``counts`` (n_embed,) are the uses in the last window, ``pool`` (P, embed_dim) recent
    encoder outputs. Targets are drawn without replacement while the pool allows, uniformly
    or (``sampling="distance"``) in proportion to their squared distance to the nearest
    live code, so that the outputs the codebook serves worst get the new codes. The AdamW
    moments of the moved rows are cleared so stale momentum does not drag them back; with
    ``ema``, the moved rows' running statistics restart from the new vectors.
    Returns the number of restarted codes.
    """
    dead = torch.nonzero(counts < min_uses).flatten()
    if len(dead) == 0 or len(pool) == 0:
        return 0
    weight = quantizer.embedding.weight
    live = torch.nonzero(counts >= min_uses).flatten()
    if sampling == "distance" and len(live) > 0:
        with torch.no_grad():
            d2 = torch.cdist(pool.float(), weight[live].float()).amin(dim=1).square()  # (P,)
        far = int((d2 > 0).sum())
        if far > 0:
            idx = torch.multinomial(d2, min(len(dead), far), replacement=False, generator=generator)
            dead = dead[: len(idx)]  # codes beyond the distinct far targets wait a window
        else:
            return 0
    elif len(pool) >= len(dead):
        idx = torch.randperm(len(pool), generator=generator)[: len(dead)]
    else:
        idx = torch.randint(len(pool), (len(dead),), generator=generator)
    with torch.no_grad():
        weight[dead] = pool[idx].to(weight.dtype)
    state = optimizer.state.get(weight, {}) if optimizer is not None else {}
    for key in ("exp_avg", "exp_avg_sq"):
        if key in state:
            state[key][dead] = 0.0
    if ema is not None:
        ema.reset(dead, weight[dead])
    return len(dead)


class CodebookEMA:
    """Exponential-moving-average codebook updates (van den Oord et al. 2017, appendix).

    Keeps, per code, a running count ``size`` (n_embed,) and a running sum ``total``
    (n_embed, embed_dim) of the encoder outputs assigned to it; after each step the code
    becomes ``total / size`` (Laplace-smoothed). The quantiser's codebook weight then takes
    no gradient; the commitment loss still trains the encoder.
    """

    EPS = 1e-5  # Laplace smoothing of the counts

    def __init__(self, quantizer: VectorQuantizer, decay: float) -> None:
        self.quantizer = quantizer
        self.decay = decay
        weight = quantizer.embedding.weight
        self.size = torch.ones(weight.shape[0])  # (K,)
        self.total = weight.detach().clone().float()  # (K, D)

    @torch.no_grad()
    def update(self, z: torch.Tensor, codes: torch.Tensor) -> None:
        """Fold a step's encoder outputs ``z`` (B, D, h, w) and their ``codes`` (B, h, w) in."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]).float()  # (N, D)
        idx = codes.flatten()
        k = self.size.shape[0]
        counts = torch.bincount(idx, minlength=k).float()  # (K,)
        sums = torch.zeros_like(self.total).index_add_(0, idx, flat)  # (K, D)
        self.size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.total.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.size.sum()
        smoothed = (self.size + self.EPS) / (n + k * self.EPS) * n  # (K,)
        weight = self.quantizer.embedding.weight
        weight.copy_((self.total / smoothed[:, None]).to(weight.dtype))

    def reset(self, rows: torch.Tensor, vectors: torch.Tensor) -> None:
        """Restart ``rows`` at ``vectors`` (D each) with a count of one."""
        self.size[rows] = 1.0
        self.total[rows] = vectors.detach().float()

    def state(self) -> dict[str, torch.Tensor]:
        return {"ema_size": self.size, "ema_total": self.total}

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        if "ema_size" not in tensors or tensors["ema_total"].shape != self.total.shape:
            raise CheckpointError("checkpoint has no matching EMA codebook statistics")
        self.size = tensors["ema_size"].float()
        self.total = tensors["ema_total"].float()


# ====================================================================================== trainer
@dataclasses.dataclass
class StepMetrics:
    """Scalars of one training step."""

    loss: float
    l1: float
    l2: float
    vq: float
    psnr: float
    lr: float
    perceptual: float = 0.0
    g_loss: float = 0.0
    d_loss: float = 0.0
    gan_weight: float = 0.0


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on conv weights only; never on the codebook, norms or biases."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:  # an EMA-updated codebook
            continue
        is_conv_weight = p.ndim == 4 and name.endswith("weight")
        (decay if is_conv_weight else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


class TokenizerTrainer:
    """Owns the model, discriminator, optimisers and codebook statistics of one run."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        tc = config.train
        torch.manual_seed(tc.seed)
        self.model = VQGAN(config.model).train()
        self.ema: CodebookEMA | None = None
        if config.codebook.ema_decay > 0:
            self.model.quantize.embedding.weight.requires_grad_(False)
            self.ema = CodebookEMA(self.model.quantize, config.codebook.ema_decay)
        self.optimizer = torch.optim.AdamW(
            _param_groups(self.model, tc.weight_decay), lr=tc.lr, betas=tc.betas
        )
        self.disc: PatchDiscriminator | None = None
        self.disc_optimizer: torch.optim.Optimizer | None = None
        if config.gan.enabled:
            self.disc = PatchDiscriminator(
                config.model.out_ch, config.gan.ndf, config.gan.n_layers
            ).train()
            self.disc_optimizer = torch.optim.AdamW(
                self.disc.parameters(), lr=config.gan.lr or tc.lr, betas=tc.betas, weight_decay=0.0
            )
        self.perceptual: PerceptualLoss | None = None
        if config.perceptual.weight > 0:
            assert config.perceptual.vgg and config.perceptual.lin  # checked by PerceptualConfig
            self.perceptual = PerceptualLoss.from_files(
                config.perceptual.vgg, config.perceptual.lin
            )
        self.step = 0
        self.usage_counts = torch.zeros(config.model.n_embed, dtype=torch.long)  # current window
        self.pool = torch.zeros(0, config.model.embed_dim)  # (P, embed_dim) recent encoder outputs
        self.last_usage = 0.0  # usage fraction of the last completed window
        self.last_perplexity = 0.0
        self.last_restarted = 0

    # ------------------------------------------------------------------ schedule
    def lr_at(self, step: int) -> float:
        """Learning rate of ``step`` (0-based): linear warm-up, then cosine or constant."""
        tc = self.config.train
        if step < tc.warmup_steps:
            return tc.lr * (step + 1) / tc.warmup_steps
        if tc.lr_decay == "constant":
            return tc.lr
        progress = (step - tc.warmup_steps) / max(1, tc.steps - tc.warmup_steps)
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return tc.lr * (tc.min_lr_ratio + (1.0 - tc.min_lr_ratio) * cosine)

    def _generator(self, stream: int) -> torch.Generator:
        seed = int(
            np.random.SeedSequence([self.config.train.seed, stream, self.step]).generate_state(1)[0]
        )
        return torch.Generator().manual_seed(seed)

    def batch_rng(self) -> np.random.Generator:
        """The random stream that picks this step's batch."""
        return np.random.default_rng([self.config.train.seed, _STREAM_BATCH, self.step])

    # ------------------------------------------------------------------ one step
    def train_step(self, images: torch.Tensor) -> StepMetrics:
        """One optimisation step on uint8 images (B, 3, H, W); advances ``self.step``."""
        cfg, tc = self.config, self.config.train
        lr = self.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x = uint8_to_pixels(images)  # (B, 3, H, W) in [-1, 1]
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=tc.bf16)
        with autocast:
            z = self.model.encode_latents(x)  # (B, D, h, w)
        z = z.float()  # nearest-code search in fp32: bf16 distances would mis-assign codes
        z_q, codes, vq_loss = self.model.quantize(z)
        with autocast:
            recon = self.model.decode_latents(z_q)  # (B, 3, H, W)
        recon = recon.float()
        weights = foreground_weights(x, tc.foreground_weight) if tc.foreground_weight else None
        l1, l2 = reconstruction_losses(recon, x, weights)
        rec_loss = tc.l1_weight * l1 + tc.l2_weight * l2
        metrics = StepMetrics(
            loss=0.0, l1=l1.item(), l2=l2.item(), vq=vq_loss.item(), psnr=0.0, lr=lr
        )
        if self.perceptual is not None:
            p_loss = self.perceptual(recon, x).mean()
            rec_loss = rec_loss + cfg.perceptual.weight * p_loss
            metrics.perceptual = p_loss.item()
        loss = rec_loss + vq_loss
        gan_on = self.disc is not None and self.step >= cfg.gan.start_step
        if gan_on:
            assert self.disc is not None
            self.disc.requires_grad_(False)
            with autocast:
                g_loss = hinge_g_loss(self.disc(recon))
            weight = torch.tensor(cfg.gan.weight)
            if cfg.gan.adaptive:
                last = self.model.decoder.conv_out.weight
                weight = weight * adaptive_gan_weight(rec_loss, g_loss, last)
            loss = loss + weight * g_loss
            metrics.g_loss, metrics.gan_weight = g_loss.item(), weight.item()
            self.disc.requires_grad_(True)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if tc.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
        self.optimizer.step()
        if gan_on:
            metrics.d_loss = self._discriminator_step(x, recon.detach(), autocast)
        metrics.loss = loss.item()
        with torch.no_grad():
            mse = (recon.clamp(-1, 1) - x).pow(2).mean(dim=(1, 2, 3))  # (B,)
            metrics.psnr = float(np.mean([psnr_db(float(m), PIXEL_RANGE) for m in mse]))
        if self.ema is not None:
            self.ema.update(z.detach(), codes)
        self._update_codebook_stats(z.detach(), codes)
        self.step += 1
        if self.step % self.config.codebook.window == 0:
            self._end_window()
        return metrics

    def _discriminator_step(
        self, real: torch.Tensor, fake: torch.Tensor, autocast: torch.autocast
    ) -> float:
        assert self.disc is not None and self.disc_optimizer is not None
        for group in self.disc_optimizer.param_groups:
            group["lr"] = (
                (self.config.gan.lr or self.config.train.lr)
                * self.lr_at(self.step)
                / self.config.train.lr
            )
        with autocast:
            d_loss = hinge_d_loss(self.disc(real), self.disc(fake))
        self.disc_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        self.disc_optimizer.step()
        return d_loss.item()

    def _update_codebook_stats(self, z: torch.Tensor, codes: torch.Tensor) -> None:
        """Count this step's codes and add a random sample of its latents to the pool."""
        self.usage_counts += torch.bincount(codes.flatten(), minlength=self.config.model.n_embed)
        cb = self.config.codebook
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])  # (B*h*w, D)
        keep = min(len(flat), math.ceil(cb.pool_size / cb.window))
        idx = torch.randperm(len(flat), generator=self._generator(_STREAM_CODEBOOK))[:keep]
        self.pool = torch.cat([self.pool, flat[idx]])[-cb.pool_size :]

    def _end_window(self) -> None:
        cb = self.config.codebook
        self.last_usage, self.last_perplexity = code_statistics(self.usage_counts)
        self.last_restarted = 0
        if cb.restart:
            self.last_restarted = restart_dead_codes(
                self.model.quantize,
                self.usage_counts,
                self.pool,
                cb.min_uses,
                self._generator(_STREAM_CODEBOOK),
                self.optimizer,
                self.ema,
                sampling=cb.restart_sampling,
            )
        self.usage_counts.zero_()

    def current_usage(self) -> float:
        """Usage of the last completed window (of the current one before the first ends)."""
        if self.step >= self.config.codebook.window:
            return self.last_usage
        return code_statistics(self.usage_counts)[0]

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, path: str | Path) -> Path:
        """Write a resumable checkpoint folder atomically (see the module docstring)."""
        path = Path(path)
        with atomic_dir(path) as tmp:
            self.model.save_pretrained(tmp / "tokenizer")
            tensors = {
                "usage_counts": self.usage_counts,
                "latent_pool": self.pool.contiguous(),
                "torch_rng_state": torch.get_rng_state(),
                **(self.ema.state() if self.ema is not None else {}),
            }
            save_file(tensors, str(tmp / "train_state.safetensors"))
            optim = {"optimizer": self.optimizer.state_dict()}
            if self.disc is not None and self.disc_optimizer is not None:
                save_file(dict(self.disc.state_dict()), str(tmp / "discriminator.safetensors"))
                optim["disc_optimizer"] = self.disc_optimizer.state_dict()
            torch.save(optim, tmp / "optimizer.pt")
            meta = {
                "step": self.step,
                "last_usage": self.last_usage,
                "last_perplexity": self.last_perplexity,
                "last_restarted": self.last_restarted,
                "config": self.config.to_dict(),
            }
            (tmp / "train_state.json").write_text(json.dumps(meta, indent=2) + "\n")
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore everything :meth:`save_checkpoint` wrote. The model config must match."""
        path = Path(path)
        try:
            meta = json.loads((path / "train_state.json").read_text())
            step = int(meta["step"])
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: unreadable train_state.json ({e})") from e
        saved_model = meta.get("config", {}).get("model")
        if saved_model is not None and VQGANConfig.from_dict(saved_model) != self.config.model:
            raise ConfigError(
                f"{path} was trained with a different model config; use a new output.run_dir"
            )
        loaded = VQGAN.from_pretrained(path / "tokenizer")  # strict on keys and shapes
        _copy_state(self.model, loaded.state_dict(), path / "tokenizer")
        self.model.train()
        try:
            tensors = load_file(str(path / "train_state.safetensors"))
            optim = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
            self.optimizer.load_state_dict(optim["optimizer"])
        except (
            SafetensorError,
            OSError,
            pickle.UnpicklingError,
            RuntimeError,
            zipfile.BadZipFile,
            EOFError,
            KeyError,
            ValueError,
        ) as e:
            raise CheckpointError(
                f"{path}: unreadable training state ({str(e).splitlines()[0]})"
            ) from e
        if self.disc is not None and self.disc_optimizer is not None:
            disc_file = path / "discriminator.safetensors"
            if disc_file.is_file():  # absent when the GAN was switched on after this checkpoint
                _copy_state(self.disc, load_file(str(disc_file)), disc_file)
                self.disc.train()
                if "disc_optimizer" in optim:
                    self.disc_optimizer.load_state_dict(optim["disc_optimizer"])
        if tuple(tensors["usage_counts"].shape) != tuple(self.usage_counts.shape):
            raise CheckpointError(f"{path}: usage_counts do not match the codebook size")
        self.usage_counts = tensors["usage_counts"].long()
        self.pool = tensors["latent_pool"].float()
        if self.ema is not None:
            try:
                self.ema.load(tensors)
            except CheckpointError as e:
                raise CheckpointError(f"{path}: {e}") from e
        torch.set_rng_state(tensors["torch_rng_state"])
        self.step = step
        self.last_usage = float(meta.get("last_usage", 0.0))
        self.last_perplexity = float(meta.get("last_perplexity", 0.0))
        self.last_restarted = int(meta.get("last_restarted", 0))


def _copy_state(module: nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """Copy ``state`` into ``module``'s existing tensors, so optimisers keep pointing at them."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{source}: {' '.join(str(e).split())}") from e


_REQUIRED_FILES = (
    "train_state.json",
    "train_state.safetensors",
    "optimizer.pt",
    "tokenizer/model.safetensors",
)


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoint folders of a run, newest (highest step) first."""
    root = Path(run_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = CHECKPOINT_PATTERN.match(p.name)
        if m and p.is_dir() and all((p / f).is_file() for f in _REQUIRED_FILES):
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found, reverse=True)]


def _prune(run_dir: Path, keep: int) -> None:
    for old in list_checkpoints(run_dir)[keep:]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in (run_dir / CHECKPOINT_DIR).glob(".step-*.tmp"):  # left by a killed save
        shutil.rmtree(stale, ignore_errors=True)


def _truncate_log(log: Path, step: int) -> None:
    """Drop log lines past ``step`` (they are recomputed after resuming from it)."""
    if not log.is_file():
        return
    kept = []
    for line in log.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except (json.JSONDecodeError, AttributeError):
            continue  # a line cut short by a kill
    with atomic_path(log) as tmp:
        tmp.write_text("".join(line + "\n" for line in kept))


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What :func:`train` did."""

    step: int  # last step reached
    resumed_from: int  # step of the checkpoint resumed from (0: fresh start)
    export_dir: Path | None  # final tokenizer (None when stopped early with ``until``)
    held_out: EvalResult | None  # held-out evaluation of the final tokenizer
    last: StepMetrics | None  # metrics of the last step run
    seconds: float


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def train(config: TrainConfig, *, until: int | None = None, progress: bool = True) -> TrainResult:
    """Train (or resume) the run in ``config.output.run_dir``.

    Resumes automatically from the newest readable checkpoint of the run folder. With
    ``until``, stops after that step with a checkpoint (to continue later); otherwise trains
    to ``train.steps``, exports the tokenizer and evaluates it on the held-out images.
    """
    out = config.output
    run_dir = Path(out.run_dir)
    stop = config.train.steps if until is None else min(until, config.train.steps)
    bank, held_out = build_data(config.data, progress=progress)  # bad input fails before any write
    trainer = TokenizerTrainer(config)
    resumed_from = 0
    checkpoints = list_checkpoints(run_dir)
    for ckpt in checkpoints:
        try:
            trainer.load_checkpoint(ckpt)
        except CheckpointError as e:
            if ckpt == checkpoints[-1]:  # never silently restart a run from scratch
                raise CheckpointError(f"no readable checkpoint in {ckpt.parent} ({e})") from e
            _log(f"skipping unreadable checkpoint: {e}")
            trainer = TokenizerTrainer(config)  # nothing half-loaded
            continue
        resumed_from = trainer.step
        _log(f"resuming from {ckpt} (step {trainer.step})")
        break
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(run_dir / "config.yaml") as tmp:
        tmp.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    log_path = run_dir / "log.jsonl"
    _truncate_log(log_path, trainer.step)
    _log(
        f"training on {len(bank)} images ({', '.join(f'{w}x{h}' for w, h in sorted(bank.buckets))})"
    )

    start = time.perf_counter()
    last: StepMetrics | None = None
    window: list[StepMetrics] = []
    tick = time.perf_counter()
    bar = tqdm(
        total=stop, initial=trainer.step, desc="tokenizer", disable=not progress, dynamic_ncols=True
    )
    with bar:
        while trainer.step < stop:
            batch = bank.sample(trainer.batch_rng(), config.train.batch_size, config.data.crop)
            last = trainer.train_step(batch)
            window.append(last)
            bar.update(1)
            bar.set_postfix(
                loss=f"{last.loss:.4f}",
                psnr=f"{last.psnr:.2f}",
                usage=f"{trainer.current_usage():.1%}",
            )
            if trainer.step % out.log_every == 0 or trainer.step == stop:
                now = time.perf_counter()
                record = {
                    "step": trainer.step,
                    **{
                        k: float(np.mean([getattr(m, k) for m in window]))
                        for k in dataclasses.asdict(last)
                    },
                    "usage": trainer.current_usage(),
                    "perplexity": trainer.last_perplexity,
                    "restarted": trainer.last_restarted,
                    "sec_per_step": (now - tick) / len(window),
                }
                with log_path.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                window, tick = [], now
            if trainer.step % out.save_every == 0 or trainer.step == stop:
                trainer.save_checkpoint(run_dir / CHECKPOINT_DIR / f"step-{trainer.step:08d}")
                _prune(run_dir, out.keep_last)
    seconds = time.perf_counter() - start

    if trainer.step < config.train.steps:
        return TrainResult(trainer.step, resumed_from, None, None, last, seconds)
    export = Path(out.export_dir) if out.export_dir else run_dir / "final"
    trainer.model.save_pretrained(export)
    result = evaluate_tokenizer(trainer.model, held_out) if held_out else None
    if result is not None:
        with atomic_path(run_dir / "eval.json") as tmp:
            tmp.write_text(json.dumps({"step": trainer.step, **result.to_dict()}, indent=2) + "\n")
    return TrainResult(trainer.step, resumed_from, export, result, last, seconds)


# ====================================================================================== CLI
def _cmd_train(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    if args.until is not None and args.until <= 0:
        raise ConfigError(f"--until must be > 0, got {args.until}")
    result = train(config, until=args.until, progress=not args.quiet)
    if result.export_dir is None:
        print(f"stopped at step {result.step}/{config.train.steps}; run again to resume")
        return 0
    exported = VQGAN.from_pretrained(result.export_dir)  # proves the export loads
    n_params = sum(p.numel() for p in exported.parameters())
    size_mb = sum(f.stat().st_size for f in result.export_dir.iterdir()) / 2**20
    print(
        f"trained to step {result.step} in {result.seconds:.0f} s; tokenizer -> {result.export_dir} "
        f"({n_params / 1e6:.2f}M parameters, {size_mb:.1f} MB)"
    )
    if result.held_out is not None:
        print("held-out evaluation:")
        print(result.held_out.table())
    return 0


def register_train(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train`` to the ``liquidgen tokenizer`` subcommands."""
    p = subparsers.add_parser(
        "train",
        help="train a (small) VQGAN tokenizer on a folder of images or the procedural world",
        description="Train a VQGAN tokenizer from a YAML config (sections model, data, train, "
        "codebook, gan, perceptual, output; see configs/tokenizer-*.yaml and docs/tokenizer.md). "
        "Resumes automatically from the newest checkpoint in output.run_dir. At the end the "
        "tokenizer is exported (loadable with VQGAN.from_pretrained) and evaluated on held-out images.",
    )
    p.add_argument("config", help="YAML training config")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="override config values, e.g. train.steps=300 output.run_dir=runs/x data.sizes=[64]",
    )
    p.add_argument(
        "--until",
        type=int,
        default=None,
        metavar="STEP",
        help="stop after STEP with a checkpoint (resume later)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)


__all__ = [
    "CodebookConfig",
    "DataConfig",
    "GANConfig",
    "ImageBank",
    "OptimConfig",
    "OutputConfig",
    "PerceptualConfig",
    "StepMetrics",
    "TokenizerTrainer",
    "TrainConfig",
    "TrainResult",
    "apply_overrides",
    "build_data",
    "config_from_dict",
    "list_checkpoints",
    "load_config",
    "load_folder",
    "nearest_size",
    "register_train",
    "render_world",
    "restart_dead_codes",
    "train",
]
