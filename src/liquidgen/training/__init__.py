"""Training Liquid: tokenized data on disk, the mixed-modality data stream, and the trainer.

- :mod:`.data` — ``liquidgen data tokenize``: images -> VQGAN codes once, memory-mapped shards;
- :mod:`.inputs` — the datasets ``data tokenize`` reads (JSONL, world folders, text, easy-VQA);
- :mod:`.sources` — a tokenized dataset read in one sequence format (text, T2I, caption, VQA, chat);
- :mod:`.mixture` — weighted, packed, deterministic and resumable rows, sharded over ranks;
- :mod:`.loss` — next-token cross-entropy on target positions only, z-loss;
- :mod:`.config` — the typed :class:`TrainConfig` (YAML + ``key=value`` overrides);
- :mod:`.trainer` — :func:`train`: AdamW, schedule, accumulation, clipping, bf16, LoRA, checkpoints;
- :mod:`.checkpoint` — atomic, hash-verified checkpoint folders and auto-resume;
- :mod:`.dist` — torchrun: DDP and FSDP2 (gloo on CPU, nccl on GPU);
- :mod:`.memory` — per-GPU memory estimate for FSDP2 recipes;
- :mod:`.report` — metrics JSONL and the loss-curve PNG.
"""

from liquidgen.training.config import TrainConfig, load_config
from liquidgen.training.trainer import Trainer, TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "Trainer", "load_config", "train"]
