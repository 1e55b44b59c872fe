"""Frozen dataclasses built from plain YAML data by their type hints, and the merge of two mappings.

The experiment configuration (``ddval.config``) is a tree of frozen dataclasses; :func:`build` fills one
from a parsed YAML mapping field by field, coercing and checking each value against the field's type hint
(``Literal``, ``tuple[...]``, ``dict[...]``, optional, nested dataclasses), so a new option is one field
of a dataclass and nothing else. Every error names where it is (file and key path).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal


class ConfigError(ValueError):
    """A preset file is malformed; the message names the file and the key."""


def merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``top``: mappings merged key by key (except ``roots`` and ``patients``, which
    are replaced whole), everything else replaced."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in {"roots", "patients"}:
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def build(cls: type, raw: Any, where: str) -> Any:
    """Recursively turn plain YAML data into the (frozen) dataclass ``cls``; unknown keys and wrong types
    raise :class:`ConfigError` naming ``where`` and the key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown} in {cls.__name__}; allowed: {sorted(names)}")
    kwargs = {}
    for key, value in raw.items():
        kwargs[key] = coerce(hints[key], value, f"{where}: {key}")
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required key is missing
        raise ConfigError(f"{where}: {cls.__name__}: {exc}") from exc


def coerce(hint: Any, value: Any, where: str) -> Any:
    """``value`` checked against (and, for ints given as floats or nested mappings, turned into) ``hint``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return coerce(inner[0], value, where)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else Any
        return tuple(coerce(item, v, f"{where}[{i}]{named(v)}") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {str(k): coerce(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not (
        isinstance(value, hint) and not (hint is int and isinstance(value, bool))
    ):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def named(item: Any) -> str:
    """`` (<name>)`` for a list item that has a name (a setting, an institution), so errors say which."""
    return f" ({item['name']})" if isinstance(item, dict) and "name" in item else ""
