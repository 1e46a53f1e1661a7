"""YAML configs shared by every trainer: reading a mapping, ``a.b.c=value`` overrides, and
checking parsed values against a config dataclass's annotations."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from liquidgen.errors import ConfigError


def read_yaml_mapping(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The YAML mapping in ``path``; :class:`ConfigError` if missing, invalid or not a mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping")
    return data


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML) to a nested dict in place.

    A numeric path component indexes a list (``data.sources.0.weight=2``). Setting a key that
    does not exist yet is allowed here; the config dataclass then rejects unknown keys by name.
    """
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError as e:
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise ConfigError(f"override {item!r}: value is not valid YAML ({problem})") from None
        parts = key.split(".")
        node: Any = data
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            where = ".".join(parts[: depth + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(
                        f"override {item!r}: {where} is not an index of a {len(node)}-item list"
                    )
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            else:
                raise ConfigError(
                    f"override {item!r}: {'.'.join(parts[:depth])} is not a mapping or list"
                )
    return data


_SCALAR_NAMES = {float: "a number", int: "an integer", bool: "true/false", str: "a string"}


def _describe(hint: Any) -> str:
    """How an error message names what ``hint`` accepts ("a number", "a list of 2 values")."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in _SCALAR_NAMES:
        return _SCALAR_NAMES[hint]
    if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
        return f"a list of {len(args)} values"
    if origin in (list, tuple):
        return "a list"
    if dataclasses.is_dataclass(hint):
        return f"a mapping for {hint.__name__}"
    return str(hint).replace("typing.", "")


def coerce(
    value: Any,
    hint: Any,
    key: str,
    *,
    nested: Callable[[type, dict[str, Any], str], Any] | None = None,
    parsers: Mapping[Any, Callable[[Any], Any]] | None = None,
) -> Any:
    """``value`` (parsed YAML) checked against the annotation ``hint``, or a ConfigError
    naming ``key``.

    YAML has no tuples and reads ``1e-3`` (no dot) as a string, so lists become tuples and
    number strings and ints become floats where the annotation asks; ``X | None`` accepts
    ``None``; a union tries its members in order. A dataclass annotation is built from a
    mapping by ``nested(cls, mapping, key)`` (a ConfigError without one). ``parsers`` maps an
    annotation to a function for values written as a scalar (e.g. sizes as ``"160x96"``).
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    kw: dict[str, Any] = {"nested": nested, "parsers": parsers}
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is not type(None):
                try:
                    return coerce(value, arg, key, **kw)
                except ConfigError as e:
                    errors.append(str(e))
        raise ConfigError("; ".join(errors))
    if parsers and hint in parsers and isinstance(value, str | int) and not isinstance(value, bool):
        return parsers[hint](value)
    if origin in (list, tuple) and isinstance(value, list | tuple):
        if origin is list or (len(args) == 2 and args[1] is Ellipsis):
            items = [coerce(v, args[0], f"{key}[{i}]", **kw) for i, v in enumerate(value)]
            return items if origin is list else tuple(items)
        if len(value) == len(args):
            return tuple(
                coerce(v, a, f"{key}[{i}]", **kw)
                for i, (v, a) in enumerate(zip(value, args, strict=True))
            )
    elif dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if isinstance(value, dict) and nested is not None:
            return nested(hint, value, key)
    elif hint is float and isinstance(value, int | float | str) and not isinstance(value, bool):
        with contextlib.suppress(ValueError):  # a non-number string falls to the error below
            return float(value)
    elif hint in (int, bool, str) and type(value) is hint:
        return value  # type(), not isinstance: True is not an int here
    elif not (origin in (list, tuple) or hint in (float, int, bool, str)):
        raise TypeError(f"unsupported config annotation {hint!r}")  # a bug in the caller
    raise ConfigError(f"{key}: expected {_describe(hint)}, got {value!r}")
