"""Tiny random causal LMs with a Liquid-style vocabulary (text ids, then image codes)."""

from __future__ import annotations

import pytest
import torch
import transformers
from transformers import AutoModelForCausalLM, PreTrainedModel

from liquidgen.vocab import VocabLayout

TEXT_VOCAB = 96
CODEBOOK = 64
LAYOUT = VocabLayout(
    image_offset=TEXT_VOCAB,
    codebook_size=CODEBOOK,
    boi_id=7,
    eoi_id=8,
    uncond_id=9,
    bos_id=1,
    eos_id=2,
    pad_id=0,
)
UNCOND_PROMPT = [LAYOUT.uncond_id, LAYOUT.boi_id]
CONTEXT = 128
# Scales the random LM head so next-token distributions are neither uniform nor one-hot
# (about 50 effectively likely codes out of 64 with CFG 3).
HEAD_GAIN = 5.0

_COMMON = dict(
    vocab_size=LAYOUT.vocab_size,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=CONTEXT,
)
# Backbones of the paper's scaling study (+ Cohere/Granite for the logit-scale heads).
CONFIGS = {
    "llama": (transformers.LlamaConfig, dict(tie_word_embeddings=False)),
    "qwen2": (transformers.Qwen2Config, dict(tie_word_embeddings=True)),
    "gemma": (transformers.GemmaConfig, dict(head_dim=8)),
    # Gemma-2 with a strong soft-cap (2.0, not 30) so that skipping it would change the logits.
    "gemma2": (
        transformers.Gemma2Config,
        dict(head_dim=8, sliding_window=8, final_logit_softcapping=2.0),
    ),
    "cohere": (transformers.CohereConfig, dict(logit_scale=0.25)),
    "granite": (transformers.GraniteConfig, dict(logits_scaling=4.0)),
}
# Learned absolute positions: the one family where wrong position ids of padded rows show.
GPT2 = dict(vocab_size=LAYOUT.vocab_size, n_embd=32, n_layer=2, n_head=4, n_positions=CONTEXT)


def tiny_model(kind: str, seed: int = 0) -> PreTrainedModel:
    """A random float32 model of architecture ``kind`` whose vocabulary is LAYOUT's."""
    if kind == "gpt2":
        config = transformers.GPT2Config(**GPT2)
    else:
        config_cls, extra = CONFIGS[kind]
        config = config_cls(**_COMMON, **extra)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        head = model.get_output_embeddings()
        head.weight.mul_(HEAD_GAIN)
    return model.eval()


@pytest.fixture(scope="session")
def qwen() -> PreTrainedModel:
    return tiny_model("qwen2")
