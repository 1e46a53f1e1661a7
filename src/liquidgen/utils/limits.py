"""The resource policy: how big an image, a decoded file or a batch any command may take.

Every command checks its arguments against these limits *before* it allocates anything, so
its memory stays bounded whatever it is asked (tested under an address-space limit in
``tests/reliability/``). Three limits, each overridable by an environment variable:

- **pixels per image** (:func:`max_pixels`, default :data:`DEFAULT_MAX_MEGAPIXELS` = 4 MP,
  e.g. 2048x2048; ``LIQUIDGEN_MAX_MEGAPIXELS``): the largest image the tokenizer encodes or
  decodes, the world renders or the parser reads. Liquid itself works at 512x512 (0.26 MP).
- **decoded image file** (:func:`max_decode_pixels`, default
  :data:`DEFAULT_MAX_DECODE_MEGAPIXELS` = 64 MP; ``LIQUIDGEN_MAX_DECODE_MEGAPIXELS``): the
  largest image file that is decoded at all (a photo resized by ``--size`` may be larger than
  the model limit). The header is checked before any pixel is decoded, so a small file
  claiming 20000x20000 pixels (a decompression bomb) is refused in one line; PIL's own
  bomb limit is raised to this value and its error becomes the same one line.
- **images per batch** (:func:`max_batch`, default :data:`DEFAULT_MAX_BATCH` = 256;
  ``LIQUIDGEN_MAX_BATCH``): the most images held in memory at once (e.g. grids of one
  ``tokenizer decode``, ``--batch-size`` of ``data tokenize`` and ``eval``).

A value that breaks a limit raises :class:`~liquidgen.errors.ConfigError` (an argument),
:class:`~liquidgen.errors.ShapeError` (an image or code grid) or
:class:`~liquidgen.errors.ImageReadError` (an image file): one line, exit status 2.
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from pathlib import Path
from typing import IO, TYPE_CHECKING

from liquidgen.errors import ConfigError, ImageReadError, ShapeError

if TYPE_CHECKING:
    from PIL import Image

DEFAULT_MAX_MEGAPIXELS = 4.0
DEFAULT_MAX_DECODE_MEGAPIXELS = 64.0
DEFAULT_MAX_BATCH = 256
MAX_PIXELS_ENV = "LIQUIDGEN_MAX_MEGAPIXELS"
MAX_DECODE_PIXELS_ENV = "LIQUIDGEN_MAX_DECODE_MEGAPIXELS"
MAX_BATCH_ENV = "LIQUIDGEN_MAX_BATCH"
MEGA = 1_000_000
_PIL_LIMIT_LOCK = threading.Lock()  # PIL's bomb limit is a module global


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name}={raw!r} must be a positive number")
    return value


def max_pixels() -> int:
    """Pixels per image the tokenizer, the world and the parser take (``LIQUIDGEN_MAX_MEGAPIXELS``)."""
    return int(_env_number(MAX_PIXELS_ENV, DEFAULT_MAX_MEGAPIXELS) * MEGA)


def max_decode_pixels() -> int:
    """Pixels of the largest image file decoded (``LIQUIDGEN_MAX_DECODE_MEGAPIXELS``)."""
    return int(_env_number(MAX_DECODE_PIXELS_ENV, DEFAULT_MAX_DECODE_MEGAPIXELS) * MEGA)


def max_batch() -> int:
    """Images held in memory at once (``LIQUIDGEN_MAX_BATCH``)."""
    return max(1, int(_env_number(MAX_BATCH_ENV, DEFAULT_MAX_BATCH)))


def _megapixels(pixels: int) -> str:
    value = pixels / MEGA
    return f"{value:,.0f} MP" if value >= 100 else f"{value:.3g} MP"


def check_image_pixels(width: int, height: int, what: str = "image") -> None:
    """Raise :class:`ShapeError` if a ``width`` x ``height`` image is above :func:`max_pixels`."""
    limit = max_pixels()
    if width * height > limit:
        raise ShapeError(
            f"{what} {width}x{height} ({_megapixels(width * height)}) is above the "
            f"{_megapixels(limit)} limit per image (set {MAX_PIXELS_ENV} to change it)"
        )


def check_code_grid(rows: int, cols: int, downsample: int, what: str = "code grid") -> None:
    """Raise :class:`ShapeError` if a ``rows`` x ``cols`` grid decodes to too many pixels."""
    check_image_pixels(cols * downsample, rows * downsample, f"{what} {rows}x{cols} decodes to")


def check_batch(n: int, what: str = "batch size") -> int:
    """``n`` if it is an integer in ``[1, max_batch()]``, else :class:`ConfigError`."""
    limit = max_batch()
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"{what} must be an integer >= 1, got {n!r}")
    if n > limit:
        raise ConfigError(
            f"{what} {n} is above the limit of {limit} images at once (set {MAX_BATCH_ENV})"
        )
    return n


def open_image(path: str | os.PathLike[str]) -> Image.Image:
    """Decode the image file ``path`` fully, in its own mode, within :func:`max_decode_pixels`.

    The size in the header is checked before any pixel is decoded (a small file may claim
    an enormous image); PIL's own decompression-bomb limit is set to the same value while
    the file is read. Any failure to read the file — missing, a folder, not an image,
    truncated, corrupt, too large — is an :class:`~liquidgen.errors.ImageReadError`: the
    decoder is third-party code parsing untrusted bytes, so whatever it raises means a bad
    file, not a bug here.
    """
    path = Path(path)
    if path.is_dir():
        raise ImageReadError(f"{path}: is a folder, not an image file")
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    return _decode(path, str(path), max_decode_pixels())


def decode_image_bytes(
    data: bytes, what: str = "image", *, limit: int | None = None
) -> Image.Image:
    """:func:`open_image` for an image held in memory (an upload); ``what`` names it in
    errors, ``limit``: most pixels (default :func:`max_decode_pixels`)."""
    import io

    return _decode(io.BytesIO(data), what, max_decode_pixels() if limit is None else limit)


def _decode(source: Path | IO[bytes], what: str, limit: int) -> Image.Image:
    from PIL import Image, UnidentifiedImageError

    with _PIL_LIMIT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a decoder's notes (e.g. odd TIFF tags) are not errors
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, limit
        try:
            with Image.open(source) as img:
                width, height = img.size
                if width * height > limit:
                    raise ImageReadError(
                        f"{what}: image of {width}x{height} ({_megapixels(width * height)}) is "
                        f"above the {_megapixels(limit)} decoding limit "
                        f"(set {MAX_DECODE_PIXELS_ENV} to change it)"
                    )
                if width <= 0 or height <= 0:
                    raise ImageReadError(f"{what}: empty image ({width}x{height})")
                img.load()
                return img.copy()
        except ImageReadError:
            raise
        except UnidentifiedImageError:
            raise ImageReadError(f"{what}: not an image") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageReadError(
                f"{what}: image above the {_megapixels(limit)} decoding limit ({e})"
            ) from None
        except MemoryError:
            raise ImageReadError(f"{what}: image too large to decode in memory") from None
        except Exception as e:  # truncated / corrupt data, whatever the decoder raises
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ImageReadError(f"{what}: unreadable image ({reason})") from None
        finally:
            Image.MAX_IMAGE_PIXELS = saved
