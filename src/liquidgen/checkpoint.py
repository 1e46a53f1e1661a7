"""The liquidgen checkpoint folder: the one module that names its files and reads/writes them.

A liquidgen checkpoint is a folder that alone is enough to run the model::

    config.json, model*.safetensors, generation_config.json  the HF model (transformers)
    tokenizer.json, tokenizer_config.json, ...                the HF tokenizer (transformers)
    liquid_layout.json       VocabLayout          read_layout / write_layout
    liquid_generation.json   GenerationDefaults   GenerationDefaults.load / .save (optional)
    vq/                      the VQGAN            find_vq_dir / copy_vq / read_vq_spec (optional)
    train_config.yaml        the resolved TrainConfig (training checkpoints)
    README.md                the model card (exported models)

A folder laid out like the *released* Liquid-7B has no ``liquid_layout.json`` and keeps the
authors' ``vqgan.yaml`` / ``vqgan.ckpt`` beside the model (see :mod:`liquidgen.model.unified`).
Loading and saving the model itself is :func:`liquidgen.model.load_liquid` /
:func:`~liquidgen.model.save_liquid`; everything else about the folder is here, so the
trainer, ``expand``, the recipes and the pipeline agree on names and formats.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from liquidgen.errors import CheckpointError, ConfigError
from liquidgen.formats import DEFAULT_T2I_SUFFIX
from liquidgen.inference.sampling import (
    DEFAULT_CFG_SCALE,
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_K,
    DEFAULT_TOP_P,
    validate_sampling_args,
)
from liquidgen.utils.io import atomic_path
from liquidgen.vocab import VocabLayout

HF_CONFIG_FILE = "config.json"
LAYOUT_FILE = "liquid_layout.json"
GENERATION_FILE = "liquid_generation.json"
VQ_SUBDIR = "vq"  # where a liquidgen checkpoint keeps its image tokenizer
VQ_LIQUIDGEN_FILES = ("config.json", "model.safetensors")  # liquidgen's VQGAN format
VQ_AUTHORS_FILES = ("vqgan.yaml", "vqgan.ckpt")  # the authors' (taming / Lightning) format
TRAIN_CONFIG_FILE = "train_config.yaml"
MODEL_CARD_FILE = "README.md"

# Without a liquid_generation.json the image side is the released model's grid (512x512
# pixels = 32x32 codes at factor 16) at the checkpoint's own factor.
DEFAULT_GRID_SIDE = 32


# --------------------------------------------------------------------------- liquid_layout.json
def write_layout(directory: str | os.PathLike[str], layout: VocabLayout) -> Path:
    """Write ``liquid_layout.json`` into ``directory`` atomically."""
    path = Path(directory) / LAYOUT_FILE
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(layout.to_dict(), indent=2) + "\n")
    return path


def has_layout(directory: str | os.PathLike[str]) -> bool:
    """Whether ``directory`` is a liquidgen checkpoint (holds ``liquid_layout.json``)."""
    return (Path(directory) / LAYOUT_FILE).is_file()


def read_layout(directory: str | os.PathLike[str]) -> VocabLayout:
    """Read ``liquid_layout.json`` from a checkpoint folder."""
    path = Path(directory) / LAYOUT_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory}: no {LAYOUT_FILE} (not a liquidgen checkpoint)")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: invalid JSON ({e})") from e
    try:
        return VocabLayout.from_dict(data)
    except ConfigError as e:
        raise CheckpointError(f"{path}: {e}") from e


# --------------------------------------------------------------------------- liquid_generation.json
@dataclasses.dataclass(frozen=True)
class GenerationDefaults:
    """The defaults a checkpoint was trained for, stored as ``liquid_generation.json``.

    Every field is optional in the file; missing ones take the values of
    :meth:`for_layout` (the released Liquid-7B's settings at the checkpoint's factor).
    """

    width: int  # default image width in pixels (multiple of the tokenizer's factor)
    height: int  # default image height in pixels
    understanding_size: int  # side of the square that understanding inputs are padded + resized to
    size_prefix: bool = False  # multi-ratio: T2I prompts start with "Image Size: Width is W ..."
    buckets: tuple[tuple[int, int], ...] = ()  # (width, height) sizes trained for (multi-ratio)
    # understanding inputs already at a bucket size are encoded as they are (no pad + resize):
    # for models whose captioning/VQA data was tokenized at the native bucket sizes
    understanding_native: bool = False
    t2i_suffix: str = DEFAULT_T2I_SUFFIX  # instruction appended to every T2I prompt
    cfg_scale: float = DEFAULT_CFG_SCALE  # classifier-free guidance scale (<= 1: off)
    temperature: float = DEFAULT_TEMPERATURE
    top_k: int = DEFAULT_TOP_K  # capped to the codebook by the sampler; 0 disables
    top_p: float = DEFAULT_TOP_P

    def __post_init__(self) -> None:
        buckets = tuple(tuple(b) for b in self.buckets)
        if any(len(b) != 2 for b in buckets):
            raise ConfigError(f"buckets must be [width, height] pairs, got {self.buckets!r}")
        object.__setattr__(self, "buckets", buckets)
        for flag in ("size_prefix", "understanding_native"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(f"{flag} must be true or false, got {getattr(self, flag)!r}")
        if not isinstance(self.t2i_suffix, str):
            raise ConfigError(f"t2i_suffix must be a string, got {self.t2i_suffix!r}")
        for name in ("width", "height", "understanding_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        validate_sampling_args(
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            cfg_scale=self.cfg_scale,
        )

    @classmethod
    def for_layout(cls, layout: VocabLayout) -> GenerationDefaults:
        """Defaults of a checkpoint without the file: square images of
        :data:`DEFAULT_GRID_SIDE` codes (512x512 for Liquid-7B), the authors' sampler settings."""
        side = DEFAULT_GRID_SIDE * layout.downsample
        return cls(width=side, height=side, understanding_size=side)

    @classmethod
    def from_fields(cls, layout: VocabLayout, **fields: Any) -> GenerationDefaults:
        """:meth:`for_layout` with ``fields`` replaced, checked against the layout
        (:class:`ConfigError` for an unknown field or a size off the factor)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ConfigError(f"unknown generation default(s) {unknown} (known: {sorted(known)})")
        try:
            defaults = cls(**{**cls.for_layout(layout).to_dict(), **fields})
        except TypeError as e:
            raise ConfigError(str(e)) from e
        defaults.check(layout)
        return defaults

    def check(self, layout: VocabLayout) -> None:
        """Raise :class:`ConfigError` unless every size is a multiple of the layout's factor."""
        f = layout.downsample
        sizes = [(self.width, self.height), (self.understanding_size,) * 2, *self.buckets]
        for w, h in sizes:
            if w <= 0 or h <= 0 or w % f or h % f:
                raise ConfigError(f"size {w}x{h} is not a positive multiple of the factor {f}")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["buckets"] = [list(b) for b in self.buckets]
        return data

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``liquid_generation.json`` into ``directory`` atomically."""
        path = Path(directory) / GENERATION_FILE
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike[str], layout: VocabLayout) -> GenerationDefaults:
        """Read ``liquid_generation.json`` from a checkpoint (defaults when it is absent)."""
        path = Path(directory) / GENERATION_FILE
        if not path.is_file():
            return cls.for_layout(layout)
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{path}: invalid JSON ({e})") from e
        if not isinstance(data, dict):
            raise CheckpointError(f"{path}: expected a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CheckpointError(f"{path}: unknown field(s) {unknown}")
        try:
            return cls.from_fields(layout, **data)
        except ConfigError as e:
            raise CheckpointError(f"{path}: {e}") from e


def has_generation_defaults(directory: str | os.PathLike[str]) -> bool:
    """Whether ``directory`` holds a ``liquid_generation.json``."""
    return (Path(directory) / GENERATION_FILE).is_file()


# --------------------------------------------------------------------------- vq/
@dataclasses.dataclass(frozen=True)
class VQSpec:
    """The two numbers of a VQGAN the language model needs (read from its config only)."""

    codebook_size: int  # n_embed
    downsample: int  # pixels per code along each axis: 2 ** (len(ch_mult) - 1)
    authors_format: bool  # vqgan.yaml (+ vqgan.ckpt) rather than config.json (+ model.safetensors)


def _spec_from_params(params: Any, source: Path, authors_format: bool) -> VQSpec:
    try:
        codebook_size = int(params["n_embed"])
        ch_mult = list(params["ddconfig"]["ch_mult"])
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise CheckpointError(
            f"{source}: VQGAN config needs n_embed and ddconfig.ch_mult ({e!r})"
        ) from e
    if codebook_size <= 0 or not ch_mult:
        raise CheckpointError(f"{source}: n_embed must be > 0 and ch_mult non-empty")
    return VQSpec(codebook_size, 2 ** (len(ch_mult) - 1), authors_format)


def read_vq_spec(vq_dir: str | os.PathLike[str]) -> VQSpec:
    """Read codebook size and downsample factor from a VQGAN folder of either format.

    The authors' ``vqgan.yaml`` (``model.params.{n_embed, ddconfig}``) wins over a
    ``config.json``, because a released-Liquid folder keeps both the Gemma
    ``config.json`` and ``vqgan.yaml`` side by side.
    """
    vq_dir = Path(vq_dir)
    authors, ours = vq_dir / VQ_AUTHORS_FILES[0], vq_dir / VQ_LIQUIDGEN_FILES[0]
    if authors.is_file():
        try:
            doc = yaml.safe_load(authors.read_text())
            params = doc["model"]["params"]
        except (yaml.YAMLError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{authors}: not a VQGAN yaml with model.params ({e!r})") from e
        return _spec_from_params(params, authors, authors_format=True)
    if ours.is_file():
        try:
            params = json.loads(ours.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{ours}: invalid JSON ({e})") from e
        return _spec_from_params(params, ours, authors_format=False)
    raise CheckpointError(
        f"{vq_dir}: no VQGAN here (expected {authors.name} or {ours.name} with n_embed)"
    )


def find_vq_dir(checkpoint: str | os.PathLike[str]) -> Path | None:
    """The image tokenizer of a checkpoint: ``vq/`` inside it, or the folder itself when the
    authors' ``vqgan.yaml`` sits beside the model (released layout); ``None`` if neither."""
    checkpoint = Path(checkpoint)
    if (checkpoint / VQ_SUBDIR).is_dir():
        return checkpoint / VQ_SUBDIR
    if (checkpoint / VQ_AUTHORS_FILES[0]).is_file():
        return checkpoint
    return None


