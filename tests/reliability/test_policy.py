"""The shared policy modules in-process: limits, output rules, value checks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from liquidgen.errors import ConfigError, ImageReadError, OutputError, ShapeError
from liquidgen.utils import args, io, limits


def test_limits_read_their_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert limits.max_pixels() == 4_000_000 and limits.max_batch() == 256
    monkeypatch.setenv(limits.MAX_PIXELS_ENV, "0.5")
    assert limits.max_pixels() == 500_000
    with pytest.raises(ShapeError, match="LIQUIDGEN_MAX_MEGAPIXELS"):
        limits.check_image_pixels(1000, 1000)
    for bad in ("-1", "nan", "inf", "lots"):
        monkeypatch.setenv(limits.MAX_PIXELS_ENV, bad)
        with pytest.raises(ConfigError, match=limits.MAX_PIXELS_ENV):
            limits.max_pixels()


def test_decoding_limit_comes_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Image.new("L", (300, 300)).save(tmp_path / "a.png")
    assert limits.open_image(tmp_path / "a.png").size == (300, 300)
    monkeypatch.setenv(limits.MAX_DECODE_PIXELS_ENV, "0.05")
    with pytest.raises(ImageReadError, match="decoding limit"):
        limits.open_image(tmp_path / "a.png")
    assert Image.MAX_IMAGE_PIXELS != 50_000  # PIL's global is restored
    with pytest.raises(ImageReadError, match="folder"):
        limits.open_image(tmp_path)


def test_atomic_dir_replaces_a_file_without_leaving_old(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.write_text("x")
    io.prepare_output_dir(target, ("m",), overwrite=True)
    with io.atomic_dir(target) as tmp:
        (tmp / "m").write_text("new")
    assert (target / "m").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_prepare_output_dir_rules(tmp_path: Path) -> None:
    own = tmp_path / "own"
    own.mkdir()
    (own / "m").write_text("")
    io.prepare_output_dir(own, ("m",))  # its own earlier output
    (own / "other").write_text("")
    io.prepare_output_dir(own, ("m",))  # markers present: still its own (not exact)
    with pytest.raises(OutputError, match="--overwrite"):
        io.prepare_output_dir(own, ("m",), exact=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    io.prepare_output_dir(empty, ())
    with pytest.raises(OutputError, match="not a folder"):
        io.prepare_output_dir(own / "m", ("m",))
    with pytest.raises(OutputError, match="not a folder"):
        io.prepare_output_dir(own / "m" / "below", ("m",))


def test_stale_temporaries(tmp_path: Path) -> None:
    dead = tmp_path / ".x.999999999-abcdefgh.png.tmp"
    live = tmp_path / f".x.{os.getpid()}-abcdefgh.png.tmp"
    other = tmp_path / ".y.999999999-abcdefgh.png.tmp"
    for path in (dead, live, other):
        path.write_text("")
    with io.atomic_path(tmp_path / "x.png") as tmp:
        tmp.write_text("png")
    assert not dead.exists() and live.exists() and other.exists()
    assert (tmp_path / "x.png").stat().st_mode & 0o777 == 0o666 & ~io._umask()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0", 0), (str(2**63 - 1), 2**63 - 1), (" 7 ", 7)],
)
def test_seeds(text: str, expected: int) -> None:
    assert args.check_seed(text) == expected


@pytest.mark.parametrize("text", ["-1", str(2**63), "1.5", "1e3", "", "x", "200000000000000000000"])
def test_bad_seeds(text: str) -> None:
    with pytest.raises(ConfigError, match="seed"):
        args.check_seed(text)


def test_floats() -> None:
    assert args.check_finite_float("0.5", positive=True) == 0.5
    for bad in ("inf", "-inf", "nan", "x"):
        with pytest.raises(ConfigError):
            args.check_finite_float(bad)
    with pytest.raises(ConfigError, match="> 0"):
        args.check_finite_float("0", positive=True)
