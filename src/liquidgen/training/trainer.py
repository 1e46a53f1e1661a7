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
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)
from tqdm import tqdm
from transformers.utils import logging as hf_logging

from liquidgen.checkpoint import carry_over, write_layout, write_train_config
from liquidgen.errors import CheckpointError, ConfigError
from liquidgen.model import load_liquid
from liquidgen.training import checkpoint as ckpt
from liquidgen.training import diagnostics
from liquidgen.training import dist as D
from liquidgen.training.config import TrainConfig
from liquidgen.training.data import TokenizedDataset
from liquidgen.training.loss import LossSums, TargetLM, loss_sums
from liquidgen.training.mixture import (
    IGNORE_INDEX,
    DistributedBatcher,
    MicroBatch,
    Mixture,
    validation_batches,
)
from liquidgen.training.report import (
    CURVE_FILE,
    METRICS_FILE,
    MetricsLog,
    plot_loss_curve,
    truncate_after,
)
from liquidgen.training.sources import FormattedSource
from liquidgen.utils.io import atomic_dir
from liquidgen.utils.schedule import scheduled_lr
from liquidgen.vocab import VocabLayout


@dataclasses.dataclass
class TrainResult:
    """What a finished :func:`train` call did (on every rank)."""

    step: int  # optimiser steps completed in total (including before a resume)
    resumed_from: Path | None
    last_checkpoint: Path | None
    losses: dict[int, float]  # step -> training loss, for steps run by this call
    val: dict[str, float]  # final validation metrics ("<modality>/loss", "<modality>/acc")


# --------------------------------------------------------------------------- model setup
def _module_name(model: nn.Module, module: nn.Module) -> str:
    return next(name for name, m in model.named_modules() if m is module).split(".")[-1]


def apply_lora(model: nn.Module, layout: VocabLayout, config: TrainConfig) -> nn.Module:
    """Wrap ``model`` with peft LoRA adapters and keep the image/special token rows trainable.

    The rows go through peft's ``trainable_token_indices`` on the input embedding and, for
    untied models, on the LM head too (with tied weights peft ties the head to the
    embedding's adapter). The original Liquid scripts froze these rows, so the new image
    vocabulary never learned under LoRA.
    """
    from peft import LoraConfig, get_peft_model

    rows = layout.added_rows()
    embedding = model.get_input_embeddings()
    head = model.get_output_embeddings()
    indices = {_module_name(model, embedding): rows}
    if head is not None and head.weight is not embedding.weight:
        indices[_module_name(model, head)] = rows
    lora = LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=config.lora.target_modules,
        trainable_token_indices=indices,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def tied_aliases(model: nn.Module) -> set[str]:
    """Names of parameters that are another parameter under a second name (tied embeddings).

    Gathered FSDP2 state dicts hold such a tensor twice as separate copies, so the alias is
    dropped before saving; loading re-ties it as the model's config says.
    """
    seen: set[int] = set()
    aliases = set()
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in seen:
            aliases.add(name)
        seen.add(id(param))
    return aliases


