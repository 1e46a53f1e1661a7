"""Property-based fuzzing of every input parser (hypothesis).

The invariant, for every target: the parser returns a valid result or raises a
:class:`~liquidgen.errors.LiquidgenError` whose message is one line; never another exception,
never a hang (each example runs under a wall-clock alarm). Profiles (tests/reliability/
conftest.py): ``quick`` — derandomised, a few examples per target, part of ``make test``;
``fuzz`` — ``make fuzz``, ``LIQUIDGEN_FUZZ_EXAMPLES`` (default 1000) examples per target.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
import signal
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from liquidgen.errors import LiquidgenError

from .conftest import QUICK_EXAMPLES

HANG_SECONDS = 60  # one example taking longer than this counts as a hang


def examples(quick: int) -> settings:
    """``quick`` examples in the quick profile (heavy targets), the profile's count otherwise."""
    current = settings.default
    if current.max_examples == QUICK_EXAMPLES:
        return settings(current, max_examples=quick)
    return settings(current)


@contextlib.contextmanager
def no_hang(seconds: int = HANG_SECONDS) -> Iterator[None]:
    def alarm(signum: int, frame: object) -> None:
        raise TimeoutError(f"example took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# Failures the fuzzer finds in code this suite's authors do not own, until they are fixed
# there, may be listed as ``known`` by a target (docs/reliability.md; none at present):
# tolerated and counted as hypothesis events, so that the targets keep exploring;
# LIQUIDGEN_FUZZ_STRICT=1 makes them fail again.
STRICT = os.environ.get("LIQUIDGEN_FUZZ_STRICT") == "1"


def check(fn: Callable[[], Any], known: tuple[str, ...] = ()) -> Any:
    """Run ``fn``: a result, or a one-line LiquidgenError (returned); anything else fails,
    except an exception whose class or top-level module name is in ``known`` (unless strict)."""
    with no_hang():
        try:
            return fn()
        except LiquidgenError as e:
            message = str(e)
            assert message.strip(), "empty error message"
            if "\n" in message.strip() and not STRICT and "multi-line message" in known:
                event("known open failure: multi-line message")  # the CLI joins its lines
                return e
            assert "\n" not in message.strip(), f"multi-line message: {message!r}"
            return e
        except Exception as e:
            names = {type(e).__name__, type(e).__module__.split(".")[0]}
            if STRICT or not names & set(known):
                raise
            event(f"known open failure: {type(e).__name__}")
            return e


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="liquidgen-fuzz-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------ image files
MODES = ["1", "L", "P", "RGB", "RGBA", "CMYK", "YCbCr", "LA", "PA", "I", "I;16", "F", "HSV"]
FORMATS = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif",
           "WEBP": ".webp", "PPM": ".ppm", "ICO": ".ico"}  # fmt: skip


def _encoded(mode: str, fmt: str, width: int, height: int, seed: int) -> bytes | None:
    """An image of ``mode`` saved as ``fmt`` (None if PIL cannot write that combination)."""
    rng = np.random.default_rng(seed)
    try:
        img = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")
        img = img.convert(mode) if mode not in ("PA",) else img.convert("P").convert("PA")
        buf = io.BytesIO()
        img.save(buf, format=fmt)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return buf.getvalue()


def _load_both(path: Path) -> None:
    from liquidgen.tokenizer.images import load_image
    from liquidgen.world.parse import load_image as parse_load_image
    from liquidgen.world.parse import parse

    img = check(lambda: load_image(path))
    if isinstance(img, Image.Image):
        assert img.mode == "RGB" and img.width > 0 and img.height > 0
    raw = check(lambda: parse_load_image(path))
    if isinstance(raw, Image.Image) and raw.width * raw.height <= 256 * 256:
        check(lambda: parse(raw))


@given(data=st.binary(max_size=4096))
def test_random_bytes_as_image(scratch: Path, data: bytes) -> None:
    _load_both(_write(scratch, "random.bin", data))


@given(
    mode=st.sampled_from(MODES),
    fmt=st.sampled_from(sorted(FORMATS)),
    size=st.tuples(st.integers(1, 48), st.integers(1, 48)),
    seed=st.integers(0, 2**32 - 1),
    cut=st.floats(0.0, 1.0),
    flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 7)), max_size=4),
)
def test_images_of_every_mode_truncated_and_flipped(
    scratch: Path, mode: str, fmt: str, size: tuple[int, int], seed: int, cut: float,
    flips: list[tuple[float, int]],
) -> None:  # fmt: skip
    data = _encoded(mode, fmt, *size, seed)
    assume(data is not None)
    assert data is not None
    buf = bytearray(data[: max(1, int(len(data) * cut))] if cut < 1 else data)
    for where, bit in flips:
        buf[min(len(buf) - 1, int(where * len(buf)))] ^= 1 << bit
    _load_both(_write(scratch, "image" + FORMATS[fmt], bytes(buf)))


