"""Tokenized datasets on disk: images encoded to VQGAN codes once, stored in memory-mapped shards.

Training reads image codes, never pixels: ``liquidgen data tokenize`` runs the VQGAN over
a dataset once and writes a folder::

    settings.json                what determines the contents (checked when a run resumes)
    shard-00000.codes            flat little-endian codes (uint16, or int32 past 65536 codes)
    shard-00000.records.jsonl    one JSON line per record: id, offset, h, w, captions, qa, text
    shard-00000.offsets          int64 byte offset of every line (+ end): O(1) random access
    shard-00000.json             counts (records, codes, records with image/captions/qa/text)
    index.json                   format, settings and the shard list, written last

A record is an image's ``h x w`` code grid (raster order, ``codes[offset : offset + h*w]``)
with its texts — captions and question/answer pairs — or a text document alone (``h = w =
0``). Which sequence format a record is read in (text-to-image, captioning, VQA, text) is
chosen later, by the training mixture, so one tokenized folder serves several sources.

Writing is resumable and atomic: shard ``i`` always holds input records ``[i*S, (i+1)*S)``;
each file is renamed into place whole and the shard's ``.json`` comes last, so a shard
whose ``.json`` exists and whose files have the sizes it implies is complete and is
skipped by a re-run; anything else is redone.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from liquidgen.errors import CheckpointError, ConfigError, ShapeError
from liquidgen.tokenizer import (
    pil_to_tensor,
    preprocess_generation,
    preprocess_understanding,
    to_rgb,
)
from liquidgen.utils.io import atomic_path
from liquidgen.utils.limits import check_image_pixels

INDEX_FILE = "index.json"
FORMAT = "liquidgen-tokenized/1"
_SHARD_STEM = "shard-{:05d}"
_SUFFIXES = (".codes", ".records.jsonl", ".offsets", ".json")  # order of _ShardFiles' fields
_OFFSET_DTYPE = np.dtype("<i8")
_UINT16_LIMIT = 1 << 16
_OPEN_SHARDS = 64  # shards kept memory-mapped at once (each holds three file descriptors)


@dataclasses.dataclass
class RawItem:
    """One input record before tokenization; ``image`` is loaded lazily (None for text)."""

    id: str
    image: Callable[[], Image.Image] | None = None
    captions: list[str] = dataclasses.field(default_factory=list)
    qa: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    text: str | None = None
    prompts: list[str] = dataclasses.field(default_factory=list)  # extra T2I-only texts


class RawSource(Protocol):
    """An indexable input dataset (re-reading item ``i`` must give the same item)."""

    description: str  # stored in index.json and checked when a run resumes

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> RawItem: ...


@dataclasses.dataclass
class Record:
    """One tokenized record, as read back for training."""

    id: str
    codes: np.ndarray | None  # (h, w) VQGAN codes (a read-only memmap view), None for text
    captions: list[str]
    qa: list[tuple[str, str]]
    text: str | None
    # Partial descriptions that are true of the image (GenEval-style prompts such as "two
    # red circles"): extra text-to-image conditions, never used as captioning targets.
    prompts: list[str] = dataclasses.field(default_factory=list)


# --------------------------------------------------------------------------- writing
@dataclasses.dataclass(frozen=True)
class TokenizeSettings:
    """Everything that determines a tokenized folder's contents (checked on resume)."""

    source: str  # RawSource.description
    num_records: int
    shard_size: int
    codebook_size: int  # 0 for text-only folders
    downsample: int  # 0 for text-only folders
    image_size: tuple[int, int] | None  # (width, height) images were brought to, None = native
    preprocess: str  # "generation" (resize + centre crop) | "understanding" (pad to square)
    code_dtype: str


def _code_dtype(codebook_size: int) -> str:
    return "<u2" if codebook_size <= _UINT16_LIMIT else "<i4"


