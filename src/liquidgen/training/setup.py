"""What a training run is built from: the model (full or LoRA), the optimiser, the LR
schedule and the data stream of :class:`~liquidgen.training.trainer.Trainer`.

- :func:`load_model`: the causal LM, tokenizer and layout from the start model or the
  checkpoint resumed from, with attention implementation, gradient checkpointing and LoRA;
- :func:`apply_lora`: peft adapters with the image/special token rows kept trainable;
- :func:`build_optimizer` and :func:`lr_factor`: AdamW with weight decay on matrices only, and
  the warm-up/cosine/WSD schedule (:mod:`liquidgen.utils.schedule`);
- :func:`formatted_source` and :func:`build_batcher`: the mixture of tokenized sources cut
  into this rank's micro-batches (:mod:`liquidgen.training.mixture`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from liquidgen.errors import CheckpointError, ConfigError
from liquidgen.model import load_liquid
from liquidgen.training import checkpoint as ckpt
from liquidgen.training.config import DataConfig, TrainConfig
from liquidgen.training.data import TokenizedDataset
from liquidgen.training.dist import DistInfo
from liquidgen.training.mixture import DistributedBatcher, Mixture
from liquidgen.training.sources import FormattedSource
from liquidgen.utils.schedule import scheduled_lr
from liquidgen.vocab import VocabLayout


# --------------------------------------------------------------------------- the model
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


def trainable_named(model: nn.Module) -> dict[str, nn.Parameter]:
    """The parameters that train, by name (LoRA: the adapters and the added token rows)."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def load_trainable(model: nn.Module, path: Path) -> None:
    """Copy a checkpoint's ``trainable.safetensors`` into the LoRA model's trainable tensors."""
    saved = load_file(str(path))
    params = trainable_named(model)
    if set(saved) != set(params):
        raise CheckpointError(
            f"{path}: trainable tensors do not match the LoRA model "
            f"(missing {sorted(set(params) - set(saved))[:3]}, unexpected {sorted(set(saved) - set(params))[:3]})"
        )
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(saved[name])


def load_model(
    config: TrainConfig, device: torch.device, resume_dir: Path | None
) -> tuple[nn.Module, Any, VocabLayout]:
    """The model to train (float32 master weights, training mode), its tokenizer and layout.

    A full fine-tune resumes from the checkpoint's weights; LoRA loads the start model and
    copies the checkpoint's trainable tensors into its adapters.
    """
    full_resume = resume_dir is not None and not config.lora.enabled
    source = resume_dir if full_resume else config.model.path
    model, tokenizer, layout = load_liquid(source, device=device, dtype=torch.float32)
    attention = config.model.attn_implementation
    try:  # "packed" runs sdpa outside TargetLM's forward (validation of the head, inference)
        model.set_attn_implementation("sdpa" if attention == "packed" else attention)
    except (ValueError, ImportError) as e:
        raise ConfigError(
            f"model.attn_implementation={config.model.attn_implementation!r}: {e}"
        ) from None
    model.config.use_cache = False
    if config.model.gradient_checkpointing:
        model.activation_checkpointing_enable({"use_reentrant": False})
    if config.lora.enabled:
        model = apply_lora(model, layout, config)
        if resume_dir is not None:
            load_trainable(model, resume_dir / ckpt.TRAINABLE_FILE)
    model.train()
    return model, tokenizer, layout


def probe_ids(layout: VocabLayout) -> list[int]:
    """A few text and image ids to check the target-only head against the model's own."""
    image = [layout.image_offset, layout.image_end - 1]
    return [i for i in (layout.bos_id, layout.boi_id, *image, layout.eoi_id) if i is not None]


# --------------------------------------------------------------------------- optimisation
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


# --------------------------------------------------------------------------- data
def formatted_source(
    data: DataConfig,
    name: str,
    modality: str,
    directory: str,
    tokenizer: Any,
    layout: VocabLayout,
    *,
    cfg_dropout: float | None = None,
) -> FormattedSource:
    """The tokenized dataset in ``directory`` read in its modality's sequence format
    (``cfg_dropout``: ``None`` for the configured one)."""
    return FormattedSource(
        name,
        modality,
        TokenizedDataset(directory),
        tokenizer,
        layout,
        max_len=data.seq_len,
        cfg_dropout=data.cfg_dropout if cfg_dropout is None else cfg_dropout,
        size_prefix=data.size_prefix,
    )


def build_batcher(
    config: TrainConfig, tokenizer: Any, layout: VocabLayout, info: DistInfo
) -> DistributedBatcher:
    """The weighted mixture of the training sources, cut into this rank's micro-batches."""
    data = config.data
    sources = [
        formatted_source(data, s.name, s.modality, s.train, tokenizer, layout) for s in data.sources
    ]
    mixture = Mixture(
        sources,
        [s.weight for s in data.sources],
        seq_len=data.seq_len,
        packing=data.packing,
        seed=data.seed,
    )
    return DistributedBatcher(
        mixture,
        global_batch=config.global_batch,
        micro_batch=config.micro_batch,
        rank=info.rank,
        world_size=info.world_size,
        pad_id=layout.padding_id,
    )
