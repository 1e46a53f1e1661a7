"""A running trainer's state in and out of checkpoint folders: which checkpoint to resume
from, writing one (weights, optimiser, scheduler, data position, every rank's RNG) and
restoring from one.

The folder format itself (files, manifest, verification, pruning) is
:mod:`liquidgen.training.checkpoint`; this module fills it from a
:class:`~liquidgen.training.trainer.Trainer` and reads it back into one, so a resumed run
continues bit-for-bit on the same hardware and process layout.
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)
from transformers.utils import logging as hf_logging

from liquidgen.checkpoint import carry_over, write_layout, write_train_config
from liquidgen.training import checkpoint as ckpt
from liquidgen.training import dist as D
from liquidgen.training.config import TrainConfig
from liquidgen.training.dist import DistInfo
from liquidgen.training.report import CURVE_FILE, METRICS_FILE, plot_loss_curve
from liquidgen.training.setup import tied_aliases, trainable_named
from liquidgen.utils.io import atomic_dir

if TYPE_CHECKING:
    from liquidgen.training.trainer import Trainer


# --------------------------------------------------------------------------- RNG state
def rng_state() -> dict[str, Any]:
    """This process's Python, NumPy, torch and CUDA RNG states (JSON-able but for torch's)."""
    py = random.getstate()
    np_state = np.random.get_state()
    return {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _gather_rng(info: DistInfo) -> list[dict[str, Any]]:
    state = rng_state()
    if not info.enabled:
        return [state]
    gathered: list[Any] = [None] * info.world_size
    torch.distributed.all_gather_object(gathered, state)
    return gathered


# --------------------------------------------------------------------------- resuming
def resume_dir(config: TrainConfig, out_dir: Path, info: DistInfo) -> Path | None:
    """The checkpoint to resume from: none (``resume: never``), the newest valid one in
    ``out_dir`` (``auto``; a killed save's temporaries removed first), or the given folder
    (which must be valid)."""
    resume = config.resume
    if resume == "never":
        return None
    if info.is_main:
        ckpt.remove_stale_temporaries(out_dir)
    if resume == "auto":
        found = ckpt.latest_valid(out_dir) if info.is_main else None
        found = D.broadcast_object(str(found) if found else None, info)
        return Path(found) if found else None
    ckpt.verify(resume)  # an explicit checkpoint must be valid: raise with the reason
    return Path(resume)


def restore(trainer: Trainer, directory: Path) -> None:
    """Load optimiser, scheduler, data position, step and (same world size) RNG states.

    The weights were loaded with the model (:func:`liquidgen.training.setup.load_model`).
    """
    info = trainer.info
    state = ckpt.read_state(directory)
    optim_state = torch.load(directory / ckpt.OPTIMIZER_FILE, weights_only=True, map_location="cpu")
    set_optimizer_state_dict(
        trainer.lm, trainer.optimizer, optim_state, options=StateDictOptions(full_state_dict=True)
    )
    trainer.scheduler.load_state_dict(state["scheduler"])
    trainer.batcher.load_state_dict(state["data"])
    trainer.step = int(state["step"])
    rng_states = torch.load(directory / ckpt.RNG_FILE, weights_only=True)
    if len(rng_states) == info.world_size:
        set_rng_state(rng_states[info.rank])
    elif info.is_main:
        print(
            f"liquidgen: {directory} was written by {len(rng_states)} process(es), this run has "
            f"{info.world_size}: data order is kept, model-side RNG streams restart",
        )


# --------------------------------------------------------------------------- saving
def save_checkpoint(trainer: Trainer) -> Path:
    """Write the checkpoint of the trainer's current step (collective: every rank must call
    it); the main rank writes the folder, prunes old ones and redraws the loss curve."""
    info = trainer.info
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    if trainer.config.lora.enabled:
        model_state = {n: p.detach().cpu().clone() for n, p in trainable_named(trainer.lm).items()}
    else:
        model_state = get_model_state_dict(trainer.lm, options=options)
        for alias in tied_aliases(trainer.lm):
            model_state.pop(alias, None)
    optim_state = get_optimizer_state_dict(trainer.lm, trainer.optimizer, options=options)
    rng_states = _gather_rng(info)
    target = ckpt.step_dir(trainer.out_dir, trainer.step)
    if info.is_main:
        _write_checkpoint(trainer, target, model_state, optim_state, rng_states)
        ckpt.prune(trainer.out_dir, trainer.config.keep_last)
        plot_loss_curve(trainer.out_dir / METRICS_FILE, trainer.out_dir / CURVE_FILE)
    D.barrier(info)
    return target


def _write_checkpoint(
    trainer: Trainer,
    target: Path,
    model_state: dict[str, torch.Tensor],
    optim_state: dict[str, Any],
    rng_states: list[dict[str, Any]],
) -> None:
    config = trainer.config
    hf_logging.disable_progress_bar()
    try:
        with atomic_dir(target) as tmp:
            if config.lora.enabled:
                merged = copy.deepcopy(trainer.lm).merge_and_unload()
                merged.save_pretrained(tmp)
                save_file(model_state, str(tmp / ckpt.TRAINABLE_FILE))
            else:
                trainer.lm.save_pretrained(tmp, state_dict=model_state)
            trainer.tokenizer.save_pretrained(tmp)
            write_layout(tmp, trainer.layout)
            carry_over(carried_sources(trainer), tmp)  # vq/ and liquid_generation.json
            write_train_config(tmp, config.to_yaml())
            torch.save(optim_state, tmp / ckpt.OPTIMIZER_FILE)
            torch.save(rng_states, tmp / ckpt.RNG_FILE)
            state = {
                "step": trainer.step,
                "world_size": trainer.info.world_size,
                "strategy": trainer.strategy,
                "lora": config.lora.enabled,
                "data": trainer.batcher.state_dict(),
                "scheduler": trainer.scheduler.state_dict(),
            }
            (tmp / ckpt.STATE_FILE).write_text(json.dumps(state, indent=1) + "\n")
            ckpt.write_manifest(tmp, trainer.step)
    finally:
        hf_logging.enable_progress_bar()


def carried_sources(trainer: Trainer) -> list[Path]:
    """Folders to carry the VQGAN and generation defaults from, newest first: the
    checkpoint resumed from, then the model it started from (the resumed checkpoint may
    since have been pruned by ``keep_last``)."""
    sources = [trainer.resume_dir, trainer.model_source]
    return [Path(p) for p in sources if p is not None and Path(p).is_dir()]
