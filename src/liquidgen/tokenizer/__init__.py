"""The VQGAN image tokenizer (Chameleon's, as Liquid uses it): pixels <-> discrete codes."""

from liquidgen.tokenizer.config import VQGANConfig
from liquidgen.tokenizer.images import (
    PAD_COLOR,
    load_image,
    pad_to_square,
    pil_to_tensor,
    preprocess_generation,
    preprocess_understanding,
    resize_center_crop,
    tensor_to_pil,
    to_rgb,
)
from liquidgen.tokenizer.vqgan import VQGAN

__all__ = [
    "PAD_COLOR",
    "VQGAN",
    "VQGANConfig",
    "load_image",
    "pad_to_square",
    "pil_to_tensor",
    "preprocess_generation",
    "preprocess_understanding",
    "resize_center_crop",
    "tensor_to_pil",
    "to_rgb",
]
