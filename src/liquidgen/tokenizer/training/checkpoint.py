"""The tokenizer trainer's checkpoint folder: written atomically, listed, pruned, restored.

``RUN_DIR/checkpoints/step-00000200/`` holds::

    tokenizer/                    the model (config.json, model.safetensors; VQGAN.from_pretrained)
    train_state.json              step, last window's usage/perplexity/restarts, the config
    train_state.safetensors       code counts of the current window, latent pool, torch RNG
                                  state [, ema_size, ema_total]
    optimizer.pt                  AdamW state [, the discriminator's]
    [discriminator.safetensors]   with the GAN on

A folder is complete when the first four files exist (:data:`REQUIRED_FILES`); listing,
pruning to ``output.keep_last`` and removing a killed save's temporaries are the shared
:mod:`liquidgen.utils.runs` helpers. (The language-model trainer's folders,
:mod:`liquidgen.training.checkpoint`, hold other files and are hash-verified.)
"""

from __future__ import annotations

import json
import pickle
import re
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from liquidgen.errors import CheckpointError, ConfigError
from liquidgen.tokenizer.config import VQGANConfig
from liquidgen.tokenizer.vqgan import VQGAN
from liquidgen.utils.io import atomic_dir
from liquidgen.utils.runs import prune_step_folders, remove_temporaries, step_folders

if TYPE_CHECKING:
    from liquidgen.tokenizer.training.trainer import VQTrainer

CHECKPOINT_DIR = "checkpoints"
REQUIRED_FILES = (
    "train_state.json",
    "train_state.safetensors",
    "optimizer.pt",
    "tokenizer/model.safetensors",
)
_TEMPORARY = re.compile(r"^\.step-.*\.tmp$", re.DOTALL)  # left by a killed save


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    """Folder of the checkpoint taken after step ``step``."""
    return Path(run_dir) / CHECKPOINT_DIR / f"step-{step:08d}"


def list_vq_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoint folders of a run, newest (highest step) first."""
    folders = step_folders(Path(run_dir) / CHECKPOINT_DIR, required=REQUIRED_FILES)
    return [path for _, path in reversed(folders)]


def prune_checkpoints(run_dir: str | Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` complete checkpoints and any half-written one."""
    root = Path(run_dir) / CHECKPOINT_DIR
    prune_step_folders(step_folders(root, required=REQUIRED_FILES), keep_last)
    remove_temporaries(root, _TEMPORARY)


def save_checkpoint(trainer: VQTrainer, path: str | Path) -> Path:
    """Write ``trainer``'s resumable state into the folder ``path``, atomically."""
    path = Path(path)
    with atomic_dir(path) as tmp:
        trainer.model.save_pretrained(tmp / "tokenizer")
        tensors = {
            "usage_counts": trainer.usage_counts,
            "latent_pool": trainer.pool.contiguous(),
            "torch_rng_state": torch.get_rng_state(),
            **(trainer.ema.state() if trainer.ema is not None else {}),
        }
        save_file(tensors, str(tmp / "train_state.safetensors"))
        optim = {"optimizer": trainer.optimizer.state_dict()}
        if trainer.disc is not None and trainer.disc_optimizer is not None:
            save_file(dict(trainer.disc.state_dict()), str(tmp / "discriminator.safetensors"))
            optim["disc_optimizer"] = trainer.disc_optimizer.state_dict()
        torch.save(optim, tmp / "optimizer.pt")
        meta = {
            "step": trainer.step,
            "last_usage": trainer.last_usage,
            "last_perplexity": trainer.last_perplexity,
            "last_restarted": trainer.last_restarted,
            "config": trainer.config.to_dict(),
        }
        (tmp / "train_state.json").write_text(json.dumps(meta, indent=2) + "\n")
    return path


def load_checkpoint(trainer: VQTrainer, path: str | Path) -> None:
    """Restore into ``trainer`` everything :func:`save_checkpoint` wrote. The model config
    must match (:class:`~liquidgen.errors.ConfigError` otherwise)."""
    path = Path(path)
    try:
        meta = json.loads((path / "train_state.json").read_text())
        step = int(meta["step"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable train_state.json ({e})") from e
    saved_model = meta.get("config", {}).get("model")
    if saved_model is not None and VQGANConfig.from_dict(saved_model) != trainer.config.model:
        raise ConfigError(
            f"{path} was trained with a different model config; use a new output.run_dir"
        )
    loaded = VQGAN.from_pretrained(path / "tokenizer")  # strict on keys and shapes
    _copy_state(trainer.model, loaded.state_dict(), path / "tokenizer")
    trainer.model.train()
    try:
        tensors = load_file(str(path / "train_state.safetensors"))
        optim = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
        trainer.optimizer.load_state_dict(optim["optimizer"])
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
    if trainer.disc is not None and trainer.disc_optimizer is not None:
        disc_file = path / "discriminator.safetensors"
        if disc_file.is_file():  # absent when the GAN was switched on after this checkpoint
            _copy_state(trainer.disc, load_file(str(disc_file)), disc_file)
            trainer.disc.train()
            if "disc_optimizer" in optim:
                trainer.disc_optimizer.load_state_dict(optim["disc_optimizer"])
    if tuple(tensors["usage_counts"].shape) != tuple(trainer.usage_counts.shape):
        raise CheckpointError(f"{path}: usage_counts do not match the codebook size")
    trainer.usage_counts = tensors["usage_counts"].long()
    trainer.pool = tensors["latent_pool"].float()
    if trainer.ema is not None:
        try:
            trainer.ema.load(tensors)
        except CheckpointError as e:
            raise CheckpointError(f"{path}: {e}") from e
    torch.set_rng_state(tensors["torch_rng_state"])
    trainer.step = step
    trainer.last_usage = float(meta.get("last_usage", 0.0))
    trainer.last_perplexity = float(meta.get("last_perplexity", 0.0))
    trainer.last_restarted = int(meta.get("last_restarted", 0))


def _copy_state(module: nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """Copy ``state`` into ``module``'s existing tensors, so optimisers keep pointing at them."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{source}: {' '.join(str(e).split())}") from e
