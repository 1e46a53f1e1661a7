"""Shared checks of command-line values, as plain functions and as argparse ``type=`` callables.

Every command takes seeds, counts, sizes and floats the same way, so a value one command
accepts the others accept too, and a bad one is refused before anything is loaded. The
plain functions raise :class:`~liquidgen.errors.ConfigError`; the ``*_arg`` wrappers raise
``argparse.ArgumentTypeError`` for use as ``type=``; ``liquidgen``'s parsers print usage
errors on one line with exit status 2.

- seeds: integers in ``[0, SEED_MAX]`` (``2**63 - 1``): numpy's generators refuse negative
  seeds and torch's take at most 64 bits, and commands add small offsets (``seed + j``).
- sizes: ``N`` or ``WxH`` with positive numbers, under the pixel limit of
  :mod:`liquidgen.utils.limits`.
- floats (CFG scale, temperature, ...): finite (no ``inf``/``nan``), optionally ``> 0``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TypeVar

from liquidgen.errors import ConfigError, LiquidgenError
from liquidgen.utils.limits import check_image_pixels

SEED_MAX = 2**63 - 1
T = TypeVar("T")


def parse_int(text: str | int, what: str = "value") -> int:
    """An integer written in decimal (``"12"``, ``12``); not a float, bool or ``"1e3"``."""
    if isinstance(text, bool):
        raise ConfigError(f"{what} must be an integer, got {text!r}")
    if isinstance(text, int):
        return text
    try:
        return int(str(text).strip(), 10)
    except ValueError:
        raise ConfigError(f"{what} must be an integer, got {text!r}") from None


def check_seed(value: str | int, what: str = "seed") -> int:
    """A seed: an integer in ``[0, SEED_MAX]``."""
    seed = parse_int(value, what)
    if not 0 <= seed <= SEED_MAX:
        raise ConfigError(f"{what} must be an integer in [0, 2**63 - 1], got {seed}")
    return seed


def check_int_range(
    value: str | int, what: str = "value", *, low: int | None = None, high: int | None = None
) -> int:
    """An integer in ``[low, high]`` (either bound optional)."""
    number = parse_int(value, what)
    if (low is not None and number < low) or (high is not None and number > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        if low is None:
            bounds = f"<= {high}"
        raise ConfigError(f"{what} must be an integer {bounds}, got {number}")
    return number


def check_finite_float(
    value: str | float, what: str = "value", *, low: float | None = None, positive: bool = False
) -> float:
    """A finite float (no ``inf``/``nan``), optionally ``> 0`` or ``>= low``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(f"{what} must be a finite number, got {value!r}")
    if positive and number <= 0:
        raise ConfigError(f"{what} must be > 0, got {value!r}")
    if low is not None and number < low:
        raise ConfigError(f"{what} must be >= {low}, got {value!r}")
    return number


def parse_size(text: str | int, what: str = "size") -> tuple[int, int]:
    """``"N"``, ``N`` or ``"WxH"`` -> ``(width, height)``, positive and under the pixel limit."""
    if isinstance(text, bool):
        raise ConfigError(f"{what} must be N or WxH, got {text!r}")
    parts = [text] if isinstance(text, int) else str(text).strip().lower().split("x")
    if len(parts) not in (1, 2):
        raise ConfigError(f"{what} must be N or WxH, got {text!r}")
    try:
        values = [parse_int(p, what) for p in parts]
    except ConfigError:
        raise ConfigError(f"{what} must be N or WxH, got {text!r}") from None
    width, height = values if len(values) == 2 else values * 2
    if width <= 0 or height <= 0:
        raise ConfigError(f"{what} must be positive, got {text!r}")
    check_image_pixels(width, height, what)
    return width, height


def parse_sizes(text: str, what: str = "sizes") -> list[tuple[int, int]]:
    """``"128x128,160x96"`` -> ``[(128, 128), (160, 96)]`` (each checked by :func:`parse_size`)."""
    sizes = [parse_size(part, what) for part in str(text).split(",") if part.strip()]
    if not sizes:
        raise ConfigError(f"{what} must list N or WxH sizes, got {text!r}")
    return sizes


def argtype(check: Callable[..., T], *args: object, **kwargs: object) -> Callable[[str], T]:
    """``check`` as an argparse ``type=``: its :class:`LiquidgenError` becomes a usage error."""

    def convert(text: str) -> T:
        try:
            return check(text, *args, **kwargs)
        except LiquidgenError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    convert.__name__ = getattr(check, "__name__", "value")
    return convert


seed_arg = argtype(check_seed)
finite_float_arg = argtype(check_finite_float)
nonnegative_float_arg = argtype(check_finite_float, "value", low=0.0)
positive_float_arg = argtype(check_finite_float, "value", positive=True)
positive_int_arg = argtype(check_int_range, "value", low=1)
nonnegative_int_arg = argtype(check_int_range, "value", low=0)
size_arg = argtype(parse_size)
sizes_arg = argtype(parse_sizes)
