"""The task manifest: every notebook run of a preset, one row per task.

The same manifest drives the local runner and the SLURM job arrays (the array index *is* the row
number) and is the provenance record of a run: each row names the notebook, its papermill
parameters, the executed notebook it writes, the tasks it waits for and the hash that decides
whether an earlier run of it is still valid.

Stages, in order (one SLURM job array each)::

    index -> resize -> train -> valuation-shard -> valuation -> economy -> figures

``train`` is one task per coalition (or per setting, ``slurm.train_tasks: setting``) and training
replicate (``train.replicates``; the valuation waits for every replicate);
``valuation-shard`` exists only with ``valuation.shards > 1`` (one task per test shard, then the
``valuation`` task reduces the shard files and runs the rest of the valuation); ``economy`` runs
for the first seed and the first setting; ``figures`` aggregates every seed found under the
results root (its hash also covers the seeds of the run, so a run with more seeds redraws them).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ddval import layout, store
from ddval.config import REPLICATE_PREFIX, ExperimentConfig, SettingConfig, configs_dir, is_preset_file, repo_root

#: Manifest stages in execution order.
STAGES: tuple[str, ...] = ("index", "resize", "train", "valuation-shard", "valuation", "economy", "figures")

#: Notebook of each stage.
NOTEBOOKS: dict[str, str] = {
    "index": "01_index.ipynb",
    "resize": "02_resize.ipynb",
    "train": "03_train.ipynb",
    "valuation-shard": "04_valuation.ipynb",
    "valuation": "04_valuation.ipynb",
    "economy": "05_token_economy.ipynb",
    "figures": "06_figures.ipynb",
}

#: Config sections whose values can change a stage's results. They go into the task hash, so editing
#: e.g. ``economy:`` re-runs only the economy and figures tasks; ``slurm:`` never re-runs anything.
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "index": ("data",),
    "resize": ("data",),
    "train": ("data", "settings", "train"),
    "valuation-shard": ("data", "settings", "train", "valuation"),
    "valuation": ("data", "settings", "train", "valuation"),
    "economy": ("data", "settings", "train", "valuation", "economy"),
    "figures": ("data", "settings", "train", "valuation", "economy"),
}

#: Jupyter kernel every task runs in (installed by ``make env``).
KERNEL = "ddval"


@dataclass(frozen=True)
class Task:
    """One notebook run. Paths are absolute (a SLURM task must not depend on its working directory)."""

    row: int
    task_id: str  # e.g. "train/seed-0/noniid/nih+chexpert"
    stage: str
    notebook: str  # source notebook
    parameters: dict[str, Any]  # papermill parameters
    output: str  # executed notebook
    depends_on: tuple[str, ...]  # task ids
    scope: str  # folder holding the stage completion records this task writes
    task_hash: str  # stage, notebook source, parameters (but results_root), preset name, relevant config
    kernel: str = KERNEL
    label: str = field(default="", compare=False)  # short human description for progress displays

    def to_json(self) -> str:
        """One manifest line."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, line: str, where: str = "manifest") -> "Task":
        """Parse one manifest line; a clear error names ``where`` and the missing field."""
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: not a JSON object: {exc}") from exc
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(n for n in names - set(raw) if n not in {"kernel", "label"})
        if missing:
            raise ValueError(f"{where}: missing field(s) {missing}")
        unknown = sorted(set(raw) - names)
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {unknown}")
        raw["depends_on"] = tuple(raw["depends_on"])
        return cls(**raw)


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------


def coalition_ids(setting: SettingConfig) -> list[str]:
    """Ids of the coalitions a setting trains (:func:`ddval.layout.setting_coalitions`), smallest first
    (``coalitions: grand`` -> only the grand coalition)."""
    return [layout.coalition_id(members) for members in layout.setting_coalitions(setting)]


def preset_parameter(cfg: ExperimentConfig, preset: str | os.PathLike | None = None) -> str:
    """What the notebooks get as ``preset``: the name of a preset in ``configs/``, else the
    absolute path of the YAML file (a preset outside ``configs/`` must still load in the kernel)."""
    if preset is None or not is_preset_file(preset):
        return cfg.preset
    path = Path(preset).resolve()
    return cfg.preset if path == (configs_dir() / f"{cfg.preset}.yaml").resolve() else str(path)