def _trainable_named(model: nn.Module) -> dict[str, nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (norm gains and biases are not decayed)."""
    params = list({id(p): p for p in model.parameters() if p.requires_grad}.values())
    if not params:
        raise ConfigError("the model has no trainable parameters")
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": config.optim.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        [g for g in groups if g["params"]],
        lr=config.optim.lr,
        betas=config.optim.betas,
        eps=config.optim.eps,
    )


def lr_factor(step: int, config: TrainConfig) -> float:
    """Multiplier of the peak LR for optimiser step ``step`` (0-based): linear warm-up, then
    constant, cosine decay to ``min_lr_ratio`` at ``max_steps``, or (wsd) constant until the
    last ``decay_fraction`` of the steps and a linear decay to ``min_lr_ratio`` over them."""
    return scheduled_lr(
        step,
        schedule=config.optim.schedule,
        warmup_steps=config.optim.warmup_steps,
        total_steps=config.max_steps,
        min_lr_ratio=config.optim.min_lr_ratio,
        decay_fraction=config.optim.decay_fraction,
    )


# --------------------------------------------------------------------------- RNG state
def _rng_state() -> dict[str, Any]:
    py = random.getstate()
    np_state = np.random.get_state()
    return {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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
        self.resume_dir = self._resume_dir()
        torch.manual_seed(config.seed)

        model, self.tokenizer, self.layout = self._load_model()
        self.model_source = Path(config.model.path)
        self.lm = model
        target_lm = TargetLM(model)
        target_lm.eval()  # dropout off for the one-off check
        target_lm.verify(self._probe_ids())
        target_lm.train()
        if config.model.compile:
            for layer in D.decoder_layers(model):
                layer.compile()
        self.wrapped = D.wrap_model(target_lm, self.strategy, self.info)
        self.optimizer = build_optimizer(self.lm, config)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, config)
        )
        self.batcher, self.val_sets = self._build_data()
        self.step = 0
        if self.resume_dir is not None:
            self._restore(self.resume_dir)
        self.autocast = (
            torch.autocast(self.info.device.type, dtype=torch.bfloat16)
            if config.precision == "bf16"
            else contextlib.nullcontext()
        )

    # -- setup -------------------------------------------------------------------------
    def _resume_dir(self) -> Path | None:
        resume = self.config.resume
        if resume == "never":
            return None
        if self.info.is_main:
            ckpt.remove_stale_temporaries(self.out_dir)
        if resume == "auto":
            found = ckpt.latest_valid(self.out_dir) if self.info.is_main else None
            found = D.broadcast_object(str(found) if found else None, self.info)
            return Path(found) if found else None
        ckpt.verify(resume)  # an explicit checkpoint must be valid: raise with the reason
        return Path(resume)

    def _load_model(self) -> tuple[nn.Module, Any, VocabLayout]:
        config = self.config
        full_resume = self.resume_dir is not None and not config.lora.enabled
        source = self.resume_dir if full_resume else config.model.path
        model, tokenizer, layout = load_liquid(source, device=self.info.device, dtype=torch.float32)
        try:
            model.set_attn_implementation(config.model.attn_implementation)
        except (ValueError, ImportError) as e:
            raise ConfigError(
                f"model.attn_implementation={config.model.attn_implementation!r}: {e}"
            ) from None
        model.config.use_cache = False
        if config.model.gradient_checkpointing:
            model.activation_checkpointing_enable({"use_reentrant": False})
        if config.lora.enabled:
            model = apply_lora(model, layout, config)
            if self.resume_dir is not None:
                self._load_trainable(model, self.resume_dir / ckpt.TRAINABLE_FILE)
        model.train()
        return model, tokenizer, layout

    def _probe_ids(self) -> list[int]:
        """A few text and image ids to check the target-only head against the model's own."""
        layout = self.layout
        image = [layout.image_offset, layout.image_end - 1]
        return [i for i in (layout.bos_id, layout.boi_id, *image, layout.eoi_id) if i is not None]

    @staticmethod
    def _load_trainable(model: nn.Module, path: Path) -> None:
        saved = load_file(str(path))
        params = _trainable_named(model)
        if set(saved) != set(params):
            raise CheckpointError(
                f"{path}: trainable tensors do not match the LoRA model "
                f"(missing {sorted(set(params) - set(saved))[:3]}, unexpected {sorted(set(saved) - set(params))[:3]})"
            )
        with torch.no_grad():
            for name, param in params.items():
                param.copy_(saved[name])

    def _source(self, name: str, modality: str, directory: str) -> FormattedSource:
        data = self.config.data
        return FormattedSource(
            name,
            modality,
            TokenizedDataset(directory),
            self.tokenizer,
            self.layout,
            max_len=data.seq_len,
            cfg_dropout=data.cfg_dropout,
            size_prefix=data.size_prefix,
        )

    def _build_data(self) -> tuple[DistributedBatcher, dict[str, list[list[MicroBatch]]]]:
        data = self.config.data
        train_sources = [self._source(s.name, s.modality, s.train) for s in data.sources]
        mixture = Mixture(
            train_sources,
            [s.weight for s in data.sources],
            seq_len=data.seq_len,
            packing=data.packing,
            seed=data.seed,
        )
        pad_id = self.layout.padding_id
        batcher = DistributedBatcher(
            mixture,
            global_batch=self.config.global_batch,
            micro_batch=self.config.micro_batch,
            rank=self.info.rank,
            world_size=self.info.world_size,
            pad_id=pad_id,
        )
        val_sets: dict[str, list[list[MicroBatch]]] = {}
        for s in data.sources:
            if s.val is None or data.val_examples == 0:
                continue
            batches = validation_batches(
                self._source(s.name, s.modality, s.val),
                count=data.val_examples,
                seq_len=data.seq_len,
                micro_batch=self.config.micro_batch,
                rank=self.info.rank,
                world_size=self.info.world_size,
                pad_id=pad_id,
                seed=data.seed,
            )
            val_sets.setdefault(s.modality, []).append(batches)
        self._build_diagnostics()
        return batcher, val_sets

    def _build_diagnostics(self) -> None:
        """The prompt-reading diagnostic (training/diagnostics.py) on the first T2I source's
        validation images: conditional and unconditional copies of the same examples."""
        data = self.config.data
        self.diag_sets: dict[str, list[MicroBatch]] = {}
        self.diag_background: set[int] = set()
        source = next((s for s in data.sources if s.modality == "t2i" and s.val is not None), None)
        if source is None or data.val_examples == 0:
            return
        sizes = set()
        for condition, dropout in (("cond", 0.0), ("uncond", 1.0)):
            formatted = FormattedSource(
                source.name,
                source.modality,
                TokenizedDataset(source.val),
                self.tokenizer,
                self.layout,
                max_len=data.seq_len,
                cfg_dropout=dropout,
                size_prefix=data.size_prefix,
            )
            self.diag_sets[condition] = validation_batches(
                formatted,
                count=data.val_examples,
                seq_len=data.seq_len,
                micro_batch=self.config.micro_batch,
                rank=self.info.rank,
                world_size=self.info.world_size,
                pad_id=self.layout.padding_id,
                seed=data.seed,
            )
            f = self.layout.downsample
            for i in range(min(data.val_examples, len(formatted.dataset))):
                h, w = formatted.dataset[i].codes.shape
                sizes.add((w * f, h * f))
        vq_dir = self.model_source / "vq"
        if (vq_dir / "config.json").is_file():
            from liquidgen.tokenizer import VQGAN

            self.diag_background = diagnostics.background_codes(
                VQGAN.from_pretrained(vq_dir).eval(), sorted(sizes)
            )

    def _restore(self, directory: Path) -> None:
        state = ckpt.read_state(directory)
        optim_state = torch.load(
            directory / ckpt.OPTIMIZER_FILE, weights_only=True, map_location="cpu"
        )
        set_optimizer_state_dict(
            self.lm, self.optimizer, optim_state, options=StateDictOptions(full_state_dict=True)
        )
        self.scheduler.load_state_dict(state["scheduler"])
        self.batcher.load_state_dict(state["data"])
        self.step = int(state["step"])
        rng_states = torch.load(directory / ckpt.RNG_FILE, weights_only=True)
        if len(rng_states) == self.info.world_size:
            _set_rng_state(rng_states[self.info.rank])
        elif self.info.is_main:
            print(
                f"liquidgen: {directory} was written by {len(rng_states)} process(es), this run has "
                f"{self.info.world_size}: data order is kept, model-side RNG streams restart",
            )

    # -- one step ------------------------------------------------------------------------
    def _logits(self, batch: MicroBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (N, V) at the N target positions of one micro-batch and the targets (N,);
        the head runs only where a target is."""
        device = self.info.device
        flat = batch.targets.view(-1)
        index = (flat != IGNORE_INDEX).nonzero().squeeze(1)  # (N,)
        targets = flat.index_select(0, index).to(device)
        with self.autocast:
            logits = self.wrapped(
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

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Per-modality mean loss and next-token accuracy over the fixed validation examples."""
        self.wrapped.eval()
        modalities = sorted(self.val_sets)
        totals = torch.zeros(len(modalities), 3, dtype=torch.float64, device=self.info.device)
        # rows: modalities; columns: summed loss, correct predictions, target tokens
        for m, modality in enumerate(modalities):
            for batches in self.val_sets[modality]:
                for batch in batches:
                    out = self._forward_sums(batch, accuracy=True)
                    count = (batch.targets != IGNORE_INDEX).sum().to(self.info.device)
                    totals[m] += torch.stack([out.ce, out.correct, count]).double()
        D.all_reduce_sum(totals, self.info)
        self.wrapped.train()
        metrics = {}
        for m, modality in enumerate(modalities):
            ce, correct, count = totals[m].tolist()
            metrics[f"{modality}/loss"] = ce / max(count, 1)
            metrics[f"{modality}/acc"] = correct / max(count, 1)
            metrics[f"{modality}/tokens"] = int(count)
        if self.diag_sets:
            self.wrapped.eval()
            sums = diagnostics.position_losses(
                self._token_losses, self.diag_sets, self.layout, self.diag_background
            )
            self.wrapped.train()
            sums = {k: v.to(self.info.device) for k, v in sums.items()}
            for value in sums.values():
                D.all_reduce_sum(value, self.info)
            metrics.update(diagnostics.summarize(sums))
        return metrics

    # -- checkpoints ---------------------------------------------------------------------
    def save(self) -> Path:
        """Write the checkpoint of the current step (collective: every rank must call it)."""
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        if self.config.lora.enabled:
            model_state = {
                n: p.detach().cpu().clone() for n, p in _trainable_named(self.lm).items()
            }
        else:
            model_state = get_model_state_dict(self.lm, options=options)
            for alias in tied_aliases(self.lm):
                model_state.pop(alias, None)
        optim_state = get_optimizer_state_dict(self.lm, self.optimizer, options=options)
        rng_states = self._gather_rng()
        target = ckpt.step_dir(self.out_dir, self.step)
        if self.info.is_main:
            self._write_checkpoint(target, model_state, optim_state, rng_states)
            ckpt.prune(self.out_dir, self.config.keep_last)
            plot_loss_curve(self.out_dir / METRICS_FILE, self.out_dir / CURVE_FILE)
        D.barrier(self.info)
        return target

    def _gather_rng(self) -> list[dict[str, Any]]:
        state = _rng_state()
        if not self.info.enabled:
            return [state]
        gathered: list[Any] = [None] * self.info.world_size
        torch.distributed.all_gather_object(gathered, state)
        return gathered

    def _write_checkpoint(
        self,
        target: Path,
        model_state: dict[str, torch.Tensor],
        optim_state: dict[str, Any],
        rng_states: list[dict[str, Any]],
    ) -> None:
        hf_logging.disable_progress_bar()
        try:
            with atomic_dir(target) as tmp:
                if self.config.lora.enabled:
                    merged = copy.deepcopy(self.lm).merge_and_unload()
                    merged.save_pretrained(tmp)
                    save_file(model_state, str(tmp / ckpt.TRAINABLE_FILE))
                else:
                    self.lm.save_pretrained(tmp, state_dict=model_state)
                self.tokenizer.save_pretrained(tmp)
                write_layout(tmp, self.layout)
                carry_over(self._carried_sources(), tmp)  # vq/ and liquid_generation.json
                write_train_config(tmp, self.config.to_yaml())
                torch.save(optim_state, tmp / ckpt.OPTIMIZER_FILE)
                torch.save(rng_states, tmp / ckpt.RNG_FILE)
                state = {
                    "step": self.step,
                    "world_size": self.info.world_size,
                    "strategy": self.strategy,
                    "lora": self.config.lora.enabled,
                    "data": self.batcher.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                }
                (tmp / ckpt.STATE_FILE).write_text(json.dumps(state, indent=1) + "\n")
                ckpt.write_manifest(tmp, self.step)
        finally:
            hf_logging.enable_progress_bar()

    def _carried_sources(self) -> list[Path]:
        """Folders to carry the VQGAN and generation defaults from, newest first: the
        checkpoint resumed from, then the model it started from (the resumed checkpoint may
        since have been pruned by ``keep_last``)."""
        sources = [self.resume_dir, self.model_source]
        return [Path(p) for p in sources if p is not None and Path(p).is_dir()]

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
