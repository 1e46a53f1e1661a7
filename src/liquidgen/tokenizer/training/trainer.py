"""The tokenizer training loop: :class:`VQTrainer` (one run's model, discriminator,
optimisers and codebook statistics) and :func:`train_vqgan` (resume, train, log, checkpoint,
export, evaluate).

Objective per step::

    l1 * |x - x'| + l2 * (x - x')^2                 reconstruction
    + ||sg(z) - e||^2 + beta * ||z - sg(e)||^2      codebook + commitment (the quantiser's)
    [+ perceptual * LPIPS(x, x')]                   only with local LPIPS weights
    [+ lambda * hinge_G(D(x'))]                     after gan.start_step; lambda adaptive

and, when the GAN is on, one hinge step of the PatchGAN discriminator ``D``. Every random
choice is a function of ``(seed, step)`` or of saved state, so a run that is interrupted
and resumed from a checkpoint continues as an uninterrupted one (bit for bit in the same
process, to about 1e-7 in a new one: docs/tokenizer.md).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from tqdm import tqdm

from liquidgen.errors import CheckpointError
from liquidgen.tokenizer.evaluate import (
    EvalResult,
    code_statistics,
    evaluate_tokenizer,
    psnr_db,
    uint8_to_pixels,
)
from liquidgen.tokenizer.losses import (
    PatchDiscriminator,
    PerceptualLoss,
    adaptive_gan_weight,
    foreground_weights,
    hinge_d_loss,
    hinge_g_loss,
    reconstruction_losses,
)
from liquidgen.tokenizer.training import checkpoint
from liquidgen.tokenizer.training.codebook import CodebookEMA, restart_dead_codes
from liquidgen.tokenizer.training.config import _STREAM_BATCH, _STREAM_CODEBOOK, VQTrainConfig
from liquidgen.tokenizer.training.data import build_data
from liquidgen.tokenizer.vqgan import VQGAN
from liquidgen.utils.device import training_bf16
from liquidgen.utils.io import atomic_path
from liquidgen.utils.runs import truncate_jsonl
from liquidgen.utils.schedule import scheduled_lr

PIXEL_RANGE = 2.0  # pixels live in [-1, 1]: PSNR peak-to-peak value


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
    """Weight decay on conv weights only; never on the codebook, norms or biases.

    Not the language-model trainer's rule (every matrix), which would decay the codebook;
    always these two groups, as the optimiser states in saved checkpoints expect."""
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


class VQTrainer:
    """Owns the model, discriminator, optimisers and codebook statistics of one run."""

    def __init__(self, config: VQTrainConfig) -> None:
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
        # bf16 autocast where the CPU has bf16; emulated bf16 measured 8x slower than fp32 here
        self.bf16 = training_bf16(tc.bf16, torch.device("cpu"), "train.bf16")
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
        return scheduled_lr(
            step,
            peak=tc.lr,
            schedule=tc.lr_decay,
            warmup_steps=tc.warmup_steps,
            total_steps=tc.steps,
            min_lr_ratio=tc.min_lr_ratio,
        )

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
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16)
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
        """Write a resumable checkpoint folder atomically (:mod:`.checkpoint`)."""
        return checkpoint.save_checkpoint(self, path)

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore everything :meth:`save_checkpoint` wrote. The model config must match."""
        checkpoint.load_checkpoint(self, path)


@dataclasses.dataclass(frozen=True)
class VQTrainResult:
    """What :func:`train_vqgan` did."""

    step: int  # last step reached
    resumed_from: int  # step of the checkpoint resumed from (0: fresh start)
    export_dir: Path | None  # final tokenizer (None when stopped early with ``until``)
    held_out: EvalResult | None  # held-out evaluation of the final tokenizer
    last: StepMetrics | None  # metrics of the last step run
    seconds: float


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def train_vqgan(
    config: VQTrainConfig, *, until: int | None = None, progress: bool = True
) -> VQTrainResult:
    """Train (or resume) the run in ``config.output.run_dir``.

    Resumes automatically from the newest readable checkpoint of the run folder. With
    ``until``, stops after that step with a checkpoint (to continue later); otherwise trains
    to ``train.steps``, exports the tokenizer and evaluates it on the held-out images.
    """
    out = config.output
    run_dir = Path(out.run_dir)
    stop = config.train.steps if until is None else min(until, config.train.steps)
    bank, held_out = build_data(config.data, progress=progress)  # bad input fails before any write
    trainer = VQTrainer(config)
    resumed_from = 0
    checkpoints = checkpoint.list_vq_checkpoints(run_dir)
    for ckpt in checkpoints:
        try:
            trainer.load_checkpoint(ckpt)
        except CheckpointError as e:
            if ckpt == checkpoints[-1]:  # never silently restart a run from scratch
                raise CheckpointError(f"no readable checkpoint in {ckpt.parent} ({e})") from e
            _log(f"skipping unreadable checkpoint: {e}")
            trainer = VQTrainer(config)  # nothing half-loaded
            continue
        resumed_from = trainer.step
        _log(f"resuming from {ckpt} (step {trainer.step})")
        break
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(run_dir / "config.yaml") as tmp:
        tmp.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    log_path = run_dir / "log.jsonl"
    truncate_jsonl(log_path, trainer.step)
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
                trainer.save_checkpoint(checkpoint.checkpoint_dir(run_dir, trainer.step))
                checkpoint.prune_checkpoints(run_dir, out.keep_last)
    seconds = time.perf_counter() - start

    if trainer.step < config.train.steps:
        return VQTrainResult(trainer.step, resumed_from, None, None, last, seconds)
    export = Path(out.export_dir) if out.export_dir else run_dir / "final"
    trainer.model.save_pretrained(export)
    result = evaluate_tokenizer(trainer.model, held_out) if held_out else None
    if result is not None:
        with atomic_path(run_dir / "eval.json") as tmp:
            tmp.write_text(json.dumps({"step": trainer.step, **result.to_dict()}, indent=2) + "\n")
    return VQTrainResult(trainer.step, resumed_from, export, result, last, seconds)
