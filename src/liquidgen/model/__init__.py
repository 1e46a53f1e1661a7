"""The unified Liquid model: a Hugging Face causal LM whose vocabulary holds the image codes.

- :func:`expand` turns a text LLM folder + a VQGAN into a liquidgen checkpoint;
- :func:`load_liquid` / :func:`save_liquid` read and write checkpoints (also the released
  Liquid-7B layout);
- :func:`train_text_tokenizer` makes a byte-level BPE for models trained from scratch.
"""

from liquidgen.model.expand import expand, register_image_tokens, rename_tokens, spare_slots
from liquidgen.model.text_tokenizer import read_texts, save_text_tokenizer, train_text_tokenizer
from liquidgen.model.unified import (
    VQ_SUBDIR,
    VQSpec,
    check_layout,
    derive_layout,
    find_vq_dir,
    load_liquid,
    read_vq_spec,
    save_liquid,
)

__all__ = [
    "VQ_SUBDIR",
    "VQSpec",
    "check_layout",
    "derive_layout",
    "expand",
    "find_vq_dir",
    "load_liquid",
    "read_texts",
    "read_vq_spec",
    "register_image_tokens",
    "rename_tokens",
    "save_liquid",
    "save_text_tokenizer",
    "spare_slots",
    "train_text_tokenizer",
]
