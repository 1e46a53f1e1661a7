"""Tiny, deterministic model folders for tests (no network, a few seconds on CPU).

Every builder writes real Hugging Face / liquidgen folders from scratch: a byte-level or
byte-fallback BPE trained with `tokenizers` on :func:`tiny_corpus`, a randomly initialised
`transformers` model of 2 layers and width 32, and a random VQGAN. Seeds are fixed, so the
same call gives the same folder.

API:

- ``tiny_corpus() -> list[str]`` — the English sentences the tiny tokenizers are trained on.
- ``make_tiny_backbone(dir, family="llama"|"qwen2"|"gemma", *, text_vocab=512,
  spare_slots=True, tie_word_embeddings=True, seed=0) -> Path`` — a base LLM folder
  shaped like the real family's (see the function for what "shaped like" means).
- ``make_tiny_vq(dir, *, codebook_size=64, downsample=4, authors_format=False, seed=0)
  -> Path`` — a random VQGAN in liquidgen format (``config.json`` + ``model.safetensors``)
  or the authors' (``vqgan.yaml`` + Lightning-style ``vqgan.ckpt``).
- ``make_liquid7b_like(dir, *, text_vocab=512, codebook_size=64, downsample=4, seed=0)
  -> Path`` — laid out like the released Liquid-7B: a Gemma folder whose vocabulary is
  ``text_vocab + codebook_size`` rows, ``<boi>``/``<eoi>``/``<unconditional>`` at ids
  7/8/9 (Gemma's ``<unused0..2>`` renamed) and ``vqgan.yaml``/``vqgan.ckpt`` beside it.
- ``make_tiny_liquid(dir, family="gemma", *, text_vocab=512, codebook_size=64,
  downsample=4, seed=0) -> Path`` — a complete liquidgen checkpoint made by
  :func:`liquidgen.model.expand.expand` (with its VQGAN in ``vq/``), ready for
  :func:`liquidgen.model.load_liquid`, training and sampling.
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
from pathlib import Path
from typing import Literal

import torch
import yaml
from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import (
    AutoModelForCausalLM,
    GemmaConfig,
    GenerationConfig,
    LlamaConfig,
    PretrainedConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
)
from transformers.models.gemma.tokenization_gemma import GemmaTokenizer
from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from liquidgen.errors import ConfigError
from liquidgen.tokenizer import VQGAN, VQGANConfig
from liquidgen.vocab import BOI_TOKEN, EOI_TOKEN, UNCOND_TOKEN

Family = Literal["llama", "qwen2", "gemma"]
FAMILIES: tuple[str, ...] = ("llama", "qwen2", "gemma")

# Tiny transformer shape shared by all families.
_HIDDEN = 32
_INTERMEDIATE = 64
_LAYERS = 2
_HEADS = 4
_KV_HEADS = 2
_HEAD_DIM = _HIDDEN // _HEADS
_MAX_POSITIONS = 4096
# Spare slots each family gets when ``spare_slots`` is set and the BPE leaves no room.
_MIN_SPARE = 8
# Tiny VQGAN shape (GroupNorm(32) needs channel widths that are multiples of 32).
_VQ_CH = 32
_VQ_Z = 32
_VQ_EMBED_DIM = 8
# Small enough that the tiny Liquid-7B-like weights are sharded like the release
# (model-0000N-of-0000M.safetensors + index), so no model.safetensors sits beside vqgan.*.
_LIQUID7B_SHARD = "100KB"

GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "<start_of_turn>{{ role }}\n{{ message['content'] | trim }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
QWEN2_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
LLAMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{{ message['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
# The GPT-2/Llama-3-style split before byte-level BPE (the families differ in details
# that do not matter for a tiny fixture).
_BYTE_LEVEL_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

_COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "black", "white", "gray", "teal")
_SHAPES = ("circle", "square", "triangle", "star", "rectangle", "diamond", "cross", "heart")
_PLACES = ("left", "right", "top", "bottom", "centre", "corner")
_TEMPLATES = (
    "a {c} {s} on the {p} of the picture.",
    "The {s} is {c} and it sits near the {p}.",
    "There is one {c} {s}; what colour is the {s}? It is {c}.",
    "Q: Where is the {c} {s}? A: At the {p}.",
    "Draw a small {c} {s} in the {p}, then describe it in words!",
)


def tiny_corpus() -> list[str]:
    """Deterministic English sentences about coloured shapes (the vocabulary of test data)."""
    sentences = [
        template.format(c=c, s=s, p=p)
        for (c, s, p), template in zip(
            itertools.product(_COLOURS, _SHAPES, _PLACES),
            itertools.cycle(_TEMPLATES),
            strict=False,
        )
    ]
    sentences += [
        f"The numbers {i}, {i * 7} and {i * 13} are written in {_COLOURS[i % 10]}."
        for i in range(50)
    ]
    # The fixed phrases of Liquid's formats, so that prompts tokenize into few pieces.
    sentences += [
        f"Image Size: Width is {w} Height is {h}. A {c} shape. Generate an image based on this description."
        for (w, h), c in zip(
            itertools.product((16, 32, 64), repeat=2), itertools.cycle(_COLOURS), strict=False
        )
    ]
    sentences += [
        "The caption of this image is: a picture. User: what is it? Assistant: a shape."
    ] * 5
    return sentences


# --------------------------------------------------------------------------- tokenizers
def _byte_level_bpe(vocab_size: int) -> Tokenizer:
    """A byte-level BPE (GPT-2 / Llama-3 / Qwen2 style) trained on :func:`tiny_corpus`."""
    backend = Tokenizer(models.BPE())
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_BYTE_LEVEL_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(tiny_corpus(), trainer=trainer)
    return backend


def _vocab_and_merges(backend: Tokenizer) -> tuple[dict[str, int], list[tuple[str, str]]]:
    model = json.loads(backend.to_str())["model"]
    return dict(model["vocab"]), [tuple(m) for m in model["merges"]]


def _gemma_tokenizer(text_vocab: int, spare_slots: bool, renames: dict[str, str]) -> GemmaTokenizer:
    """Gemma's layout: ``<pad> <eos> <bos> <unk> <mask> <2mass> [@BOS@]`` at 0..6, then
    ``<unused0>``.. from id 7, ``<start_of_turn>``/``<end_of_turn>``, the 256 byte-fallback
    tokens, the BPE pieces, and (with ``spare_slots``) more ``<unusedN>`` up to ``text_vocab``.
    ``renames`` maps ``<unusedN>`` names to other names (the Liquid-7B layout)."""
    head = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<2mass>", "[@BOS@]"]
    unused = [f"<unused{i}>" for i in range(_MIN_SPARE if spare_slots else 0)]
    turns = ["<start_of_turn>", "<end_of_turn>"]
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    specials = head + unused + turns
    backend = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    backend.normalizer = normalizers.Replace(" ", "▁")
    backend.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    trainer = trainers.BpeTrainer(
        vocab_size=text_vocab,
        min_frequency=2,
        special_tokens=specials + byte_tokens,
        show_progress=False,
    )
    backend.train_from_iterator(tiny_corpus(), trainer=trainer)
    vocab, merges = _vocab_and_merges(backend)
    if spare_slots:
        for i in itertools.count(len(unused)):
            if len(vocab) >= text_vocab:
                break
            name = f"<unused{i}>"
            vocab[name] = len(vocab)
            specials.append(name)
    for old, new in renames.items():
        vocab[new] = vocab.pop(old)
        specials[specials.index(old)] = new
    tokenizer = GemmaTokenizer(vocab=vocab, merges=merges, add_bos_token=True)
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    tokenizer.chat_template = GEMMA_CHAT_TEMPLATE
    return tokenizer


def _qwen2_tokenizer(text_vocab: int, spare_slots: bool) -> tuple[Qwen2Tokenizer, int]:
    """Qwen2.5's layout: byte-level BPE, then ``<|endoftext|> <|im_start|> <|im_end|>``; with
    ``spare_slots`` the embedding has padding rows past ``len(tokenizer)`` (151665 vs 151936
    in Qwen2.5). Returns the tokenizer and the embedding rows."""
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    padding_rows = _MIN_SPARE if spare_slots else 0
    backend = _byte_level_bpe(text_vocab - len(specials) - padding_rows)
    vocab, merges = _vocab_and_merges(backend)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges)
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    tokenizer.chat_template = QWEN2_CHAT_TEMPLATE
    rows = text_vocab if spare_slots else len(tokenizer)
    return tokenizer, max(rows, len(tokenizer))


def _llama_tokenizer(text_vocab: int, spare_slots: bool) -> PreTrainedTokenizerFast:
    """Llama-3's layout: byte-level BPE, then ``<|begin_of_text|> <|end_of_text|>``, header and
    end-of-turn tokens, and (with ``spare_slots``) ``<|reserved_special_token_N|>`` up to
    ``text_vocab``; encoding prepends ``<|begin_of_text|>``."""
    fixed = [
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eot_id|>",
    ]
    reserve = _MIN_SPARE if spare_slots else 0
    backend = _byte_level_bpe(text_vocab - len(fixed) - reserve)
    specials = fixed[:]
    if spare_slots:
        for i in itertools.count():
            if backend.get_vocab_size() + len(specials) >= text_vocab:
                break
            specials.append(f"<|reserved_special_token_{i}|>")
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    bos = fixed[0]
    backend.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A",
        pair=f"{bos} $A {bos} $B",
        special_tokens=[(bos, backend.token_to_id(bos))],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=bos,
        eos_token="<|end_of_text|>",
        chat_template=LLAMA3_CHAT_TEMPLATE,
    )


# --------------------------------------------------------------------------- models
def _model_config(
    family: str, vocab_size: int, tokenizer: PreTrainedTokenizerBase, tie: bool
) -> PretrainedConfig:
    common = {
        "vocab_size": vocab_size,
        "hidden_size": _HIDDEN,
        "intermediate_size": _INTERMEDIATE,
        "num_hidden_layers": _LAYERS,
        "num_attention_heads": _HEADS,
        "num_key_value_heads": _KV_HEADS,
        "head_dim": _HEAD_DIM,
        "max_position_embeddings": _MAX_POSITIONS,
        "tie_word_embeddings": tie,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if family == "gemma":
        return GemmaConfig(**common, hidden_act="gelu_pytorch_tanh")
    if family == "qwen2":
        return Qwen2Config(**common)
    return LlamaConfig(**common)


def _save_model(
    directory: Path,
    config: PretrainedConfig,
    tokenizer: PreTrainedTokenizerBase,
    seed: int,
    max_shard_size: str | None = None,
) -> None:
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    shard = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
    model.save_pretrained(directory, **shard)
    tokenizer.save_pretrained(directory)


def make_tiny_backbone(
    directory: str | os.PathLike[str],
    family: Family = "llama",
    *,
    text_vocab: int = 512,
    spare_slots: bool = True,
    tie_word_embeddings: bool = True,
    seed: int = 0,
) -> Path:
    """Write a tiny random base LLM of ``family`` in Hugging Face format.

    The tokenizer mimics the family's real layout: ``gemma`` (``GemmaTokenizer``,
    byte-fallback BPE, ``<unused0>`` at id 7), ``qwen2`` (``Qwen2Tokenizer``, byte-level
    BPE, no bos, padding rows after the last token) and ``llama`` (Llama-3: byte-level
    ``PreTrainedTokenizerFast`` with reserved special tokens at the end). Each has its
    family's chat template.

    Args:
        directory: output folder (created).
        family: which `transformers` architecture and tokenizer layout.
        text_vocab: embedding rows (``config.vocab_size``); with ``spare_slots=False`` the
            gemma/llama vocabulary ends where the BPE ends, which can be a little less.
        spare_slots: give the family its spare slots (Gemma ``<unusedN>``, Llama
            ``<|reserved_special_token_N|>``, Qwen2 padding rows). Without them
            ``len(tokenizer) == config.vocab_size`` and nothing is free for new tokens.
        tie_word_embeddings: share the input embedding and the LM head.
        seed: weight-initialisation seed.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if family == "gemma":
        tokenizer = _gemma_tokenizer(text_vocab, spare_slots, renames={})
        rows = len(tokenizer)
    elif family == "qwen2":
        tokenizer, rows = _qwen2_tokenizer(text_vocab, spare_slots)
    elif family == "llama":
        tokenizer = _llama_tokenizer(text_vocab, spare_slots)
        rows = len(tokenizer)
    else:
        raise ConfigError(f"family must be one of {FAMILIES}, got {family!r}")
    config = _model_config(family, rows, tokenizer, tie_word_embeddings)
    _save_model(directory, config, tokenizer, seed)
    return directory


