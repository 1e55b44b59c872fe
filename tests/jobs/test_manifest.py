"""Manifest generation, file round trip and task hashing (fast; no notebook is executed)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from ddval import layout
from ddval.config import load_config
from ddval.jobs.manifest import STAGES, Task, build_manifest, coalition_ids, read_manifest, write_manifest

REPO = Path(__file__).parents[2]
FIXTURE_NOTEBOOKS = Path(__file__).parent / "fixtures" / "notebooks"
TINY = Path(__file__).parent / "fixtures" / "tiny.yaml"


def by_id(tasks: list[Task]) -> dict[str, Task]:
    return {t.task_id: t for t in tasks}


def test_coalitions_in_config_order_smallest_first():
    cfg = load_config("demo")
    assert coalition_ids(cfg.setting("noniid")) == [
        "nih",
        "chexpert",
        "mimic",
        "nih+chexpert",
        "nih+mimic",
        "chexpert+mimic",
        "nih+chexpert+mimic",
    ]
    assert coalition_ids(cfg.setting("labelflip")) == ["flip00+flip05+flip10+flip15+flip20+flip25"]


def test_demo_manifest_one_train_task_per_setting(tmp_path):
    cfg = load_config("demo")
    tasks = build_manifest(cfg, tmp_path)
    counts = {s: sum(t.stage == s for t in tasks) for s in STAGES}
    n = len(cfg.seeds) * len(cfg.settings)
    replicates = len(cfg.seeds) * sum(layout.setting_replicates(cfg, s.name) for s in cfg.settings)
    assert counts == {
        "index": 1,
        "resize": 1,
        "train": replicates,  # one task per setting and replicate (the demo's non-IID setting trains replicates)
        "valuation-shard": 0,
        "valuation": n,
        "economy": 1,
        "figures": 1,
    }
    train = by_id(tasks)["train/seed-1/iid"]
    assert train.parameters == {
        "preset": "demo",
        "seed": 1,
        "setting": "iid",
        "coalition": None,
        "replicate": 0,
        "results_root": str(tmp_path),
    }
    assert train.output == str(tmp_path / "demo" / "notebooks" / "seed-1" / "iid" / "03_train.ipynb")
    assert train.notebook.endswith("notebooks/03_train.ipynb") and Path(train.notebook).is_absolute()
    assert train.kernel == "ddval"


def test_paper_manifest_per_coalition_and_shards(tmp_path):
    cfg = load_config("paper_noniid")
    tasks = build_manifest(cfg, tmp_path)
    ids = by_id(tasks)
    seeds, shards = len(cfg.seeds), cfg.valuation.shards
    assert sum(t.stage == "train" for t in tasks) == seeds * 7
    assert sum(t.stage == "valuation-shard" for t in tasks) == seeds * shards
    shard = ids[f"valuation-shard/seed-3/noniid/2of{shards}"]
    assert (shard.parameters["shard"], shard.parameters["n_shards"]) == (2, shards)
    assert shard.parameters["methods"] == list(cfg.valuation.methods)
    reduce = ids["valuation/seed-3/noniid"]
    assert reduce.parameters["shard"] is None and reduce.parameters["n_shards"] == shards
    assert set(reduce.depends_on) == {f"valuation-shard/seed-3/noniid/{i}of{shards}" for i in range(shards)}
    assert set(shard.depends_on) == {f"train/seed-3/noniid/{c}" for c in coalition_ids(cfg.setting("noniid"))}
    assert ids["train/seed-3/noniid/nih+mimic"].parameters["coalition"] == "nih+mimic"


@pytest.mark.parametrize("per", ["coalition", "setting"])
def test_one_train_task_per_replicate_and_the_valuation_waits_for_all(tmp_path, per):
    one = build_manifest(load_config("paper_noniid", {"slurm": {"train_tasks": per}}), tmp_path)
    cfg = load_config("paper_noniid", {"train": {"replicates": 3}, "slurm": {"train_tasks": per}})
    tasks = build_manifest(cfg, tmp_path)
    train = [t for t in tasks if t.stage == "train" and t.parameters["seed"] == 3]
    n = 7 if per == "coalition" else 1
    assert len(train) == 3 * n
    assert sorted(t.parameters["replicate"] for t in train) == [0] * n + [1] * n + [2] * n
    first = {t.task_id: t for t in one if t.stage == "train" and t.parameters["seed"] == 3}
    zero = [t for t in train if t.parameters["replicate"] == 0]
    assert [t.task_id for t in zero] == list(first)  # replicate 0 keeps the ids and outputs of one replicate
    assert [t.output for t in zero] == [t.output for t in first.values()]
    two = [t for t in train if t.parameters["replicate"] == 2]
    assert all("/replicate-2" in t.task_id and "/replicate-2/" in t.output for t in two)
    assert len({t.output for t in tasks}) == len(tasks)
    waits = by_id(tasks)[f"valuation-shard/seed-3/noniid/0of{cfg.valuation.shards}"].depends_on
    assert set(waits) == {t.task_id for t in train}  # the valuation depends on every replicate's tasks
    if per == "coalition":
        assert by_id(tasks)["train/seed-3/noniid/replicate-1/nih+mimic"].parameters["coalition"] == "nih+mimic"


@pytest.mark.parametrize("per", ["coalition", "setting"])
def test_with_a_pretrained_backbone_one_train_task_pretrains_and_the_others_wait_for_it(tmp_path, per):
    """train.pretrain: every coalition of every replicate starts from one backbone pretrained per seed and
    setting; tasks run in parallel would each pretrain it again, so all wait for the first train task."""
    plain = load_config("demo", {"train": {"replicates": 3}, "slurm": {"train_tasks": per}})
    cfg = load_config("demo", {"train": {"replicates": 3, "pretrain": "attributes"}, "slurm": {"train_tasks": per}})
    for config, pretrained in ((plain, False), (cfg, True)):
        train = [t for t in build_manifest(config, tmp_path, seeds=(0,)) if t.stage == "train"]
        for setting in ("noniid", "iid"):
            mine = [t for t in train if t.parameters["setting"] == setting]
            first, rest = mine[0], mine[1:]
            assert first.parameters["replicate"] == 0 and first.depends_on == ("resize",)
            assert len(rest) == (3 * 7 - 1 if per == "coalition" else 2)
            expected = ("resize", first.task_id) if pretrained else ("resize",)
            assert all(t.depends_on == expected for t in rest), setting


def test_a_setting_with_its_own_replicates_trains_only_those(tmp_path):
    cfg = load_config("demo")
    cfg = dataclasses.replace(
        cfg, settings=tuple(dataclasses.replace(s, replicates=3 if s.name == "iid" else None) for s in cfg.settings)
    )
    train = [t.parameters for t in build_manifest(cfg, tmp_path, seeds=(0,)) if t.stage == "train"]
    replicates = {s.name: sorted({p["replicate"] for p in train if p["setting"] == s.name}) for s in cfg.settings}
    assert replicates == {"noniid": [0], "iid": [0, 1, 2], "labelflip": [0]}


def test_only_settings_with_exact_values_train_replicates(tmp_path):
    from ddval.layout import setting_replicates

    cfg = load_config("demo", {"train": {"replicates": 2}})
    tasks = build_manifest(cfg, tmp_path, seeds=(0,))
    train = [t.parameters for t in tasks if t.stage == "train"]
    per_setting = {
        s: sorted(p["replicate"] for p in train if p["setting"] == s) for s in ("noniid", "iid", "labelflip")
    }
    assert per_setting == {
        "noniid": list(range(setting_replicates(cfg, "noniid"))),  # its own count, when the preset sets one
        "iid": [0, 1],
        "labelflip": [0],
    }  # the grand coalition only: no ground truth


def test_economy_first_seed_first_setting_and_figures_last(tmp_path):
    secret = "https://rpc.example.org/v3/SECRET-API-KEY"
    cfg = load_config("demo", {"economy": {"rpc_url": secret, "chain_id": 11155111}})
    tasks = build_manifest(cfg, tmp_path, seeds=(2, 1))
    economy = [t for t in tasks if t.stage == "economy"]
    assert [t.task_id for t in economy] == ["economy/seed-2/noniid"]
    # the RPC URL (maybe holding an API key) stays in the preset: the notebook reads it from there
    assert economy[0].parameters == {
        "preset": "demo",
        "seed": 2,
        "setting": "noniid",
        "n_individuals": cfg.economy.n_individuals,
        "results_root": str(tmp_path),
    }
    assert not any("SECRET" in repr(t.parameters) for t in tasks)
    figures = tasks[-1]
    assert figures.stage == "figures" and figures.parameters == {"preset": "demo", "results_root": str(tmp_path)}
    assert set(figures.depends_on) == {t.task_id for t in tasks if t.stage in {"valuation", "economy"}}


def test_rows_are_topological_and_grouped_by_stage(tmp_path):
    tasks = build_manifest(load_config("paper_iid"), tmp_path)
    assert [t.row for t in tasks] == list(range(len(tasks)))
    position = {t.task_id: t.row for t in tasks}
    assert all(position[d] < t.row for t in tasks for d in t.depends_on)
    stages = [STAGES.index(t.stage) for t in tasks]
    assert stages == sorted(stages)  # each stage is one contiguous block of rows (one --array range)


def test_outputs_are_unique_and_under_the_notebooks_folder(tmp_path):
    tasks = build_manifest(load_config("paper_iid"), tmp_path)
    outputs = [t.output for t in tasks]
    assert len(set(outputs)) == len(outputs)
    assert all(Path(o).is_relative_to(tmp_path / "paper_iid" / "notebooks") for o in outputs)


def test_manifest_file_round_trip_and_errors(tmp_path):
    tasks = build_manifest(load_config("demo"), tmp_path)
    path = write_manifest(tasks, tmp_path / "m.jsonl")
    assert len(path.read_text().splitlines()) == len(tasks)
    assert read_manifest(path) == tasks
    lines = path.read_text().splitlines()
    broken = json.loads(lines[3])
    del broken["output"]
    lines[3] = json.dumps(broken)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"m\.jsonl, line 4: missing field\(s\) \['output'\]"):
        read_manifest(path)
    with pytest.raises(ValueError, match=f"row 0 has row number {len(tasks) - 1}"):
        write_manifest(list(reversed(tasks)), tmp_path / "bad.jsonl")
    backwards = [dataclasses.replace(t, row=i) for i, t in enumerate(reversed(tasks))]
    with pytest.raises(
        ValueError,
        match=r"bad\.jsonl: row 0 \(figures\) depends on \['valuation/seed-0/noniid', .*not listed before it",
    ):
        write_manifest(backwards, tmp_path / "bad.jsonl")


def test_hash_ignores_results_root_and_slurm_resources(tmp_path):
    a = build_manifest(load_config("demo"), tmp_path / "a")
    b = build_manifest(load_config("demo", {"slurm": {"mem": "99G", "partition": "x"}}), tmp_path / "b")
    assert [t.task_hash for t in a] == [t.task_hash for t in b]
    assert len({t.task_hash for t in a}) == len(a)  # every task has its own hash


def test_hash_changes_only_downstream_of_the_edited_section(tmp_path):
    base = by_id(build_manifest(load_config("demo"), tmp_path))
    edited = by_id(build_manifest(load_config("demo", {"economy": {"n_individuals": 7}}), tmp_path))
    changed = {i for i in base if base[i].task_hash != edited[i].task_hash}
    assert changed == {"economy/seed-0/noniid", "figures"}
    edited = by_id(build_manifest(load_config("demo", {"valuation": {"k": 5}}), tmp_path))
    changed = {base[i].stage for i in base if base[i].task_hash != edited[i].task_hash}
    assert changed == {"valuation", "economy", "figures"}


def test_hash_covers_the_notebook_source(tmp_path):
    notebooks = Path(shutil.copytree(FIXTURE_NOTEBOOKS, tmp_path / "nb"))
    cfg = load_config(TINY)
    before = by_id(build_manifest(cfg, tmp_path, preset=TINY, notebooks_dir=notebooks))
    (notebooks / "05_token_economy.ipynb").write_text(
        (notebooks / "05_token_economy.ipynb").read_text().replace("paid", "paid:")
    )
    after = by_id(build_manifest(cfg, tmp_path, preset=TINY, notebooks_dir=notebooks))
    assert {i for i in before if before[i].task_hash != after[i].task_hash} == {"economy/seed-0/noniid"}


def test_preset_given_as_a_file_outside_configs_is_passed_as_its_path(tmp_path):
    cfg = load_config(TINY)
    task = build_manifest(cfg, tmp_path, preset=TINY, notebooks_dir=FIXTURE_NOTEBOOKS)[0]
    assert task.parameters["preset"] == str(TINY.resolve())
    demo = build_manifest(load_config("demo"), tmp_path, preset=REPO / "configs" / "demo.yaml")[0]
    assert demo.parameters["preset"] == "demo"


def test_task_json_is_plain_data(tmp_path):
    task = build_manifest(load_config("demo"), tmp_path)[2]
    assert Task.from_json(task.to_json()) == task
    assert json.loads(task.to_json())["depends_on"] == list(task.depends_on)
    assert dataclasses.asdict(task)["row"] == 2


@pytest.mark.parametrize("preset", ["demo", "paper_noniid", "labelflip"])
def test_coalition_ids_match_the_training_stage(preset):
    """The manifest names coalitions without importing torch; it must agree with ddval.train."""
    from ddval.train import coalition_id, setting_coalitions

    for setting in load_config(preset).settings:
        assert coalition_ids(setting) == [coalition_id(c) for c in setting_coalitions(setting)]