def copy_vq(vq_dir: Path, dest: Path) -> None:
    """Copy only the VQGAN's own files (its folder may also hold an LLM) into ``dest``."""
    names = VQ_AUTHORS_FILES if read_vq_spec(vq_dir).authors_format else VQ_LIQUIDGEN_FILES
    dest.mkdir()
    for name in names:
        if (vq_dir / name).is_file():
            shutil.copy2(vq_dir / name, dest / name)


# --------------------------------------------------------------------------- carried files
def carry_over(sources: Iterable[str | os.PathLike[str]], dest: str | os.PathLike[str]) -> None:
    """Copy the VQGAN (into ``dest/vq``) and ``liquid_generation.json`` into ``dest``, each from
    the first of ``sources`` that has it: a new checkpoint of a model draws images alone, with
    the image sizes, buckets, size prefix and sampler defaults it was trained for."""
    sources = [Path(s) for s in sources if Path(s).is_dir()]
    dest = Path(dest)
    vq_dir = next((d for d in map(find_vq_dir, sources) if d is not None), None)
    if vq_dir is not None:
        copy_vq(vq_dir, dest / VQ_SUBDIR)
    generation = next((s / GENERATION_FILE for s in sources if has_generation_defaults(s)), None)
    if generation is not None:
        shutil.copy2(generation, dest / GENERATION_FILE)


# --------------------------------------------------------------------------- train_config.yaml, README.md
def write_train_config(directory: str | os.PathLike[str], text: str) -> Path:
    """Write the resolved training configuration (YAML text) as ``train_config.yaml``."""
    path = Path(directory) / TRAIN_CONFIG_FILE
    path.write_text(text)
    return path


def write_model_card(directory: str | os.PathLike[str], text: str) -> Path:
    """Write the model card (Markdown) as ``README.md``."""
    path = Path(directory) / MODEL_CARD_FILE
    path.write_text(text)
    return path
