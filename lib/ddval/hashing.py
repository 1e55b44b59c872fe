"""Stable hashes of parameters: what a stage's completion record (:mod:`ddval.store`) and every model stamp
depend on. Plain data and dataclasses are put in a canonical form (keys sorted, tuples as lists, paths as
strings) and hashed with SHA-256.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

#: Dataclass field metadata key: a field marked ``{OMIT_DEFAULT: True}`` is left out of :func:`plain_data` (and so
#: of :func:`param_hash`) while it holds its default. An option added later with such a default keeps every
#: hash made before it, and so every checkpoint and result stamped with one.
OMIT_DEFAULT = "ddval.omit_default"


def plain_data(obj: Any) -> Any:
    """``obj`` with every dataclass turned into a dict, as :func:`dataclasses.asdict` does, less the fields
    marked :data:`OMIT_DEFAULT` that hold their default.

    Args:
        obj: plain data, possibly holding (nested) dataclasses.

    Returns:
        The same data with dicts in place of dataclasses (lists, tuples and dicts rebuilt, leaves shared).
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: plain_data(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if not (f.metadata.get(OMIT_DEFAULT) and getattr(obj, f.name) == f.default)
        }
    if isinstance(obj, dict):
        return {k: plain_data(v) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a named tuple, as asdict keeps it
        return type(obj)(*(plain_data(v) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(plain_data(v) for v in obj)
    return obj


def canonical(obj: Any) -> Any:
    """``obj`` as JSON-ready plain data: dataclasses as dicts (:func:`plain_data`), dict keys as sorted strings,
    tuples as lists, sets sorted, paths as strings, numpy scalars as Python ones.

    Args:
        obj: plain data, possibly holding dataclasses.

    Returns:
        Its canonical form (equal inputs give equal JSON).
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return canonical(plain_data(obj))
    if isinstance(obj, dict):
        return {str(k): canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted(canonical(v) for v in obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and obj.is_integer():
        return obj  # json keeps 1.0 distinct from 1; that is fine and stable
    return obj


def param_hash(params: Any) -> str:
    """Stable short hash (16 hex digits) of plain data / dataclasses."""
    blob = json.dumps(canonical(params), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
