"""The vocabulary layout of a Liquid model — the one place that owns its numbers.

Liquid appends the VQGAN codebook to an LLM's vocabulary: image token id =
``image_offset + code``. ``image_offset`` is the *original text vocabulary size* of the
backbone's embedding matrix (256000 for Gemma), stored explicitly because for some
backbones (Qwen2.5) ``len(tokenizer)`` and ``config.vocab_size`` differ. Three special
tokens mark images: ``<boi>``, ``<eoi>`` and ``<unconditional>``.

Nothing else in liquidgen hard-codes these numbers; every checkpoint stores a
``liquid_layout.json`` (named, read and written by :mod:`liquidgen.checkpoint`). The layout
also owns the vocabulary facts other layers used to re-derive: the padding id
(:attr:`VocabLayout.padding_id`), the embedding rows Liquid adds (:meth:`VocabLayout.added_rows`),
codes <-> token ids, and the tokenizer's special ids (:func:`special_token_ids`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

from liquidgen.errors import CodeRangeError, ConfigError

# Padding when the layout names no pad id (nor eos): left/right padding is masked out of
# attention and carries no label, so any text id will do.
_LAST_RESORT_PAD_ID = 0
BOI_TOKEN = "<boi>"
EOI_TOKEN = "<eoi>"
UNCOND_TOKEN = "<unconditional>"


@dataclasses.dataclass(frozen=True)
class VocabLayout:
    """Where text, special and image tokens live in the unified vocabulary.

    Ids ``[0, image_offset)`` are text (including the specials); ids
    ``[image_offset, image_offset + codebook_size)`` are image codes.
    """

    image_offset: int  # first image-token id == rows of the original text embedding
    codebook_size: int  # number of VQGAN codes (8192 for Liquid)
    boi_id: int  # <boi>, begin of image
    eoi_id: int  # <eoi>, end of image
    uncond_id: int  # <unconditional>, the CFG-dropout text
    bos_id: int | None = None  # the backbone's begin-of-sequence id (None: backbone has none)
    eos_id: int | None = None  # the backbone's end-of-sequence id
    pad_id: int | None = None  # padding id used in batches (a text id; labels are masked)
    downsample: int = 16  # image pixels per code along each axis (the VQGAN's factor)

    def __post_init__(self) -> None:
        if self.image_offset <= 0 or self.codebook_size <= 0:
            raise ConfigError(
                f"image_offset ({self.image_offset}) and codebook_size ({self.codebook_size}) must be > 0"
            )
        for name in ("boi_id", "eoi_id", "uncond_id", "bos_id", "eos_id", "pad_id"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < self.image_offset:
                raise ConfigError(f"{name}={value} must be a text id in [0, {self.image_offset})")
        if len({self.boi_id, self.eoi_id, self.uncond_id}) != 3:
            raise ConfigError("<boi>, <eoi> and <unconditional> must have distinct ids")
        if self.downsample <= 0:
            raise ConfigError(f"downsample must be > 0, got {self.downsample}")

    @property
    def vocab_size(self) -> int:
        """Rows the unified embedding needs: text + image codes."""
        return self.image_offset + self.codebook_size

    @property
    def image_end(self) -> int:
        """One past the last image-token id."""
        return self.image_offset + self.codebook_size

    @property
    def padding_id(self) -> int:
        """The id batches are padded with: ``pad_id``, else ``eos_id``, else 0 (padding is
        masked out of attention and carries no label, so any text id is correct)."""
        return next(i for i in (self.pad_id, self.eos_id, _LAST_RESORT_PAD_ID) if i is not None)

    def added_rows(self) -> list[int]:
        """Embedding rows Liquid adds or repurposes: ``<boi>``, ``<eoi>``, ``<unconditional>``
        and every image code (kept trainable under LoRA)."""
        return [self.boi_id, self.eoi_id, self.uncond_id, *range(self.image_offset, self.image_end)]

    def grid(self, width: int, height: int) -> tuple[int, int]:
        """Code grid ``(h, w)`` for an image of ``width`` x ``height`` pixels."""
        if width <= 0 or height <= 0 or width % self.downsample or height % self.downsample:
            raise ConfigError(
                f"width and height must be positive multiples of {self.downsample}, got {width}x{height}"
            )
        return height // self.downsample, width // self.downsample

    def codes_to_tokens(self, codes: torch.Tensor) -> torch.Tensor:
        """Map VQGAN codes (any shape, int) to unified-vocabulary token ids."""
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise CodeRangeError(
                f"image codes must lie in [0, {self.codebook_size}), got [{int(codes.min())}, {int(codes.max())}]"
            )
        return codes.long() + self.image_offset

    def tokens_to_codes(self, tokens: torch.Tensor) -> torch.Tensor:
        """Map image token ids back to VQGAN codes; raises if any id is not an image id."""
        if tokens.numel() and not bool(self.is_image(tokens).all()):
            raise CodeRangeError(
                f"expected image token ids in [{self.image_offset}, {self.image_end}), "
                f"got [{int(tokens.min())}, {int(tokens.max())}]"
            )
        return tokens.long() - self.image_offset

    def is_image(self, tokens: torch.Tensor) -> torch.Tensor:
        """Boolean mask of ids that are image codes."""
        return (tokens >= self.image_offset) & (tokens < self.image_end)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> VocabLayout:
        if not isinstance(data, dict):  # e.g. a liquid_layout.json holding null or a number
            kind = "null" if data is None else type(data).__name__
            raise ConfigError(f"a vocabulary layout is a JSON object, got {kind}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown vocabulary-layout field(s): {sorted(unknown)}")
        for name, value in data.items():  # ids and sizes: integers (the optional ids: or null)
            if value is None and name in ("bos_id", "eos_id", "pad_id"):
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"vocabulary layout: {name} must be an integer, got {value!r}")
        try:
            return cls(**data)
        except TypeError as e:
            raise ConfigError(f"incomplete vocabulary layout: {e}") from e

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``liquid_layout.json`` into ``directory`` (:func:`liquidgen.checkpoint.write_layout`)."""
        from liquidgen.checkpoint import write_layout

        return write_layout(directory, self)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> VocabLayout:
        """Read ``liquid_layout.json`` from a checkpoint folder (:func:`liquidgen.checkpoint.read_layout`)."""
        from liquidgen.checkpoint import read_layout

        return read_layout(directory)


def special_token_ids(tokenizer: Any) -> set[int]:
    """Ids of a Hugging Face tokenizer's special tokens: the named ones (bos, eos, pad, ...)
    and every added token flagged special (chat-template markers such as ``<end_of_turn>``)."""
    return set(tokenizer.all_special_ids) | {
        i for i, tok in tokenizer.added_tokens_decoder.items() if tok.special
    }
