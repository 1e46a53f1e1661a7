"""Train a VQGAN tokenizer: ``liquidgen tokenizer train CONFIG.yaml [key=value ...]``.

The model is the same :class:`~liquidgen.tokenizer.vqgan.VQGAN` as Liquid's tokenizer,
built from a smaller :class:`~liquidgen.tokenizer.config.VQGANConfig`. The trainer reads
as its pipeline:

- :mod:`.config` — :class:`VQTrainConfig`, the YAML file's sections (``model``, ``data``,
  ``train``, ``codebook``, ``gan``, ``perceptual``, ``output``) and ``key=value`` overrides;
- :mod:`.data` — training and held-out images: a folder decoded once, or world scenes;
- :mod:`.codebook` — dead-code restarts and EMA codebook updates;
- :mod:`.trainer` — :class:`VQTrainer` (one step: losses, optimisers, codebook statistics)
  and :func:`train_vqgan` (resume, train, log, checkpoint, export, evaluate);
- :mod:`.checkpoint` — the checkpoint folder (on the shared :mod:`liquidgen.utils.runs`);
- :mod:`.cli` — the ``tokenizer train`` command.

Every random choice is a function of ``(seed, step)`` or of saved state, so a run that is
interrupted and resumed from a checkpoint continues as an uninterrupted one: bit for bit
when it resumes in the same process, to about 1e-7 when it resumes in a new process
(docs/tokenizer.md).

Run folder layout::

    RUN_DIR/config.yaml                      resolved configuration
    RUN_DIR/log.jsonl                        one line of metrics every output.log_every steps
    RUN_DIR/checkpoints/step-00000200/       tokenizer/ (config.json, model.safetensors),
                                             train_state.json, train_state.safetensors,
                                             optimizer.pt, [discriminator.safetensors]
    RUN_DIR/final/ (or output.export_dir)    the trained tokenizer (VQGAN.from_pretrained)
    RUN_DIR/eval.json                        held-out PSNR / usage / perplexity
"""

from liquidgen.tokenizer.training.checkpoint import list_vq_checkpoints
from liquidgen.tokenizer.training.codebook import CodebookEMA, restart_dead_codes
from liquidgen.tokenizer.training.config import (
    CodebookConfig,
    GANConfig,
    PerceptualConfig,
    VQDataConfig,
    VQOptimConfig,
    VQOutputConfig,
    VQTrainConfig,
    load_vq_config,
    vq_config_from_dict,
)
from liquidgen.tokenizer.training.data import (
    ImageBank,
    build_data,
    load_folder,
    nearest_size,
    render_world,
)
from liquidgen.tokenizer.training.trainer import StepMetrics, VQTrainer, VQTrainResult, train_vqgan

__all__ = [
    "CodebookConfig",
    "CodebookEMA",
    "GANConfig",
    "ImageBank",
    "PerceptualConfig",
    "StepMetrics",
    "VQDataConfig",
    "VQOptimConfig",
    "VQOutputConfig",
    "VQTrainConfig",
    "VQTrainResult",
    "VQTrainer",
    "build_data",
    "list_vq_checkpoints",
    "load_folder",
    "load_vq_config",
    "nearest_size",
    "render_world",
    "restart_dead_codes",
    "train_vqgan",
    "vq_config_from_dict",
]