# --------------------------------------------------------------------------- VQGAN
def _tiny_vq_config(codebook_size: int, downsample: int) -> VQGANConfig:
    levels = downsample.bit_length()  # downsample = 2 ** (levels - 1)
    if downsample < 1 or 2 ** (levels - 1) != downsample:
        raise ConfigError(f"downsample must be a power of two, got {downsample}")
    return VQGANConfig(
        ch=_VQ_CH,
        ch_mult=(1,) * levels,
        num_res_blocks=1,
        z_channels=_VQ_Z,
        resolution=32,
        n_embed=codebook_size,
        embed_dim=_VQ_EMBED_DIM,
    )


def _write_authors_vq(directory: Path, codebook_size: int, downsample: int, seed: int) -> None:
    """``vqgan.yaml`` + a Lightning-style ``vqgan.ckpt`` (``{"state_dict": ...}``)."""
    config = _tiny_vq_config(codebook_size, downsample)
    torch.manual_seed(seed)
    state = VQGAN(config).state_dict()
    yaml_doc = {
        "model": {
            "target": "taming.models.vqgan.VQModel",
            "params": {
                "embed_dim": config.embed_dim,
                "n_embed": config.n_embed,
                "ddconfig": config.ddconfig(),
            },
        }
    }
    (directory / "vqgan.yaml").write_text(yaml.safe_dump(yaml_doc, sort_keys=False))
    torch.save({"state_dict": state, "global_step": 0}, directory / "vqgan.ckpt")