def build_manifest(
    cfg: ExperimentConfig,
    results_root: str | os.PathLike | None = None,
    *,
    preset: str | os.PathLike | None = None,
    seeds: tuple[int, ...] | None = None,
    notebooks_dir: str | os.PathLike | None = None,
) -> list[Task]:
    """All tasks of a preset, in an order that respects every dependency.

    ``preset`` is what was asked for (a name or a YAML path; default ``cfg.preset``), ``seeds``
    restricts the run to some seeds (default: the preset's), ``notebooks_dir`` holds the notebooks
    (default ``<repo>/notebooks``).
    """
    root = layout.results_root(results_root)
    nb_dir = Path(notebooks_dir).resolve() if notebooks_dir else repo_root() / "notebooks"
    seeds = tuple(seeds) if seeds else cfg.seeds
    builder = _Builder(cfg, root, nb_dir, preset_parameter(cfg, preset))
    builder.add("index", "index", {}, "01_index.ipynb", layout.data_dir(cfg, root), (), "index the cohort")
    builder.add("resize", "resize", {}, "02_resize.ipynb", layout.data_dir(cfg, root), ("index",), "resize scans")
    for seed in seeds:
        for setting in cfg.settings:
            builder.add_seed_setting(seed, setting)
    if cfg.settings:
        first = cfg.settings[0].name
        valuation = f"valuation/seed-{seeds[0]}/{first}"
        e = cfg.economy
        # not economy.rpc_url / ipfs_api: the notebook reads them from the preset, and a parameter would write
        # an RPC URL (which may hold an API key) into the manifest and the executed notebook
        params = {"seed": seeds[0], "setting": first, "n_individuals": e.n_individuals}
        builder.add(
            "economy",
            f"economy/seed-{seeds[0]}/{first}",
            params,
            f"seed-{seeds[0]}/{first}/05_token_economy.ipynb",
            layout.setting_dir(cfg, seeds[0], first, root),
            (valuation,),
            f"token economy seed {seeds[0]} {first}",
        )
    everything_before = tuple(t.task_id for t in builder.tasks if t.stage in {"valuation", "economy"}) or ("resize",)
    builder.add(
        "figures",
        "figures",
        {"seeds": list(seeds)},
        "06_figures.ipynb",
        layout.figures_dir(cfg, root),
        everything_before,
        "figures and tables",
    )
    # rows grouped by stage: each stage's job array is one contiguous range of rows
    ordered = sorted(builder.tasks, key=lambda t: (STAGES.index(t.stage), t.row))
    return [dataclasses.replace(t, row=i) for i, t in enumerate(ordered)]


