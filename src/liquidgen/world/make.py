"""World datasets: an in-memory, index-addressable generator and an on-disk writer.

Two kinds of example:

- ``scenes`` (default): a random scene of 1-4 objects with every caption, one prompt per
  GenEval category it satisfies, and questions — for captioning and VQA;
- ``prompted``: a prompt first, then the scene — example ``i`` draws a prompt of category
  ``TAGS[i % 6]`` (every category equally often) and a scene that holds *exactly* what the
  prompt asks (:func:`~liquidgen.world.text.scene_for_spec`), so its text-to-image pairs are
  true and complete; its captions are the scene's full and short captions. With
  ``lattice`` the centres lie on that pixel lattice (half a tokenizer cell: an object then
  always gets the same codes).

Example ``i`` of a dataset depends only on ``(seed, i)`` — its random stream is
``numpy.random.default_rng([seed, i])`` and its size is ``sizes[i % len(sizes)]`` — so a
trainer can draw examples in any order, from any number of workers, without writing to
disk, and ``liquidgen world make`` writes exactly the same examples.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from liquidgen.errors import ConfigError
from liquidgen.utils.io import atomic_dir, prepare_output_dir
from liquidgen.utils.limits import check_image_pixels
from liquidgen.world.render import render
from liquidgen.world.scene import Scene, check_image_size, check_split, sample_scene
from liquidgen.world.text import (
    TAGS,
    PromptSpec,
    Question,
    captions,
    questions,
    sample_spec,
    scene_for_spec,
    scene_prompts,
)

KINDS = ("scenes", "prompted")
METADATA_FILE = "metadata.jsonl"
MANIFEST_FILE = "dataset.json"
FILE_DIGITS = 6


@dataclasses.dataclass(frozen=True)
class Example:
    """One world example: the scene, its image and all text about it."""

    index: int
    scene: Scene
    image: Image.Image
    captions: list[str]
    prompts: list[PromptSpec]
    questions: list[Question]

    def record(self, file: str) -> dict[str, Any]:
        """The ``metadata.jsonl`` line for this example, its image stored as ``file``."""
        return {
            "file": file,
            "index": self.index,
            "width": self.scene.width,
            "height": self.scene.height,
            "scene": self.scene.to_dict(),
            "captions": self.captions,
            "prompts": [p.to_dict() for p in self.prompts],
            "questions": [
                {"question": q.question, "answer": q.answer, "type": q.qtype}
                for q in self.questions
            ],
        }


def make_example(
    index: int,
    seed: int,
    size: tuple[int, int],
    split: str = "train",
    *,
    kind: str = "scenes",
    lattice: int | None = None,
) -> Example:
    """Example ``index`` of the stream ``seed`` at ``size = (width, height)`` (module docstring
    for ``kind`` and ``lattice``)."""
    rng = np.random.default_rng([seed, index])
    if kind == "prompted":
        spec = sample_spec(rng, TAGS[index % len(TAGS)], split)
        scene = scene_for_spec(spec, rng, *size, lattice=lattice)
        short, full = captions(scene, rng, split)[:2]
        return Example(
            index=index,
            scene=scene,
            image=render(scene),
            captions=[full, short],
            prompts=[spec],
            questions=questions(scene, rng, split),
        )
    if kind != "scenes":
        raise ConfigError(
            f"unknown world dataset kind {kind!r}; expected one of {', '.join(KINDS)}"
        )
    scene = sample_scene(rng, *size, split=split, lattice=lattice)
    return Example(
        index=index,
        scene=scene,
        image=render(scene),
        captions=captions(scene, rng, split),
        prompts=scene_prompts(scene, rng, split),
        questions=questions(scene, rng, split),
    )


class WorldDataset(Sequence[Example]):
    """``n`` deterministic examples, rendered on access (a map-style dataset).

    ``sizes`` are ``(width, height)`` buckets used round-robin, so every bucket gets the
    same share (e.g. square, wide and tall for multi-ratio training).
    """

    def __init__(
        self,
        n: int,
        sizes: Sequence[tuple[int, int]],
        seed: int,
        split: str = "train",
        *,
        kind: str = "scenes",
        lattice: int | None = None,
    ) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(f"dataset size must be an integer >= 0, got {n!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
        if not sizes:
            raise ConfigError("at least one image size is needed")
        for w, h in sizes:
            check_image_size(w, h)
            check_image_pixels(w, h, "world image size")
        if kind not in KINDS:
            raise ConfigError(
                f"unknown world dataset kind {kind!r}; expected one of {', '.join(KINDS)}"
            )
        if lattice is not None and lattice <= 0:
            raise ConfigError(f"lattice must be a positive number of pixels, got {lattice}")
        self.n, self.sizes, self.seed, self.split = n, list(sizes), seed, check_split(split)
        self.kind, self.lattice = kind, lattice

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Example:  # type: ignore[override]
        if not -self.n <= index < self.n:
            raise IndexError(f"index {index} out of range for {self.n} examples")
        index %= self.n
        return make_example(
            index,
            self.seed,
            self.sizes[index % len(self.sizes)],
            self.split,
            kind=self.kind,
            lattice=self.lattice,
        )


def stream(seed: int, sizes: Sequence[tuple[int, int]], split: str = "train") -> Iterator[Example]:
    """An endless iterator over the same examples a :class:`WorldDataset` would hold."""
    for w, h in sizes:
        check_image_size(w, h)
        check_image_pixels(w, h, "world image size")
    check_split(split)
    for index in itertools.count():
        yield make_example(index, seed, sizes[index % len(sizes)], split)


def write_dataset(
    out: str | os.PathLike[str],
    n: int,
    sizes: Sequence[tuple[int, int]],
    seed: int,
    split: str = "train",
    *,
    kind: str = "scenes",
    lattice: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write ``n`` examples as PNGs plus ``metadata.jsonl`` (and a ``dataset.json`` manifest).

    The folder is built next to ``out`` and renamed into place at the end, so an
    interrupted run leaves no half-written dataset (and the next run removes a killed run's
    temporary folder). An existing ``out`` is replaced only if it is empty or a previous
    world dataset, or with ``overwrite`` (see :func:`liquidgen.utils.io.prepare_output_dir`).
    """
    out = Path(out)
    dataset = WorldDataset(n, sizes, seed, split, kind=kind, lattice=lattice)  # checks first
    prepare_output_dir(out, (METADATA_FILE,), overwrite=overwrite, what="world dataset")
    with atomic_dir(out) as tmp:
        with (tmp / METADATA_FILE).open("w", encoding="utf-8") as meta:
            for example in tqdm(dataset, total=n, unit="img", desc="world", disable=not progress):
                file = f"{example.index:0{FILE_DIGITS}d}.png"
                example.image.save(tmp / file)
                meta.write(json.dumps(example.record(file), separators=(",", ":")) + "\n")
        manifest = {
            "n": n,
            "sizes": [f"{w}x{h}" for w, h in sizes],
            "seed": seed,
            "split": split,
            "kind": kind,
            "lattice": lattice,
            "metadata": METADATA_FILE,
        }
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return out


def read_metadata(folder: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a dataset written by :func:`write_dataset`."""
    path = Path(folder) / METADATA_FILE
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; not a world dataset")
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