def _prepare_image(
    image: Image.Image, size: tuple[int, int] | None, preprocess: str, downsample: int, item_id: str
) -> Image.Image:
    if size is None:  # encoded as it is: within the pixel limit (resized ones are checked)
        check_image_pixels(image.width, image.height, f"record {item_id}: image")
        image = to_rgb(image)
    elif preprocess == "understanding":
        if size[0] != size[1]:
            raise ConfigError(
                "understanding pre-processing pads to a square: --size must be square"
            )
        image = preprocess_understanding(image, size[0])
    else:
        image = preprocess_generation(image, size)
    if image.width % downsample or image.height % downsample:
        raise ShapeError(
            f"record {item_id}: image {image.width}x{image.height} is not divisible by the VQGAN's "
            f"factor {downsample}; pass --size to resize"
        )
    return image


def _encode_batches(
    items: Sequence[RawItem],
    vqgan: torch.nn.Module | None,
    settings: TokenizeSettings,
    batch_size: int,
    on_image: Callable[[], None],
) -> list[np.ndarray | None]:
    """Code grids (h, w) for each item (None for text-only items), batching equal sizes."""
    grids: list[np.ndarray | None] = [None] * len(items)
    pending: list[tuple[int, Image.Image]] = []

    def flush() -> None:
        if not pending:
            return
        assert vqgan is not None
        pixels = pil_to_tensor([img for _, img in pending])  # (B, 3, H, W) in [-1, 1]
        with torch.inference_mode():
            codes = vqgan.encode(pixels).cpu().numpy()  # (B, h, w)
        for (i, _), grid in zip(pending, codes, strict=True):
            grids[i] = grid
            on_image()
        pending.clear()

    for i, item in enumerate(items):
        if item.image is None:
            continue
        if vqgan is None:
            raise ConfigError(f"record {item.id} has an image but no --vqgan was given")
        image = _prepare_image(
            item.image(), settings.image_size, settings.preprocess, settings.downsample, item.id
        )
        if pending and (image.size != pending[0][1].size or len(pending) == batch_size):
            flush()
        pending.append((i, image))
    flush()
    return grids


@dataclasses.dataclass(frozen=True)
class _ShardFiles:
    codes: Path  # flat codes, dtype from the settings
    records: Path  # one JSON object per line
    offsets: Path  # int64 byte offset of every line start, plus the end of the file
    meta: Path  # counts; written last, so its presence marks a finished shard


def _shard_files(out_dir: Path, shard: int) -> _ShardFiles:
    stem = out_dir / _SHARD_STEM.format(shard)
    return _ShardFiles(*(stem.with_name(stem.name + suffix) for suffix in _SUFFIXES))


def _read_shard_meta(files: _ShardFiles, dtype: np.dtype) -> dict[str, int] | None:
    """The shard's meta if every file is present with the announced size, else None."""
    try:
        meta = json.loads(files.meta.read_text())
        complete = (
            files.codes.stat().st_size == meta["num_codes"] * dtype.itemsize
            and files.offsets.stat().st_size == (meta["num_records"] + 1) * _OFFSET_DTYPE.itemsize
            and files.records.stat().st_size
            == int(np.fromfile(files.offsets, dtype=_OFFSET_DTYPE)[-1])
        )
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
    return meta if complete else None