def _png(width: int, height: int, depth: int, color: int, body: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(body))
        + chunk(b"IEND", b"")
    )


@given(
    width=st.integers(0, 2**31 - 1),
    height=st.integers(0, 2**31 - 1),
    depth=st.sampled_from([1, 2, 4, 8, 16]),
    color=st.sampled_from([0, 2, 3, 4, 6]),
    body=st.binary(max_size=512),
)
def test_png_headers_of_any_size(
    scratch: Path, width: int, height: int, depth: int, color: int, body: bytes
) -> None:
    _load_both(_write(scratch, "header.png", _png(width, height, depth, color, body)))


# ------------------------------------------------------------------ sizes
SIZE_TEXT = st.one_of(
    st.text(max_size=24),
    st.text(alphabet="0123456789xX ,-+_.e", max_size=24),
    st.builds(
        lambda w, h: f"{w}x{h}", st.integers(-(10**20), 10**20), st.integers(-(10**20), 10**20)
    ),
)


@given(text=SIZE_TEXT)
def test_size_strings(text: str) -> None:
    from liquidgen.evaluation.cli import _parse_sizes
    from liquidgen.utils.args import parse_size, parse_sizes
    from liquidgen.utils.limits import max_pixels
    from liquidgen.world.cli import _sizes

    for parser in (parse_size, parse_sizes, _parse_sizes, _sizes):
        result = check(lambda p=parser: p(text))
        if isinstance(result, LiquidgenError):
            continue
        for w, h in [result] if parser is parse_size else result:
            assert isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0
            if parser is not _parse_sizes:
                assert w * h <= max_pixels()


@given(value=st.one_of(st.text(max_size=30), st.integers(-(2**70), 2**70)))
def test_seeds_and_counts(value: str | int) -> None:
    from liquidgen.utils.args import SEED_MAX, check_int_range, check_seed

    seed = check(lambda: check_seed(value))
    if not isinstance(seed, LiquidgenError):
        assert 0 <= seed <= SEED_MAX
    count = check(lambda: check_int_range(value, "n", low=1))
    if not isinstance(count, LiquidgenError):
        assert count >= 1


# ------------------------------------------------------------------ code files
JSON_VALUES = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=5)
    ),
    lambda inner: (
        st.lists(inner, max_size=6)
        | st.dictionaries(st.sampled_from(["grid", "codes", "file", "x"]), inner, max_size=3)
    ),
    max_leaves=40,
)
GRIDS = st.builds(
    lambda h, w, hi, extra: {"grid": [h, w] if extra else [h + 1, w], "codes": [[(i * 7 + j) % hi for j in range(w)] for i in range(h)]},
    st.integers(1, 6), st.integers(1, 6), st.integers(1, 80), st.booleans(),
)  # fmt: skip


@pytest.fixture(scope="module")
def vq(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from liquidgen.tokenizer import VQGAN

    from .conftest import _make_tiny_vq

    return VQGAN.from_pretrained(_make_tiny_vq(tmp_path_factory.mktemp("fuzz-vq") / "vq")).eval()


@given(
    lines=st.lists(
        st.one_of(
            GRIDS.map(json.dumps),
            JSON_VALUES.map(lambda v: json.dumps(v, allow_nan=True)),
            st.text(max_size=40),
        ),
        max_size=4,
    ),
    raw=st.binary(max_size=64),
)
def test_code_files(scratch: Path, vq: Any, lines: list[str], raw: bytes) -> None:
    import torch

    from liquidgen.tokenizer.cli import _read_codes, decode_grid

    path = scratch / "codes.jsonl"
    path.write_bytes(
        "\n".join(lines).encode("utf-8", "surrogatepass") + (raw if len(lines) % 2 else b"")
    )
    grids = check(lambda: _read_codes(path, vq.downsample))
    if isinstance(grids, LiquidgenError):
        return
    for grid in grids:
        assert grid.dtype == torch.long and grid.ndim == 2
        pixels = check(lambda g=grid: decode_grid(vq, g))
        if not isinstance(pixels, LiquidgenError):
            assert pixels.shape[-2:] == (
                grid.shape[0] * vq.downsample,
                grid.shape[1] * vq.downsample,
            )


# ------------------------------------------------------------------ YAML configs and overrides
YAML_TEXT = st.one_of(
    st.text(max_size=200),
    st.lists(st.tuples(st.sampled_from(["a", "optim", "model", "max_steps", "- x", "lr"]),
                       st.text(alphabet="[]{}:,-'\"!&*|>#%@` 0123456789.ex", max_size=12)),
             max_size=6).map(lambda kv: "\n".join(f"{k}: {v}" for k, v in kv)),
)  # fmt: skip
OVERRIDE = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda k, v: f"{k}={v}",
        st.sampled_from(["optim.lr", "max_steps", "data.sources.0.weight", "model.path", "seed",
                         "optim.betas", "a.b.c", "data.sources.9.x", "optim", "batch_size"]),
        st.text(alphabet="[]{}:,-'\"!&*|>#%@` 0123456789.exnul", max_size=16),
    ),
)  # fmt: skip


