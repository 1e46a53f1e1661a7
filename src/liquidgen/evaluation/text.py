"""Language modelling on held-out real text: perplexity on the corpus's validation split.

The text is :func:`liquidgen.corpora.text.load_text_corpus`'s validation split (prose of the
Python reference documentation, split from training by a hash of each document), in the
text pre-training format ``<bos>{document}<eos>`` cut to the training length. Perplexity is
``exp(total negative log-likelihood / predicted tokens)`` over all documents together
(:meth:`liquidgen.pipeline.Pipeline.perplexity`), computed a batch at a time for the progress
bar. It depends on the text tokenizer, so compare it only between models that share one.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from liquidgen.errors import ConfigError
from liquidgen.formats import MAX_TEXT_LEN, text_example

if TYPE_CHECKING:
    from liquidgen.pipeline import Pipeline

DEFAULT_TEXT_BATCH = 8  # documents per forward pass


def validation_documents(limit: int | None = None) -> tuple[list[str], str]:
    """The first ``limit`` validation documents (all when ``None``) and the corpus's source."""
    from liquidgen.corpora.text import load_text_corpus

    if limit is not None and limit < 1:
        raise ConfigError(f"the document limit must be >= 1, got {limit}")
    corpus = load_text_corpus()
    documents = list(corpus.validation)
    return (documents if limit is None else documents[:limit]), corpus.source


def predicted_tokens(pipe: Pipeline, text: str) -> int:
    """Tokens :meth:`Pipeline.perplexity` predicts for ``text``: every one after ``<bos>``."""
    max_len = min(MAX_TEXT_LEN, pipe.context_length or MAX_TEXT_LEN)
    return len(text_example(pipe.tokenizer, pipe.layout, text, max_len=max_len).input_ids) - 1


def evaluate_text(
    pipe: Pipeline,
    *,
    limit: int | None = None,
    batch_size: int = DEFAULT_TEXT_BATCH,
    progress: bool = True,
) -> dict[str, Any]:
    """Perplexity of ``pipe`` on the held-out documents, with the document and token counts."""
    if batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    documents, source = validation_documents(limit)
    total_nll, total_tokens = 0.0, 0
    with tqdm(total=len(documents), unit="doc", desc="text", disable=not progress) as bar:
        for start in range(0, len(documents), batch_size):
            batch = documents[start : start + batch_size]
            tokens = sum(predicted_tokens(pipe, d) for d in batch)
            # The batch's perplexity is exp(nll / tokens); undo it to pool over batches.
            total_nll += tokens * math.log(pipe.perplexity(batch, batch_size=batch_size))
            total_tokens += tokens
            bar.update(len(batch))
    return {
        "perplexity": math.exp(total_nll / total_tokens),
        "documents": len(documents),
        "tokens": total_tokens,
        "source": source,
    }
