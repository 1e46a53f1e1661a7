"""A real English text corpus for the text modality: the Python language reference topics.

Source: ``pydoc_data.topics`` of the running CPython (the text behind ``help("if")``:
prose of the Python Language Reference and Library Reference), shipped with every Python
build — python.org's installers, Debian's ``libpython3.X-stdlib`` package, and the
interpreter in this virtualenv — so it needs no download. It is the same text for a given
Python version (3.11.7 here gives about 79 topics, 465k characters of raw text).

Licence: the Python documentation is distributed under the PSF License Agreement
(Python Software Foundation License Version 2), which allows copying, modification and
redistribution with the copyright notice ("Copyright © 2001-present Python Software
Foundation; All Rights Reserved"); code examples are also available under the Zero-Clause
BSD licence.

Cleaning (:func:`clean_documents`): each topic is cut into sections at its reST headings;
only prose paragraphs are kept — blocks that end like a sentence and are mostly plain
words, so grammar productions, code, signatures, ``See also`` titles and ``+---+`` tables
are dropped — wrapped lines are joined, footnote marks such as
``[5]`` and ``**bold**`` markup are removed, whitespace is collapsed. A document is a
section with at least :data:`MIN_WORDS` words of prose. Paragraphs are deduplicated across
the whole corpus (case- and space-insensitive, first occurrence kept, topics in sorted
order). The train/validation split hashes each document's text (SHA-256), so it is
deterministic and does not move when other documents change.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import sys
from collections.abc import Mapping

from liquidgen.errors import ConfigError

SOURCE = (
    f"CPython {sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro} "
    "standard library, module pydoc_data.topics (Python Language/Library Reference topics)"
)
LICENSE = "PSF License Agreement (Python Software Foundation License Version 2)"
MIN_WORDS = 40  # sections with less prose than this are dropped
VALIDATION_FRACTION = 0.1
_HASH_BUCKETS = 10_000

_HEADING_UNDERLINE = re.compile(r"^([*=\-~^\"'`#+])\1{2,}\s*$")
_FOOTNOTE = re.compile(r"\s*\[\d+\]")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_WORD = re.compile(r"[(\"“]?[A-Za-z][a-z'’]*[)\"”]?[,.;:?!]?")
_SENTENCE_ENDS = (".", "?", "!", ":", '."', ".)")
MIN_PROSE_TOKENS = 4  # shorter blocks ("Note:", "See also:") are labels, not prose
PROSE_WORD_SHARE = 0.6  # blocks with fewer plain words than this are code or tables


@dataclasses.dataclass(frozen=True)
class TextCorpus:
    """Cleaned documents split into train and validation, with their provenance."""

    train: tuple[str, ...]
    validation: tuple[str, ...]
    source: str = SOURCE
    license: str = LICENSE


def _is_prose(block: list[str]) -> bool:
    """Sentences, not code, grammar, tables or signatures: ends like a sentence, mostly words."""
    if any("::=" in line or line.lstrip().startswith((">>>", "...", "+-", "|")) for line in block):
        return False
    tokens = " ".join(block).split()
    words = sum(bool(_WORD.fullmatch(t)) for t in tokens)
    return (
        len(tokens) >= MIN_PROSE_TOKENS
        and tokens[-1].endswith(_SENTENCE_ENDS)
        and words >= PROSE_WORD_SHARE * len(tokens)
    )


def _clean_paragraph(block: list[str]) -> str:
    text = " ".join(line.strip() for line in block)
    text = _BOLD.sub(r"\1", _FOOTNOTE.sub("", text))
    return re.sub(r"\s+", " ", text).strip()


def _sections(topic: str) -> list[tuple[str, list[str]]]:
    """``(title, prose paragraphs)`` of a topic, cut at reST headings."""
    lines = topic.splitlines()
    sections: list[tuple[str, list[str]]] = []
    title, paragraphs, block = "", [], []

    def flush_block() -> None:
        if block and _is_prose(block):
            paragraphs.append(_clean_paragraph(block))
        block.clear()

    for i, line in enumerate(lines):
        if _HEADING_UNDERLINE.match(line) and i > 0 and lines[i - 1].strip():
            block.pop() if block else None  # the title line was read as text
            flush_block()
            if paragraphs:
                sections.append((title, paragraphs))
            title, paragraphs = lines[i - 1].strip(), []
        elif line.strip():
            block.append(line)
        else:
            flush_block()
    flush_block()
    if paragraphs:
        sections.append((title, paragraphs))
    return sections


def clean_documents(topics: Mapping[str, str], min_words: int = MIN_WORDS) -> list[str]:
    """Deduplicated prose documents (title line, blank line, paragraphs) from raw topics."""
    seen: set[str] = set()
    documents: list[str] = []
    for name in sorted(topics):
        for title, paragraphs in _sections(topics[name]):
            kept = []
            for paragraph in paragraphs:
                key = re.sub(r"\s+", " ", paragraph.lower())
                if key not in seen:
                    seen.add(key)
                    kept.append(paragraph)
            if sum(len(p.split()) for p in kept) >= min_words:
                documents.append("\n\n".join([title, *kept] if title else kept))
    return documents


def is_validation(document: str, fraction: float = VALIDATION_FRACTION) -> bool:
    """Whether ``document`` falls in the validation split (stable hash of its text)."""
    bucket = int.from_bytes(hashlib.sha256(document.encode("utf-8")).digest()[:8], "big")
    return bucket % _HASH_BUCKETS < fraction * _HASH_BUCKETS


def load_text_corpus(validation_fraction: float = VALIDATION_FRACTION) -> TextCorpus:
    """The cleaned ``pydoc_data.topics`` corpus, split train/validation."""
    if not 0.0 < validation_fraction < 1.0:
        raise ConfigError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    from pydoc_data.topics import topics

    documents = clean_documents(topics)
    train = tuple(d for d in documents if not is_validation(d, validation_fraction))
    validation = tuple(d for d in documents if is_validation(d, validation_fraction))
    return TextCorpus(train=train, validation=validation)