@given(text=YAML_TEXT, overrides=st.lists(OVERRIDE, max_size=3))
def test_yaml_configs_and_overrides(scratch: Path, text: str, overrides: list[str]) -> None:
    from liquidgen.utils.config import apply_overrides, read_yaml_mapping

    path = scratch / "config.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    data = check(lambda: read_yaml_mapping(path))
    if not isinstance(data, LiquidgenError):
        assert isinstance(data, dict)
        check(lambda: apply_overrides(data, overrides))


REPO = Path(__file__).resolve().parents[2]


@settings(examples(10))
@given(overrides=st.lists(OVERRIDE, max_size=3))
def test_training_config_overrides(overrides: list[str]) -> None:
    from liquidgen.training.config import load_config

    model = f"model.path={REPO / 'models' / 'liquidgen-tiny'}"
    check(lambda: load_config(REPO / "configs" / "tiny-smoke.yaml", [model, *overrides]))


# ------------------------------------------------------------------ checkpoint folders
MUTATION = st.tuples(
    st.sampled_from(["truncate", "flip", "empty", "delete"]),
    st.floats(0.0, 1.0),
    st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 7)), min_size=1, max_size=8),
)


def _mutate(folder: Path, pick: float, mutation: tuple[str, float, list[tuple[float, int]]]) -> str:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    target = files[min(len(files) - 1, int(pick * len(files)))]
    kind, cut, flips = mutation
    data = bytearray(target.read_bytes())
    if kind == "delete":
        target.unlink()
    elif kind == "empty":
        target.write_bytes(b"")
    elif kind == "truncate":
        target.write_bytes(bytes(data[: int(cut * len(data))]))
    elif data:
        for where, bit in flips:
            data[min(len(data) - 1, int(where * len(data)))] ^= 1 << bit
        target.write_bytes(bytes(data))
    return f"{kind} {target.relative_to(folder)}"


@pytest.fixture(scope="module")
def vq_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from .conftest import _make_tiny_vq

    root = tmp_path_factory.mktemp("fuzz-vq-folders")
    return {
        "liquidgen": _make_tiny_vq(root / "liquidgen"),
        "authors": _make_tiny_vq(root / "authors", authors_format=True),
    }


@settings(examples(15))
@given(fmt=st.sampled_from(["liquidgen", "authors"]), pick=st.floats(0, 1), mutation=MUTATION)
def test_tokenizer_checkpoints_truncated_or_flipped(
    scratch: Path, vq_folders: dict[str, Path], fmt: str, pick: float, mutation: Any
) -> None:
    from liquidgen.tokenizer import VQGAN

    folder = scratch / "vq-mutated"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(vq_folders[fmt], folder)
    _mutate(folder, pick, mutation)
    check(lambda: VQGAN.from_pretrained(folder))


@pytest.fixture(scope="module")
def liquid_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        from tiny_models import make_tiny_liquid
    except ImportError:
        from liquidgen.testing import make_tiny_liquid  # type: ignore[no-redef]
    return make_tiny_liquid(tmp_path_factory.mktemp("fuzz-liquid") / "model", "llama")


@settings(examples(8))
@given(pick=st.floats(0, 1), mutation=MUTATION)
def test_model_checkpoints_truncated_or_flipped(
    scratch: Path, liquid_folder: Path, pick: float, mutation: Any
) -> None:
    from liquidgen import Pipeline

    folder = scratch / "liquid-mutated"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(liquid_folder, folder)
    _mutate(folder, pick, mutation)
    check(lambda: Pipeline.from_pretrained(folder, device="cpu"))


# ------------------------------------------------------------------ prompts
PROMPTS = st.one_of(
    st.text(max_size=60),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=60),
    st.lists(st.sampled_from(["\x00", "\x1b", "\n", "\r", "\t", "\u200b", "\ufeff", "<boi>",
                              "<eoi>", "<unconditional>", "a", " ", "é", "🙂"]),
             max_size=30).map("".join),
)  # fmt: skip


@pytest.fixture(scope="module")
def pipe(liquid_folder: Path) -> Any:
    import torch

    from liquidgen import Pipeline

    torch.set_num_threads(1)
    return Pipeline.from_pretrained(liquid_folder, device="cpu")


@settings(examples(10))
@given(prompt=PROMPTS, seed=st.integers(0, 2**63 - 1))
def test_prompts(pipe: Any, prompt: str, seed: int) -> None:
    images = check(lambda: pipe.generate_image(prompt, width=16, height=16, seed=seed))
    if not isinstance(images, LiquidgenError):
        assert len(images) == 1 and images[0].size == (16, 16)
    image = Image.new("RGB", (16, 16), (random.Random(seed).randrange(256), 0, 0))
    check(lambda: pipe.answer(image, prompt, max_new_tokens=4))
