"""The trainer: one next-token objective over a mixture of text, text-to-image and image-to-text data.

:func:`train` runs a :class:`~liquidgen.training.config.TrainConfig` from start to finish,
in one process or under ``torchrun`` (DDP or FSDP2), resuming from the newest valid
checkpoint in ``out_dir`` when there is one. One optimiser step:

1. the :class:`~liquidgen.training.mixture.DistributedBatcher` hands this rank its
   micro-batches of the global batch and the global number of target tokens ``N``;
2. each micro-batch runs forward under bf16 autocast (default; fp32 master weights) and
   its summed cross-entropy (+ ``z_loss`` x summed ``logsumexp^2``) is scaled by
   ``world_size / N`` before backward: after DDP/FSDP2 average the gradients over ranks,
   the update equals that of one process seeing the whole global batch, and the loss is
   the mean over target tokens whatever the split into micro-batches and ranks;
3. gradient-norm clipping, AdamW, the LR schedule.

Checkpoints (:mod:`liquidgen.training.checkpoint`) hold everything needed to continue
bit-for-bit on the same hardware and process layout: weights, optimiser, scheduler,
data position and every RNG.

This module is the step loop; what it is built from and what it calls out to live beside it:
:mod:`.setup` (model, LoRA, optimiser, LR schedule, the data stream), :mod:`.validation`
(held-out batches, the prompt-reading diagnostic) and :mod:`.state` (which checkpoint to
resume from, saving and restoring).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from tqdm import tqdm

from liquidgen.errors import ConfigError
from liquidgen.training import dist as D
from liquidgen.training import state
from liquidgen.training.config import TrainConfig
from liquidgen.training.loss import LossSums, TargetLM, loss_sums
from liquidgen.training.mixture import IGNORE_INDEX, MicroBatch
from liquidgen.training.report import (
    CURVE_FILE,
    METRICS_FILE,
    MetricsLog,
    plot_loss_curve,
    truncate_after,
)
from liquidgen.training.setup import (
    apply_lora,
    build_batcher,
    build_optimizer,
    load_model,
    lr_factor,
    probe_ids,
    tied_aliases,
)
from liquidgen.training.validation import ValidationData, build_validation, validation_metrics
from liquidgen.utils.device import training_bf16

__all__ = [
    "TrainResult",
    "Trainer",
    "apply_lora",
    "build_optimizer",
    "lr_factor",
    "tied_aliases",
    "train",
]


@dataclasses.dataclass
class TrainResult:
    """What a finished :func:`train` call did (on every rank)."""

    step: int  # optimiser steps completed in total (including before a resume)
    resumed_from: Path | None
    last_checkpoint: Path | None
    losses: dict[int, float]  # step -> training loss, for steps run by this call
    val: dict[str, float]  # final validation metrics ("<modality>/loss", "<modality>/acc")


# --------------------------------------------------------------------------- the trainer
class Trainer:
    """Holds one run's model, optimiser, data and bookkeeping; :meth:`run` trains it."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.info = D.init_distributed()
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        self.out_dir = Path(config.out_dir)
        self.strategy = D.resolve_strategy(config.distributed, self.info)
        config.grad_accum(self.info.world_size)  # a batch that does not divide fails before loading
        self.resume_dir = state.resume_dir(config, self.out_dir, self.info)
        torch.manual_seed(config.seed)

        model, self.tokenizer, self.layout = load_model(config, self.info.device, self.resume_dir)
        self.model_source = Path(config.model.path)
        self.lm = model
        target_lm = TargetLM(model, packed=config.model.attn_implementation == "packed")
        target_lm.eval()  # dropout off for the one-off check
        target_lm.verify(probe_ids(self.layout))
        target_lm.train()
        whole = config.model.compile and self.strategy != "fsdp2"
        if config.model.compile and not whole:  # FSDP2 shards per block: compile per block
            for layer in D.decoder_layers(model):
                layer.compile()
        self.wrapped = D.wrap_model(target_lm, self.strategy, self.info)
        # model.compile: the whole training forward (decoder, head at the targets) as one
        # graph with dynamic shapes: 1.15x per step on the tiny recipe against 1.04x for
        # per-layer compilation (benchmarks/README.md). Validation (no grad, eval mode) runs
        # the eager module, so it triggers no second compilation.
        self.train_forward = torch.compile(self.wrapped, dynamic=True) if whole else self.wrapped
        self.optimizer = build_optimizer(self.lm, config)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, config)
        )
        self.batcher = build_batcher(config, self.tokenizer, self.layout, self.info)
        validation = build_validation(
            config, self.tokenizer, self.layout, self.info, self.model_source
        )
        self.val_sets = validation.sets  # modality -> batches of each source
        self.diag_sets = validation.diag  # the prompt-reading diagnostic's batches
        self.diag_background = validation.background
        self.step = 0
        if self.resume_dir is not None:
            state.restore(self, self.resume_dir)
        # bf16 autocast where the hardware has bf16; emulated bf16 measured 17.6x slower than fp32
        bf16 = training_bf16(config.precision == "bf16", self.info.device, "precision: bf16")
        self.autocast = (
            torch.autocast(self.info.device.type, dtype=torch.bfloat16)
            if bf16
            else contextlib.nullcontext()
        )

    # -- one step ------------------------------------------------------------------------
    def _logits(self, batch: MicroBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (N, V) at the N target positions of one micro-batch and the targets (N,);
        the head runs only where a target is."""
        device = self.info.device
        flat = batch.targets.view(-1)
        index = (flat != IGNORE_INDEX).nonzero().squeeze(1)  # (N,)
        targets = flat.index_select(0, index).to(device)
        forward = self.train_forward if torch.is_grad_enabled() else self.wrapped
        with self.autocast:
            logits = forward(
                batch.input_ids.to(device), batch.position_ids.to(device), index.to(device)
            )
        return logits, targets

    def _forward_sums(self, batch: MicroBatch, accuracy: bool = False) -> LossSums:
        """Loss sums of one micro-batch."""
        return loss_sums(*self._logits(batch), accuracy=accuracy)

    def train_step(self) -> dict[str, float]:
        """One optimiser step over the next global batch; returns its metrics."""
        config = self.config
        step_batch = self.batcher.next_step()
        if step_batch.global_targets == 0:
            raise ConfigError(f"step {self.step + 1}: the global batch has no target tokens")
        scale = self.info.world_size / step_batch.global_targets
        sums = torch.zeros(2, dtype=torch.float64, device=self.info.device)  # (ce, z), this rank
        last = len(step_batch.micro_batches) - 1
        for i, micro in enumerate(step_batch.micro_batches):
            with D.no_grad_sync(self.wrapped, self.strategy, enabled=i != last):
                out = self._forward_sums(micro)
                objective = out.ce + config.optim.z_loss * out.z if config.optim.z_loss else out.ce
                (objective * scale).backward()
            sums += torch.stack([out.ce.detach(), out.z.detach()]).double()
        clip = config.optim.grad_clip if config.optim.grad_clip is not None else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.lm.parameters(), clip)
        if hasattr(grad_norm, "full_tensor"):
            grad_norm = grad_norm.full_tensor()
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        D.all_reduce_sum(sums, self.info)
        return {
            "loss": float(sums[0]) / step_batch.global_targets,
            "z_loss": float(sums[1]) / step_batch.global_targets,
            "lr": lr,
            "grad_norm": float(grad_norm),
            "tokens": step_batch.global_tokens,
            "targets": step_batch.global_targets,
        }

    def _token_losses(self, batch: MicroBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-target-token cross-entropy (N,) and the targets (N,) of one micro-batch."""
        logits, targets = self._logits(batch)
        ce = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
        return ce, targets

    def validate(self) -> dict[str, float]:
        """Per-modality mean loss and next-token accuracy over the fixed validation examples
        (:func:`~liquidgen.training.validation.validation_metrics`)."""
        data = ValidationData(self.val_sets, self.diag_sets, self.diag_background)
        return validation_metrics(
            self.wrapped,
            data,
            forward_sums=self._forward_sums,
            token_losses=self._token_losses,
            layout=self.layout,
            info=self.info,
        )

    # -- checkpoints ---------------------------------------------------------------------
    def save(self) -> Path:
        """Write the checkpoint of the current step (collective: every rank must call it;
        :func:`~liquidgen.training.state.save_checkpoint`)."""
        return state.save_checkpoint(self)

    # -- the loop ------------------------------------------------------------------------
    def _due(self, every: int) -> bool:
        return self.step == self.config.max_steps or (every > 0 and self.step % every == 0)

    def run(self) -> TrainResult:
        """Train until ``max_steps``; validate, log and checkpoint on schedule."""
        config = self.config
        main = self.info.is_main
        metrics_path = self.out_dir / METRICS_FILE
        log = None
        if main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            # resumed: keep the log up to the checkpoint; fresh: drop a killed run's records
            truncate_after(metrics_path, self.step if self.resume_dir is not None else -1)
            log = MetricsLog(metrics_path)
        losses: dict[int, float] = {}
        val: dict[str, float] = {}
        last_checkpoint = self.resume_dir
        bar = tqdm(
            total=config.max_steps,
            initial=self.step,
            unit="step",
            disable=not (main and config.progress),
            dynamic_ncols=True,
        )
        window = _Window()
        started = time.perf_counter()
        if self.val_sets and self.step == 0:  # the baseline every later validation is compared to
            val = self.validate()
            if log is not None:
                log.write({"kind": "val", "step": 0, **val})
        try:
            while self.step < config.max_steps:
                t0 = time.perf_counter()
                stats = self.train_step()
                seconds = time.perf_counter() - t0
                losses[self.step] = stats["loss"]
                if log is not None:
                    window.add(stats, seconds)
                bar.update(1)
                bar.set_postfix(
                    loss=f"{stats['loss']:.4f}", tok_s=f"{stats['tokens'] / seconds:,.0f}"
                )
                if log is not None and self._due(config.log_every):
                    log.write(
                        {
                            "kind": "train",
                            "step": self.step,
                            **window.flush(),
                            "elapsed_s": time.perf_counter() - started,
                        }
                    )
                if self.val_sets and self._due(config.eval_every):
                    val = self.validate()
                    if log is not None:
                        log.write({"kind": "val", "step": self.step, **val})
                if self._due(config.save_every):
                    last_checkpoint = self.save()
        finally:
            bar.close()
            if log is not None:
                log.close()
        if main:
            plot_loss_curve(metrics_path, self.out_dir / CURVE_FILE)
        return TrainResult(self.step, self.resume_dir, last_checkpoint, losses, val)


class _Window:
    """Averages step metrics between two metrics records."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []
        self.seconds = 0.0

    def add(self, stats: dict[str, float], seconds: float) -> None:
        self.rows.append(stats)
        self.seconds += seconds

    def flush(self) -> dict[str, float]:
        targets = sum(r["targets"] for r in self.rows)
        tokens = sum(r["tokens"] for r in self.rows)
        out = {
            "loss": sum(r["loss"] * r["targets"] for r in self.rows) / targets,
            "z_loss": sum(r["z_loss"] * r["targets"] for r in self.rows) / targets,
            "lr": self.rows[-1]["lr"],
            "grad_norm": self.rows[-1]["grad_norm"],
            "tokens": tokens,
            "targets": targets,
            "tokens_per_s": tokens / max(self.seconds, 1e-9),
        }
        self.rows, self.seconds = [], 0.0
        return out


@contextlib.contextmanager
def _distributed_session() -> Iterator[None]:
    try:
        yield
    finally:
        D.shutdown_distributed()


def train(config: TrainConfig) -> TrainResult:
    """Run (or resume) a training job described by ``config``; see the module docstring."""
    with _distributed_session():
        return Trainer(config).run()
