"""Deprecated: the tokenizer trainer's old module, kept for one release as a re-export.

The trainer now lives in :mod:`liquidgen.tokenizer.training` (``config``, ``data``,
``codebook``, ``trainer``, ``checkpoint``, ``cli``) with names that do not collide with the
language-model trainer's (:mod:`liquidgen.training`). The old names map to::

    TrainConfig -> VQTrainConfig          DataConfig -> VQDataConfig
    OptimConfig -> VQOptimConfig          OutputConfig -> VQOutputConfig
    TokenizerTrainer -> VQTrainer         TrainResult -> VQTrainResult
    train -> train_vqgan                  load_config -> load_vq_config
    config_from_dict -> vq_config_from_dict
    list_checkpoints -> list_vq_checkpoints

``CodebookConfig``, ``GANConfig``, ``PerceptualConfig``, ``ImageBank``, ``StepMetrics``,
``CodebookEMA``, ``build_data``, ``load_folder``, ``nearest_size``, ``render_world``,
``restart_dead_codes`` and ``register_train`` keep their names. See docs/tokenizer.md.
"""

from liquidgen.tokenizer.training.checkpoint import list_vq_checkpoints as list_checkpoints
from liquidgen.tokenizer.training.cli import register_train
from liquidgen.tokenizer.training.codebook import CodebookEMA, restart_dead_codes
from liquidgen.tokenizer.training.config import (
    CodebookConfig,
    GANConfig,
    PerceptualConfig,
)
from liquidgen.tokenizer.training.config import VQDataConfig as DataConfig
from liquidgen.tokenizer.training.config import VQOptimConfig as OptimConfig
from liquidgen.tokenizer.training.config import VQOutputConfig as OutputConfig
from liquidgen.tokenizer.training.config import VQTrainConfig as TrainConfig
from liquidgen.tokenizer.training.config import load_vq_config as load_config
from liquidgen.tokenizer.training.config import vq_config_from_dict as config_from_dict
from liquidgen.tokenizer.training.data import (
    ImageBank,
    build_data,
    load_folder,
    nearest_size,
    render_world,
)
from liquidgen.tokenizer.training.trainer import StepMetrics
from liquidgen.tokenizer.training.trainer import VQTrainer as TokenizerTrainer
from liquidgen.tokenizer.training.trainer import VQTrainResult as TrainResult
from liquidgen.tokenizer.training.trainer import train_vqgan as train
from liquidgen.utils.config import apply_overrides

__all__ = [
    "CodebookConfig",
    "CodebookEMA",
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