def make_tiny_vq(
    directory: str | os.PathLike[str],
    *,
    codebook_size: int = 64,
    downsample: int = 4,
    authors_format: bool = False,
    seed: int = 0,
) -> Path:
    """Write a random tiny VQGAN (``downsample`` a power of two) in either folder format."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if authors_format:
        _write_authors_vq(directory, codebook_size, downsample, seed)
    else:
        torch.manual_seed(seed)
        VQGAN(_tiny_vq_config(codebook_size, downsample)).save_pretrained(directory)
    return directory


# --------------------------------------------------------------------------- Liquid folders
def make_liquid7b_like(
    directory: str | os.PathLike[str],
    *,
    text_vocab: int = 512,
    codebook_size: int = 64,
    downsample: int = 4,
    seed: int = 0,
) -> Path:
    """Write a folder laid out like the released Liquid-7B, scaled down.

    ``GemmaForCausalLM`` with ``vocab_size = text_vocab + codebook_size`` (256000 + 8192 in
    the release), a ``GemmaTokenizer`` of ``text_vocab`` tokens whose ``<unused0..2>`` are
    renamed ``<boi>``, ``<eoi>``, ``<unconditional>`` (ids 7, 8, 9), and the VQGAN in the
    authors' format (``vqgan.yaml`` + ``vqgan.ckpt``) in the same folder. The weights are
    sharded with an index, as in the release.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    renames = {"<unused0>": BOI_TOKEN, "<unused1>": EOI_TOKEN, "<unused2>": UNCOND_TOKEN}
    tokenizer = _gemma_tokenizer(text_vocab, spare_slots=True, renames=renames)
    config = _model_config("gemma", len(tokenizer) + codebook_size, tokenizer, tie=True)
    _save_model(directory, config, tokenizer, seed, max_shard_size=_LIQUID7B_SHARD)
    _write_authors_vq(directory, codebook_size, downsample, seed)
    return directory


def make_tiny_liquid(
    directory: str | os.PathLike[str],
    family: Family = "gemma",
    *,
    text_vocab: int = 512,
    codebook_size: int = 64,
    downsample: int = 4,
    seed: int = 0,
) -> Path:
    """Write a complete tiny liquidgen checkpoint (backbone expanded with a random VQGAN).

    The result holds the HF model + tokenizer, ``liquid_layout.json`` and the VQGAN in
    ``vq/`` — what ``liquidgen expand`` produces for a real backbone.
    """
    from liquidgen.model.expand import expand

    with tempfile.TemporaryDirectory(prefix="liquidgen-tiny-") as tmp:
        base = make_tiny_backbone(Path(tmp) / "base", family, text_vocab=text_vocab, seed=seed)
        vq = make_tiny_vq(
            Path(tmp) / "vq", codebook_size=codebook_size, downsample=downsample, seed=seed
        )
        expand(base, vq, directory, seed=seed)
    return Path(directory)
