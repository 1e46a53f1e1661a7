"""Datasets ``liquidgen data tokenize`` can read, each as a :class:`~liquidgen.training.data.RawSource`.

- **JSONL** (``data.jsonl``): one record per line, every key optional but one::

      {"id": "0", "image": "images/0.png", "captions": ["..."], "qa": [["q", "a"]], "text": "...",
       "prompts": ["..."]}

  ``image`` is relative to the file's folder. ``prompts`` are partial descriptions true of
  the image (GenEval-style, e.g. "two red circles"; the world's prompt specs are read by
  their ``prompt`` field): extra text-to-image conditions, never captioning targets. This is the format to bring your own data in.
- **A folder with ``metadata.jsonl``** (what ``liquidgen world make`` writes): the same
  reader, with the world's field names mapped (``file`` -> image, ``questions`` -> qa).
- **Plain text** (``corpus.txt``): documents separated by blank lines.
- **easy-VQA** (``easy-vqa:train`` / ``easy-vqa:test``): the PyPI package's 64x64 images,
  one record per image with all its questions and the caption derived from them
  (:mod:`liquidgen.corpora.easy_vqa`).
- **Python documentation text** (``pydoc:train`` / ``pydoc:validation``, and the larger
  ``stdlib-docs:train`` / ``stdlib-docs:validation``): the cleaned English corpora of
  :mod:`liquidgen.corpora.text`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from liquidgen.corpora.text import CORPORA
from liquidgen.errors import ConfigError
from liquidgen.tokenizer import load_image
from liquidgen.training.data import RawItem

METADATA_FILE = "metadata.jsonl"


class _Loader:
    """A picklable, lazy image opener."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self):
        return load_image(self.path)


def _pairs(value: Any, where: str) -> list[tuple[str, str]]:
    pairs = []
    for item in value or []:
        if isinstance(item, dict):
            question, answer = item.get("question"), item.get("answer")
        elif isinstance(item, list | tuple) and len(item) == 2:
            question, answer = item
        else:
            raise ConfigError(
                f"{where}: a question must be [question, answer] or {{question, answer}}, got {item!r}"
            )
        if not isinstance(question, str) or not isinstance(answer, str | int):
            raise ConfigError(f"{where}: question and answer must be text, got {item!r}")
        pairs.append((question, str(answer)))
    return pairs


def _prompt_texts(prompts: Any, where: str) -> list[str]:
    """T2I prompts of a record: strings, or the world's specs (``{"prompt": ..., ...}``)."""
    if not isinstance(prompts, list):
        raise ConfigError(f"{where}: 'prompts' must be a list")
    texts = []
    for p in prompts:
        text = p.get("prompt") if isinstance(p, dict) else p
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"{where}: each prompt must be a string or have a 'prompt' string")
        texts.append(text)
    return texts


class JsonlSource:
    """Records from a JSONL file (generic keys, or the world's ``file``/``questions``)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(f"{self.path}: no such file")
        self.description = f"jsonl:{self.path.resolve()}"
        self.items: list[RawItem] = []
        for number, line in enumerate(self.path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{self.path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{where}: invalid JSON ({e})") from None
            if not isinstance(row, dict):
                raise ConfigError(f"{where}: expected a JSON object")
            image = row.get("image", row.get("file"))
            captions = row.get("captions", [])
            if isinstance(captions, str):
                captions = [captions]
            item = RawItem(
                id=str(row.get("id", len(self.items))),
                image=_Loader(self.path.parent / image) if image else None,
                captions=[str(c) for c in captions],
                qa=_pairs(row.get("qa", row.get("questions")), where),
                text=row.get("text"),
                prompts=_prompt_texts(row.get("prompts", []), where),
            )
            if item.image is None and not item.text and not item.captions:
                raise ConfigError(f"{where}: a record needs an image, a caption or a text")
            self.items.append(item)
        self.has_images = any(item.image is not None for item in self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> RawItem:
        return self.items[index]


class TextFileSource:
    """Documents of a plain-text file, separated by blank lines."""

    has_images = False

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(f"{self.path}: no such file")
        self.description = f"text:{self.path.resolve()}"
        blocks = self.path.read_text().split("\n\n")
        self.docs = [" ".join(b.split()) for b in blocks if b.strip()]

    def __len__(self) -> int:
        return len(self.docs)

    def __getitem__(self, index: int) -> RawItem:
        return RawItem(id=str(index), text=self.docs[index])


class EasyVQASource:
    """easy-VQA images of one split, each with its questions and (when known) its caption."""

    has_images = True

    def __init__(self, split: str) -> None:
        from liquidgen.corpora import easy_vqa

        questions = easy_vqa.load_questions(split)
        attributes = easy_vqa.image_attributes(split)
        paths = easy_vqa.image_paths(split)
        qa: dict[int, list[tuple[str, str]]] = {i: [] for i in paths}
        for text, answer, image_id in zip(
            questions.questions, questions.answers, questions.image_ids, strict=True
        ):
            qa[image_id].append((text, answer))
        self.description = f"easy-vqa:{split}"
        self.items = []
        for image_id in sorted(paths):
            caption = easy_vqa.caption_for(attributes[image_id])
            self.items.append(
                RawItem(
                    id=str(image_id),
                    image=_Loader(Path(paths[image_id])),
                    captions=[caption] if caption else [],
                    qa=qa[image_id],
                )
            )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> RawItem:
        return self.items[index]


class TextCorpusSource:
    """A cleaned Python-documentation corpus (``pydoc`` or ``stdlib-docs``), one split."""

    has_images = False

    def __init__(self, name: str, split: str) -> None:
        from liquidgen.corpora.text import load_text_corpus

        if split not in ("train", "validation"):
            raise ConfigError(f"{name} split must be train or validation, got {split!r}")
        corpus = load_text_corpus(name)
        self.docs = corpus.train if split == "train" else corpus.validation
        self.description = f"{name}:{split}:{corpus.source}"

    def __len__(self) -> int:
        return len(self.docs)

    def __getitem__(self, index: int) -> RawItem:
        return RawItem(id=str(index), text=self.docs[index])


RawInput = JsonlSource | TextFileSource | EasyVQASource | TextCorpusSource


def open_input(spec: str) -> RawInput:
    """Open the dataset named by ``spec`` (see the module docstring)."""
    kind, sep, split = spec.partition(":")
    if sep and kind == "easy-vqa":
        return EasyVQASource(split)
    if sep and kind in CORPORA:
        return TextCorpusSource(kind, split)
    path = Path(spec)
    if path.is_dir():
        if not (path / METADATA_FILE).is_file():
            raise ConfigError(f"{path}: no {METADATA_FILE} in this folder")
        return JsonlSource(path / METADATA_FILE)
    if path.suffix == ".jsonl":
        return JsonlSource(path)
    if path.suffix == ".txt":
        return TextFileSource(path)
    raise ConfigError(
        f"{spec}: expected a folder with {METADATA_FILE}, a .jsonl or .txt file, easy-vqa:SPLIT, pydoc:SPLIT or stdlib-docs:SPLIT"
    )
