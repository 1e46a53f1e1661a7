"""Real English text corpora for the text modality, from the Python standard library.

Two corpora (:data:`CORPORA`), both shipped with every CPython so they need no download:

- ``pydoc`` — the Python language reference topics (below); liquidgen-tiny's corpus.
- ``stdlib-docs`` — ``pydoc`` plus the docstrings of the standard library's public modules,
  classes and functions (:func:`docstring_documents`), about 5x more text: enough that a
  run of a few hundred thousand tokens does not read it many times over.

``pydoc`` source: ``pydoc_data.topics`` of the running CPython (the text behind ``help("if")``:
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
deterministic and does not move when other documents change (``pydoc``'s validation
documents are exactly the ``pydoc`` part of ``stdlib-docs``'s).

``stdlib-docs`` source: the ``.py`` files of the running interpreter's standard library
(``sysconfig``'s ``stdlib`` path; tests, ``idlelib``, ``lib2to3``, ``turtledemo``,
``ensurepip``, ``encodings`` and ``pydoc_data`` left out), parsed with :mod:`ast` (nothing is
imported or run). One document per module: its dotted name, then each public docstring
(module, classes, functions, methods; names starting with ``_`` skipped, dunders kept) under
its qualified name, keeping only prose paragraphs by the same rules as above, deduplicated
across the corpus; modules with fewer than :data:`MIN_WORDS` words of prose are dropped.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import re
import sys
import sysconfig
from collections.abc import Iterator, Mapping
from pathlib import Path

from liquidgen.errors import ConfigError

SOURCE = (
    f"CPython {sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro} "
    "standard library, module pydoc_data.topics (Python Language/Library Reference topics)"
)
STDLIB_DOCS_SOURCE = (
    f"CPython {sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro} "
    "standard library: pydoc_data.topics plus the docstrings of its public modules"
)
_SOURCES = {"pydoc": SOURCE, "stdlib-docs": STDLIB_DOCS_SOURCE}
CORPORA: tuple[str, ...] = tuple(_SOURCES)
# the held-out text of `liquidgen eval text` and the recipes' default: the larger corpus, which
# a small model does not memorise in a few thousand steps (pydoc alone: 18 validation documents)
DEFAULT_CORPUS = "stdlib-docs"
CORPUS_NAMES = {  # how model cards and docs name each corpus
    "pydoc": "Python's own pydoc",
    "stdlib-docs": "Python's pydoc topics + the standard library's docstrings",
}
# standard-library folders whose docstrings are not the library's documentation
_SKIPPED_PACKAGES = frozenset(
    {"test", "tests", "idlelib", "lib2to3", "turtledemo", "ensurepip", "encodings",
     "pydoc_data", "site-packages", "dist-packages"}
)  # fmt: skip
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


def check_corpus(name: str, key: str | None = None) -> None:
    """Raise :class:`ConfigError` unless ``name`` is one of :data:`CORPORA` (the message
    names the config ``key`` that gave it, when there is one)."""
    if name not in CORPORA:
        where = f"{key} {name!r}:" if key else f"unknown text corpus {name!r};"
        raise ConfigError(f"{where} expected one of {', '.join(CORPORA)}")


def _unseen(paragraphs: list[str], seen: set[str]) -> list[str]:
    """The paragraphs not met before (case- and space-insensitive); records them in ``seen``."""
    kept = []
    for paragraph in paragraphs:
        key = re.sub(r"\s+", " ", paragraph.lower())
        if key not in seen:
            seen.add(key)
            kept.append(paragraph)
    return kept


def clean_documents(topics: Mapping[str, str], min_words: int = MIN_WORDS) -> list[str]:
    """Deduplicated prose documents (title line, blank line, paragraphs) from raw topics."""
    seen: set[str] = set()
    documents: list[str] = []
    for name in sorted(topics):
        for title, paragraphs in _sections(topics[name]):
            kept = _unseen(paragraphs, seen)
            if sum(len(p.split()) for p in kept) >= min_words:
                documents.append("\n\n".join([title, *kept] if title else kept))
    return documents


def is_validation(document: str, fraction: float = VALIDATION_FRACTION) -> bool:
    """Whether ``document`` falls in the validation split (stable hash of its text)."""
    bucket = int.from_bytes(hashlib.sha256(document.encode("utf-8")).digest()[:8], "big")
    return bucket % _HASH_BUCKETS < fraction * _HASH_BUCKETS


def _public_docstrings(tree: ast.Module) -> Iterator[tuple[str, str]]:
    """``(qualified name, docstring)`` of a parsed module's public classes and functions,
    depth first in source order (methods under their class)."""

    def visit(node: ast.AST, prefix: str) -> Iterator[tuple[str, str]]:
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            name = child.name
            if name.startswith("_") and not (name.startswith("__") and name.endswith("__")):
                continue
            docstring = ast.get_docstring(child)
            if docstring:
                yield prefix + name, docstring
            if isinstance(child, ast.ClassDef):
                yield from visit(child, f"{prefix}{name}.")

    yield from visit(tree, "")


def docstring_documents(sources: Mapping[str, str], min_words: int = MIN_WORDS) -> list[str]:
    """One document per module from ``{dotted module name: Python source}`` (in sorted
    order): the module's name, then its docstring and each public docstring under its
    qualified name, prose paragraphs only, deduplicated across all modules."""
    seen: set[str] = set()
    documents: list[str] = []
    for module in sorted(sources):
        try:
            tree = ast.parse(sources[module])
        except SyntaxError:  # e.g. a file meant for another Python version
            continue
        entries = [(module, ast.get_docstring(tree) or ""), *_public_docstrings(tree)]
        sections, words = [], 0
        for name, docstring in entries:
            blocks = [
                [ln for ln in b.splitlines() if ln.strip()] for b in re.split(r"\n\s*\n", docstring)
            ]
            prose = [_clean_paragraph(b) for b in blocks if b and _is_prose(b)]
            kept = _unseen(prose, seen)
            if kept:
                words += sum(len(p.split()) for p in kept)
                # the module's own docstring sits under the document's title
                sections.append("\n\n".join(kept if name == module else [name, *kept]))
        if sections and words >= min_words:
            documents.append("\n\n".join([module, *sections]))
    return documents


def stdlib_sources(root: Path | None = None) -> dict[str, str]:
    """``{dotted module name: source}`` of the standard library's documented modules."""
    root = Path(sysconfig.get_paths()["stdlib"]) if root is None else root
    sources = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if any(p in _SKIPPED_PACKAGES or p.startswith("test") for p in parts[:-1]):
            continue
        if path.name.startswith("test"):
            continue
        module = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        sources[module] = path.read_text(encoding="utf-8", errors="replace")
    return sources


@functools.lru_cache(maxsize=4)
def _documents(name: str) -> tuple[str, ...]:
    from pydoc_data.topics import topics

    documents = clean_documents(topics)
    if name == "stdlib-docs":
        documents += docstring_documents(stdlib_sources())
    return tuple(documents)


def load_text_corpus(
    name: str = DEFAULT_CORPUS, validation_fraction: float = VALIDATION_FRACTION
) -> TextCorpus:
    """The cleaned corpus ``name`` (one of :data:`CORPORA`), split train/validation."""
    check_corpus(name)
    if not 0.0 < validation_fraction < 1.0:
        raise ConfigError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    documents = _documents(name)
    train = tuple(d for d in documents if not is_validation(d, validation_fraction))
    validation = tuple(d for d in documents if is_validation(d, validation_fraction))
    return TextCorpus(train=train, validation=validation, source=_SOURCES[name])
