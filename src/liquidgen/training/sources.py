"""Mixture sources: tokenized records read in one of Liquid's sequence formats.

A :class:`FormattedSource` turns record ``i`` of a :class:`~liquidgen.training.data.TokenizedDataset`
into a :class:`liquidgen.formats.Example` of its modality:

==========  ==========================================================================
``text``    one ``max_len``-token window of the record's document (``record.text``, or its
            captions joined if it has none); a long document gives several windows that
            together cover it once, so every token of the corpus is trained on
``t2i``     one caption or prompt drawn at random + the image (CFG dropout to ``<unconditional>``)
``caption`` the image + one caption drawn at random
``vqa``     the image + one question/answer pair drawn at random
``chat``    the image + all question/answer pairs as a multi-turn conversation, in a
            random order
==========  ==========================================================================

All randomness comes from the ``random.Random`` the mixture hands over for that draw, so
the same draw always gives the same tokens. Records that lack what a modality needs (no
image for ``t2i``, no questions for ``vqa``) are rejected when the source is opened.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from liquidgen import formats
from liquidgen.errors import ConfigError
from liquidgen.training.data import Record, TokenizedDataset
from liquidgen.vocab import VocabLayout

_NEEDS_IMAGE = (formats.T2I, formats.CAPTION, formats.VQA, formats.CHAT)
_NEEDS_QA = (formats.VQA, formats.CHAT)


class FormattedSource:
    """A tokenized dataset read in one modality; ``example(i, rng)`` builds an Example."""

    def __init__(
        self,
        name: str,
        modality: str,
        dataset: TokenizedDataset,
        tokenizer: PreTrainedTokenizerBase,
        layout: VocabLayout,
        *,
        max_len: int,
        cfg_dropout: float = formats.CFG_DROPOUT,
        size_prefix: bool = False,
    ) -> None:
        if modality not in formats.MODALITIES:
            raise ConfigError(f"source {name!r}: unknown modality {modality!r}")
        self.name = name
        self.modality = modality
        self.dataset = dataset
        self.tokenizer = tokenizer
        self.layout = layout
        self.max_len = max_len
        self.cfg_dropout = cfg_dropout
        self.size_prefix = size_prefix
        self._check(dataset)
        # text: every document tokenized once when the source opens (no tokenizer on the hot
        # path); example i is window i over all documents, a (stream offset, length) pair
        self._windows: list[tuple[int, int]] | None = None
        if modality == formats.TEXT:
            self._stream, self._windows = self._text_windows()

    def _text_windows(self, batch: int = 1024) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """All documents' ``<bos>{document}<eos>`` ids in one flat array (int32) and the
        windows that cover each document once."""
        parts: list[np.ndarray] = []
        windows: list[tuple[int, int]] = []
        offset = 0
        for first in range(0, len(self.dataset), batch):
            index = range(first, min(first + batch, len(self.dataset)))
            documents = [self._document(self.dataset[i]) for i in index]
            for stream in formats.text_streams(self.tokenizer, self.layout, documents):
                parts.append(np.asarray(stream, dtype=np.int32))
                starts = formats.text_window_starts(len(stream), self.max_len)
                windows += [(offset + s, min(self.max_len, len(stream) - s)) for s in starts]
                offset += len(stream)
        return np.concatenate(parts), windows

    @staticmethod
    def _document(record: Record) -> str:
        return record.text or " ".join(record.captions)

    def _check(self, dataset: TokenizedDataset) -> None:
        """Every record has what this modality needs; codes fit the model's image vocabulary."""
        where = f"source {self.name!r} ({dataset.directory})"
        needs = []
        if self.modality in _NEEDS_IMAGE:
            needs.append("image")
        if self.modality in _NEEDS_QA:
            needs.append("qa")
        if self.modality in (formats.T2I, formats.CAPTION):
            needs.append("captions")
        for field in needs:
            missing = len(dataset) - dataset.count(field)
            if missing:
                raise ConfigError(
                    f"{where}: {missing} of {len(dataset)} records have no {field}, "
                    f"needed for {self.modality}"
                )
        if self.modality in _NEEDS_IMAGE and dataset.codebook_size != self.layout.codebook_size:
            raise ConfigError(
                f"{where}: codes come from a {dataset.codebook_size}-code VQGAN, "
                f"the model has {self.layout.codebook_size} image tokens"
            )
        if self.modality == formats.TEXT and not (
            dataset.count("text") or dataset.count("captions")
        ):
            raise ConfigError(f"{where}: no record has a text or a caption")

    def __len__(self) -> int:
        """Examples: records, or for text the windows over all documents."""
        return len(self.dataset) if self._windows is None else len(self._windows)

    def _codes(self, record: Record) -> torch.Tensor:
        assert record.codes is not None
        return torch.from_numpy(np.asarray(record.codes, dtype=np.int64))  # (h, w)

    def example(self, index: int, rng: random.Random) -> formats.Example:
        """Example ``index`` in this source's format: record ``index``, or for text its
        ``index``-th window."""
        m = self.modality
        if self._windows is not None:
            offset, length = self._windows[index]
            return formats.text_window(self._stream[offset : offset + length], 0, length)
        record = self.dataset[index]
        codes = self._codes(record)
        if m == formats.T2I:
            size = None
            if self.size_prefix:
                h, w = codes.shape
                size = (w * self.layout.downsample, h * self.layout.downsample)
            caption = rng.choice(record.captions + record.prompts)
            return formats.t2i_example(
                self.tokenizer,
                self.layout,
                caption,
                codes,
                rng=rng,
                cfg_dropout=self.cfg_dropout,
                size=size,
            )
        if m == formats.CAPTION:
            return formats.caption_example(
                self.tokenizer, self.layout, codes, rng.choice(record.captions)
            )
        if m == formats.VQA:
            question, answer = rng.choice(record.qa)
            return formats.vqa_example(self.tokenizer, self.layout, codes, question, answer)
        pairs = list(record.qa)
        rng.shuffle(pairs)
        messages = []
        for question, answer in pairs:
            messages += [
                {"role": "user", "content": question},
                {"role": "assistant", "content": answer},
            ]
        return formats.chat_example(
            self.tokenizer, self.layout, messages, codes=codes, modality=formats.CHAT
        )