class _Builder:
    """Accumulates tasks with consecutive row numbers and their hashes."""

    def __init__(self, cfg: ExperimentConfig, root: Path, nb_dir: Path, preset: str):
        self.cfg, self.root, self.nb_dir, self.preset = cfg, root, nb_dir, preset
        self.out_dir = layout.preset_dir(cfg, root) / "notebooks"
        self.tasks: list[Task] = []
        self._config = cfg.to_dict()

    def add(
        self,
        stage: str,
        task_id: str,
        params: dict[str, Any],
        output: str,
        scope: Path,
        depends_on: tuple[str, ...],
        label: str,
    ) -> None:
        notebook = self.nb_dir / NOTEBOOKS[stage]
        hash_only = params.pop("seeds", None)  # figures: which seeds it aggregates (hash only)
        parameters = {"preset": self.preset, **params, "results_root": str(self.root)}
        material = {
            "stage": stage,
            "notebook": store.file_sha256(notebook) if notebook.exists() else "missing",
            # where results go and how the preset was named (name or file path) do not change them
            "parameters": {k: v for k, v in parameters.items() if k not in {"results_root", "preset"}},
            "preset": self.cfg.preset,
            "config": {s: self._config[s] for s in STAGE_SECTIONS[stage]},
            "seeds": hash_only,
        }
        self.tasks.append(
            Task(
                row=len(self.tasks),
                task_id=task_id,
                stage=stage,
                notebook=str(notebook),
                parameters=parameters,
                output=str(self.out_dir / output),
                depends_on=tuple(depends_on),
                scope=str(scope),
                task_hash=store.param_hash(material),
                label=label,
            )
        )

    def add_train(
        self, seed: int, setting: SettingConfig, replicate: int, after: tuple[str, ...] = ()
    ) -> tuple[str, ...]:
        """The train tasks of one setting and training replicate (one per coalition, or one for all of
        them with ``slurm.train_tasks: setting``); returns their ids. Replicate 0 keeps the ids and
        outputs of a run without replicates; replicate ``r >= 1`` adds ``replicate-<r>`` to both.
        ``after``: tasks they wait for besides the resize (see :meth:`add_setting_training`)."""
        where = f"seed-{seed}/{setting.name}"
        rep = f"/{REPLICATE_PREFIX}{replicate}" if replicate else ""
        if self.cfg.slurm.train_tasks == "setting":
            train = [(f"train/{where}{rep}", None, f"{where}{rep}/03_train.ipynb")]
        else:
            train = [(f"train/{where}{rep}/{c}", c, f"{where}{rep}/03_train-{c}.ipynb") for c in coalition_ids(setting)]
        params = {"seed": seed, "setting": setting.name, "replicate": replicate}
        for task_id, coalition, output in train:
            label = f"train {where}" + (f" {coalition}" if coalition else " (all coalitions)")
            label += f" replicate {replicate}" if replicate else ""
            scope = layout.setting_dir(self.cfg, seed, setting.name, self.root)
            self.add("train", task_id, {**params, "coalition": coalition}, output, scope, ("resize", *after), label)
            if self.cfg.train.pretrain != "none" and not after:
                after = (task_id,)  # this task pretrains the shared backbone; the others wait for it
        return tuple(t[0] for t in train)

    def add_setting_training(self, seed: int, setting: SettingConfig) -> tuple[str, ...]:
        """Every train task of one setting and seed (all replicates); returns their ids. With
        ``train.pretrain`` the first task pretrains the shared backbone (ddval.train.pretrain) and every
        other one waits for it: run in parallel, each would pretrain the same backbone again."""
        ids: list[str] = []
        for replicate in range(layout.setting_replicates(self.cfg, setting.name)):
            first = (ids[0],) if ids and self.cfg.train.pretrain != "none" else ()
            ids += self.add_train(seed, setting, replicate, first)
        return tuple(ids)

    def add_seed_setting(self, seed: int, setting: SettingConfig) -> None:
        cfg, name = self.cfg, setting.name
        where = f"seed-{seed}/{name}"
        scope = layout.setting_dir(cfg, seed, name, self.root)
        base = {"seed": seed, "setting": name}
        train_ids = self.add_setting_training(seed, setting)
        methods = list(cfg.valuation.methods)
        n = cfg.valuation.shards
        shard_ids: tuple[str, ...] = ()
        if n > 1:
            for i in range(n):
                self.add(
                    "valuation-shard",
                    f"valuation-shard/{where}/{i}of{n}",
                    {**base, "methods": methods, "shard": i, "n_shards": n},
                    f"{where}/04_valuation-shard{i}of{n}.ipynb",
                    scope,
                    train_ids,
                    f"valuation {where} shard {i + 1}/{n}",
                )
            shard_ids = tuple(f"valuation-shard/{where}/{i}of{n}" for i in range(n))
        self.add(
            "valuation",
            f"valuation/{where}",
            {**base, "methods": methods, "shard": None, "n_shards": n},
            f"{where}/04_valuation.ipynb",
            scope,
            shard_ids or train_ids,
            f"valuation {where}" + (f" (reduce {n} shards)" if n > 1 else ""),
        )


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def manifest_path(cfg: ExperimentConfig, results_root: str | os.PathLike | None = None) -> Path:
    """``<root>/<preset>/manifest.jsonl``: the manifest of the latest run or submission."""
    return layout.preset_dir(cfg, results_root) / "manifest.jsonl"


def write_manifest(tasks: list[Task], path: str | os.PathLike) -> Path:
    """Atomically write the manifest as JSON lines (row ``i`` on line ``i + 1``)."""
    _check(tasks, str(path))
    return store.write_text(path, "".join(t.to_json() + "\n" for t in tasks))


def read_manifest(path: str | os.PathLike) -> list[Task]:
    """Read a manifest written by :func:`write_manifest`; errors name the file and line."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: manifest not found (written by `ddval submit` / `ddval reproduce`)")
    lines = path.read_text().splitlines()
    tasks = [Task.from_json(line, f"{path}, line {i + 1}") for i, line in enumerate(lines) if line.strip()]
    _check(tasks, str(path))
    return tasks


def _check(tasks: list[Task], where: str) -> None:
    seen: set[str] = set()
    for i, t in enumerate(tasks):
        if t.row != i:
            raise ValueError(f"{where}: row {i} has row number {t.row}")
        if t.stage not in STAGES:
            raise ValueError(f"{where}: row {i}: unknown stage {t.stage!r}; known: {list(STAGES)}")
        unknown = [d for d in t.depends_on if d not in seen]
        if unknown:
            raise ValueError(f"{where}: row {i} ({t.task_id}) depends on {unknown}, not listed before it")
        if t.task_id in seen:
            raise ValueError(f"{where}: row {i}: duplicate task id {t.task_id!r}")
        seen.add(t.task_id)
