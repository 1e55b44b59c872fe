"""Where presets live and how a preset file is read: ``configs/<name>.yaml`` (``DDVAL_CONFIGS`` moves the
folder) or any YAML file, its ``extends:`` chain merged (mappings key by key, the rest replaced), relative
``data.roots`` anchored at the file's folder, and relative paths in the environment anchored where the
command runs. ``ddval.config`` turns the merged mapping into the typed configuration.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from ddval.yaml_schema import ConfigError, merge

#: Environment variables that point at the real datasets. Precedence: the environment variable, when
#: set and not empty, wins over ``data.roots`` of the preset (``ExperimentConfig.dataset_root_origin``
#: says which one a run uses and why; ``ddval reproduce``/``submit`` print it).
ROOT_ENV_VARS: dict[str, str] = {
    "nih": "DDVAL_NIH_ROOT",
    "chexpert": "DDVAL_CHEXPERT_ROOT",
    "mimic": "DDVAL_MIMIC_ROOT",
}
#: The folder of MIMIC-IV's ``hosp/patients.csv`` (sex and age of MIMIC-CXR patients; ``ddval.data.mimic``).
MIMIC_IV_ROOT_ENV = "DDVAL_MIMIC_IV_ROOT"
#: Environment variables holding paths: a relative one means relative to where the command runs
#: (:func:`anchor_path_env`), not to ``notebooks/``, where the notebooks a command runs start.
PATH_ENV_VARS: tuple[str, ...] = (*ROOT_ENV_VARS.values(), MIMIC_IV_ROOT_ENV, "DDVAL_CONFIGS", "DDVAL_RESULTS")


def repo_root() -> Path:
    """The checkout this package lives in (``lib/ddval`` -> repository root)."""
    return Path(__file__).resolve().parents[2]


def configs_dir() -> Path:
    """Folder of the preset files (``DDVAL_CONFIGS`` overrides)."""
    return Path(os.environ.get("DDVAL_CONFIGS", repo_root() / "configs"))


def anchor_path_env(cwd: str | os.PathLike | None = None) -> dict[str, str]:
    """Make the relative paths in the variables :data:`PATH_ENV_VARS` of ``os.environ`` absolute, against
    ``cwd`` (default: the current directory); returns what changed. Every ``ddval`` command calls it
    first: the notebooks it runs start in ``notebooks/`` (a SLURM job wherever the cluster starts it),
    where ``DDVAL_NIH_ROOT=data/nih`` would name another folder than the one the user meant."""
    base = Path(cwd) if cwd is not None else Path.cwd()
    changed = {}
    for var in PATH_ENV_VARS:
        value = os.environ.get(var)
        if value and not Path(value).expanduser().is_absolute():
            changed[var] = os.environ[var] = str(base / Path(value).expanduser())
    return changed


def available_presets() -> list[str]:
    """Names of the preset files in :func:`configs_dir`."""
    return sorted(p.stem for p in configs_dir().glob("*.yaml"))


def is_preset_file(preset: str | os.PathLike) -> bool:
    """True when ``preset`` names a YAML file rather than a preset of :func:`configs_dir`."""
    return str(preset).endswith((".yaml", ".yml"))


def preset_path(preset: str | os.PathLike, relative_to: Path | None = None) -> Path:
    """The file of a preset name or YAML path (a relative path is tried against ``relative_to``,
    the folder of the preset that ``extends:`` it, then the working directory)."""
    if is_preset_file(preset):
        candidates = [Path(preset).expanduser()]
        if relative_to is not None and not candidates[0].is_absolute():
            candidates.insert(0, relative_to / candidates[0])
        for candidate in candidates:
            if candidate.exists():
                return candidate.resolve()
        raise ConfigError(f"preset file {str(preset)!r} not found (looked for {[str(c) for c in candidates]})")
    path = configs_dir() / f"{preset}.yaml"
    if not path.exists():
        known = ", ".join(available_presets()) or "(none)"
        raise ConfigError(f"no preset {str(preset)!r} (looked for {path}); known presets: {known}")
    return path


def _anchor_roots(raw: dict[str, Any], folder: Path) -> None:
    """Make relative ``data.roots`` absolute, relative to the preset file's folder (the notebooks
    run in ``notebooks/``, so a path relative to the working directory would change meaning)."""
    roots = (raw.get("data") or {}).get("roots") if isinstance(raw.get("data"), dict) else None
    if isinstance(roots, dict):
        for name, value in roots.items():
            if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
                roots[name] = str((folder / value).resolve())


def read_with_extends(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    if path in seen:
        raise ConfigError(f"{path}: circular 'extends' chain {[str(p) for p in seen]}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    _anchor_roots(raw, path.parent)
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    base = read_with_extends(preset_path(parent, relative_to=path.parent), seen + (path,))
    base.pop("preset", None)
    return merge(base, raw)
