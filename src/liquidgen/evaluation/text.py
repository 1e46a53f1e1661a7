"""Language modelling on held-out real text: perplexity on the corpus's validation split.

The text is :func:`liquidgen.corpora.text.load_text_corpus`'s validation split
(``stdlib-docs`` by default: prose of the Python reference documentation and of the standard
library's docstrings, split from training by a hash of each document; ``pydoc`` is the
reference documentation alone), in the
text pre-training format ``<bos>{document}<eos>`` cut to the training length. Perplexity is
``exp(total negative log-likelihood / predicted tokens)`` over all documents together, the
loss sums coming from :meth:`liquidgen.inference.pipeline.Pipeline.sequence_loss` a batch at a
time (for the progress bar). It depends on the text tokenizer, so compare it only between models that share one;
bits per byte (the same negative log-likelihood over the UTF-8 bytes of the text the
predicted tokens cover) compares models with different tokenizers, e.g. liquidgen-tiny's
2048-token BPE and SmolLM2's 49,152.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from liquidgen.corpora.text import DEFAULT_CORPUS, load_text_corpus
from liquidgen.errors import ConfigError

if TYPE_CHECKING:
    from liquidgen.inference.pipeline import Pipeline

DEFAULT_TEXT_BATCH = 8  # documents per forward pass


def validation_documents(
    limit: int | None = None, corpus_name: str = DEFAULT_CORPUS
) -> tuple[list[str], str]:
    """The first ``limit`` validation documents (all when ``None``) of the corpus
    ``corpus_name`` and its source."""
    if limit is not None and limit < 1:
        raise ConfigError(f"the document limit must be >= 1, got {limit}")
    corpus = load_text_corpus(corpus_name)
    documents = list(corpus.validation)
    return (documents if limit is None else documents[:limit]), corpus.source


def covered_bytes(pipe: Pipeline, text: str) -> int:
    """UTF-8 bytes of the part of ``text`` the predicted tokens spell (after truncation)."""
    return _spelled_bytes(pipe, pipe.text_ids(text))


def _spelled_bytes(pipe: Pipeline, ids: list[int]) -> int:
    """UTF-8 bytes the predicted ids (all after ``<bos>``) of one example spell."""
    return len(pipe.tokenizer.decode(ids[1:], skip_special_tokens=True).encode("utf-8"))


def evaluate_text(
    pipe: Pipeline,
    *,
    limit: int | None = None,
    batch_size: int = DEFAULT_TEXT_BATCH,
    corpus: str = DEFAULT_CORPUS,
    progress: bool = True,
) -> dict[str, Any]:
    """Perplexity and bits per byte of ``pipe`` on the held-out documents of ``corpus``,
    with the document, token and byte counts."""
    if batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    documents, source = validation_documents(limit, corpus)
    examples = [pipe.text_ids(d) for d in documents]  # each document tokenized once
    total_nll, total_tokens = 0.0, 0
    total_bytes = sum(_spelled_bytes(pipe, ids) for ids in examples)
    with tqdm(total=len(documents), unit="doc", desc="text", disable=not progress) as bar:
        for start in range(0, len(documents), batch_size):
            batch = examples[start : start + batch_size]
            loss = pipe.sequence_loss(batch, batch_size=batch_size)
            total_nll += loss.nll
            total_tokens += loss.tokens
            bar.update(len(batch))
    return {
        "perplexity": math.exp(total_nll / total_tokens),
        "bits_per_byte": total_nll / math.log(2) / total_bytes,
        "documents": len(documents),
        "tokens": total_tokens,
        "bytes": total_bytes,
        "corpus": corpus,
        "source": source,
    }