def _write_shard(
    files: _ShardFiles,
    items: Sequence[RawItem],
    grids: Sequence[np.ndarray | None],
    dtype: np.dtype,
) -> dict[str, int]:
    lines: list[bytes] = []
    chunks: list[np.ndarray] = []
    offset = 0
    for item, grid in zip(items, grids, strict=True):
        h, w = (0, 0) if grid is None else grid.shape
        record = {
            "id": item.id,
            "offset": offset,
            "h": int(h),
            "w": int(w),
            "captions": list(item.captions),
            "qa": [list(pair) for pair in item.qa],
            "text": item.text,
            "prompts": list(item.prompts),
        }
        lines.append((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
        if grid is not None:
            chunks.append(grid.astype(dtype).reshape(-1))
            offset += grid.size
    flat = np.concatenate(chunks) if chunks else np.zeros(0, dtype=dtype)
    starts = np.zeros(len(lines) + 1, dtype=_OFFSET_DTYPE)
    np.cumsum([len(line) for line in lines], out=starts[1:])
    meta = {
        "num_records": len(items),
        "num_codes": int(flat.size),
        "with_image": sum(g is not None for g in grids),
        "with_captions": sum(bool(item.captions) for item in items),
        "with_qa": sum(bool(item.qa) for item in items),
        "with_text": sum(bool(item.text) for item in items),
    }
    for path, write in (
        (files.codes, flat.tofile),
        (files.records, lambda tmp: Path(tmp).write_bytes(b"".join(lines))),
        (files.offsets, starts.tofile),
        (files.meta, lambda tmp: Path(tmp).write_text(json.dumps(meta) + "\n")),
    ):
        with atomic_path(path) as tmp:
            write(tmp)
    return meta


def tokenize_dataset(
    source: RawSource,
    out_dir: str | os.PathLike[str],
    *,
    vqgan: torch.nn.Module | None,
    image_size: tuple[int, int] | None = None,
    preprocess: str = "generation",
    shard_size: int = 1024,
    batch_size: int = 16,
    progress: bool = True,
) -> Path:
    """Encode ``source`` into a tokenized folder (resumable: finished shards are skipped).

    ``vqgan`` is a :class:`liquidgen.tokenizer.VQGAN` (None for text-only sources).
    ``image_size`` ``(width, height)`` resizes every image first (``preprocess`` chooses
    Liquid's generation crop or understanding pad); None keeps native sizes, which must be
    multiples of the VQGAN's factor. Returns ``out_dir``.
    """
    if shard_size <= 0 or batch_size <= 0:
        raise ConfigError("shard_size and batch_size must be > 0")
    if preprocess not in ("generation", "understanding"):
        raise ConfigError(f"preprocess must be 'generation' or 'understanding', got {preprocess!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    codebook = int(getattr(vqgan, "codebook_size", 0)) if vqgan is not None else 0
    settings = TokenizeSettings(
        source=source.description,
        num_records=len(source),
        shard_size=shard_size,
        codebook_size=codebook,
        downsample=int(getattr(vqgan, "downsample", 0)) if vqgan is not None else 0,
        image_size=image_size,
        preprocess=preprocess,
        code_dtype=_code_dtype(codebook),
    )
    settings_dict = json.loads(json.dumps(dataclasses.asdict(settings)))  # tuples -> lists
    settings_path = out_dir / "settings.json"
    if settings_path.is_file():
        previous = json.loads(settings_path.read_text())
        if previous != settings_dict:
            raise ConfigError(
                f"{out_dir} holds a tokenization with other settings ({previous}); "
                "use a new output folder"
            )
    else:
        with atomic_path(settings_path) as tmp:
            tmp.write_text(json.dumps(settings_dict, indent=2) + "\n")

    dtype = np.dtype(settings.code_dtype)
    num_shards = -(-len(source) // shard_size)
    metas: dict[int, dict[str, int]] = {}
    todo = []
    for shard in range(num_shards):
        start, stop = shard * shard_size, min((shard + 1) * shard_size, len(source))
        meta = _read_shard_meta(_shard_files(out_dir, shard), dtype)
        if meta is not None and meta["num_records"] == stop - start:
            metas[shard] = meta
        else:
            todo.append((shard, start, stop))

    done = sum(m["num_records"] for m in metas.values())
    bar = tqdm(total=len(source), initial=done, unit="rec", disable=not progress, desc="tokenize")
    images = 0
    started = time.perf_counter()

    def on_image() -> None:  # after each encoded image: advance the bar, show images/s
        nonlocal images
        images += 1
        bar.update(1)
        bar.set_postfix(
            img_s=f"{images / max(time.perf_counter() - started, 1e-9):.1f}", refresh=False
        )

    for shard, start, stop in todo:
        items = [source[i] for i in range(start, stop)]
        grids = _encode_batches(items, vqgan, settings, batch_size, on_image)
        metas[shard] = _write_shard(_shard_files(out_dir, shard), items, grids, dtype)
        bar.update(sum(grid is None for grid in grids))  # text-only records
    bar.close()

    shards = []
    for shard in range(num_shards):
        files = _shard_files(out_dir, shard)
        names = {field.name: getattr(files, field.name).name for field in dataclasses.fields(files)}
        shards.append({**names, **metas[shard]})
    index = {"format": FORMAT, "settings": settings_dict, "shards": shards}
    with atomic_path(out_dir / INDEX_FILE) as tmp:
        tmp.write_text(json.dumps(index, indent=1) + "\n")
    return out_dir


# --------------------------------------------------------------------------- reading
class _OpenShard:
    """The memory maps of one shard."""

    def __init__(self, directory: Path, entry: dict[str, Any], dtype: np.dtype) -> None:
        self.codes = (
            np.memmap(directory / entry["codes"], dtype=dtype, mode="r")
            if entry["num_codes"]
            else np.zeros(0, dtype=dtype)
        )
        self.offsets = np.fromfile(directory / entry["offsets"], dtype=_OFFSET_DTYPE)
        self.records = np.memmap(directory / entry["records"], dtype=np.uint8, mode="r")

    def meta(self, row: int) -> dict[str, Any]:
        start, stop = self.offsets[row], self.offsets[row + 1]
        return json.loads(self.records[start:stop].tobytes())


class TokenizedDataset:
    """Random access to a folder written by :func:`tokenize_dataset`.

    Opening reads only ``index.json``; shards are memory-mapped on first use (at most
    :data:`_OPEN_SHARDS` at once), and a record costs one JSON line parse, so datasets of
    tens of millions of records open instantly and use little memory.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        index_path = self.directory / INDEX_FILE
        if not index_path.is_file():
            raise CheckpointError(
                f"{self.directory}: no {INDEX_FILE} (not a tokenized dataset, or "
                "`liquidgen data tokenize` has not finished)"
            )
        try:
            index = json.loads(index_path.read_text())
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{index_path}: invalid JSON ({e})") from None
        if index.get("format") != FORMAT:
            raise CheckpointError(f"{index_path}: unknown format {index.get('format')!r}")
        try:
            self.settings: dict[str, Any] = index["settings"]
            self.codebook_size = int(self.settings["codebook_size"])
            self._dtype = np.dtype(self.settings["code_dtype"])
            self._shards: list[dict[str, Any]] = index["shards"]
            shard_files = [
                _ShardFiles(*(self.directory / e[f.name] for f in dataclasses.fields(_ShardFiles)))
                for e in self._shards
            ]
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(
                f"{index_path}: malformed index ({type(e).__name__}: {e})"
            ) from None
        for files in shard_files:
            if _read_shard_meta(files, self._dtype) is None:
                raise CheckpointError(f"{files.meta}: shard files are missing or truncated")
        self._starts = np.cumsum([0] + [e["num_records"] for e in self._shards])  # (S+1,)
        self._open = functools.lru_cache(maxsize=_OPEN_SHARDS)(self._open_shard)

    def _open_shard(self, shard: int) -> _OpenShard:
        return _OpenShard(self.directory, self._shards[shard], self._dtype)

    def count(self, field: str) -> int:
        """Records that have ``field``: ``"image"``, ``"captions"``, ``"qa"`` or ``"text"``."""
        return sum(int(e[f"with_{field}"]) for e in self._shards)

    def __len__(self) -> int:
        return int(self._starts[-1])

    def _locate(self, index: int) -> tuple[_OpenShard, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"record {index} out of range for {len(self)} records")
        shard = int(np.searchsorted(self._starts, index, side="right")) - 1
        return self._open(shard), index - int(self._starts[shard])

    def __getitem__(self, index: int) -> Record:
        shard, row = self._locate(index)
        meta = shard.meta(row)
        codes = None
        if meta["h"]:
            size = meta["h"] * meta["w"]
            codes = shard.codes[meta["offset"] : meta["offset"] + size].reshape(
                meta["h"], meta["w"]
            )
        return Record(
            id=meta["id"],
            codes=codes,
            captions=list(meta["captions"]),
            qa=[(q, a) for q, a in meta["qa"]],
            text=meta["text"],
            prompts=list(meta.get("prompts", [])),  # absent in folders written before prompts
        )

    def __iter__(self) -> Iterator[Record]:
        for i in range(len(self)):
            yield self[i]
