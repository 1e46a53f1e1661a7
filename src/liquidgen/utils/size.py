"""Image sizes typed by users: the one ``WxH`` parser of liquidgen."""

from __future__ import annotations

from liquidgen.errors import ConfigError


def parse_size(text: str | int, *, square: bool = True) -> tuple[int, int]:
    """``"160x96"`` (width x height) -> ``(160, 96)``; with ``square`` (default) also ``128``
    or ``"128"`` -> ``(128, 128)``. Raises :class:`ConfigError` unless both sides are positive
    integers."""
    expected = "N or WxH" if square else "WxH"
    try:
        if isinstance(text, bool) or not isinstance(text, str | int):
            raise ValueError
        if isinstance(text, str) and "x" in text.lower():
            w, h = (int(v) for v in text.lower().split("x"))
        elif square:
            w = h = int(text)
        else:
            raise ValueError
    except ValueError as e:
        raise ConfigError(f"size must be {expected}, got {text!r}") from e
    if w <= 0 or h <= 0:
        raise ConfigError(f"size must be positive, got {text!r}")
    return w, h
