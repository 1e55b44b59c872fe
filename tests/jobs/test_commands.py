"""sbatch commands (dry run), resources, and the CLI's messages (fast; nothing is submitted)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from ddval.config import load_config
from ddval.jobs.manifest import build_manifest
from ddval.jobs.plan import plan
from ddval.jobs.slurm import array_spec, render_script, resources, stage_arrays

REPO = Path(__file__).parents[2]


@pytest.mark.parametrize(
    ("rows", "k", "spec"),
    [
        ([0], None, "0"),
        ([2, 3, 4, 5], None, "2-5"),
        ([7, 1, 2, 3, 9, 10], 4, "1-3,7,9-10%4"),
        ([5, 5, 6], None, "5-6"),
    ],
)
def test_array_spec(rows, k, spec):
    assert array_spec(rows, k) == spec


def test_resources_layer_preset_stage_and_command_line():
    cfg = load_config("paper_noniid")
    assert resources(cfg, "train") == {
        "partition": None,
        "account": None,
        "cpus_per_task": 8,
        "mem": "64G",
        "gpus": 1,
        "time": "72:00:00",
        "max_parallel": None,
    }
    assert resources(cfg, "figures")["gpus"] == 0 and resources(cfg, "figures")["time"] == "01:00:00"
    assert resources(cfg, "figures", {"time": "00:10:00", "account": "lab"})["time"] == "00:10:00"
    bad = load_config("demo", {"slurm": {"stages": {"trian": {"gpus": 1}}}})
    with pytest.raises(ValueError, match=r"slurm\.stages has unknown stage\(s\) \['trian'\]"):
        resources(bad, "train")


def _commands(script: str) -> dict[str, list[str]]:
    """stage -> argv of its sbatch line in a rendered submit script."""
    out = {}
    for line in script.splitlines():
        m = re.match(r"JOB_(\w+)=\$\((sbatch .*)\)$", line)
        if m:
            out[m.group(1)] = shlex.split(m.group(2))
    return out


def test_chain_of_arrays_with_afterok(tmp_path):
    cfg = load_config("paper_noniid")
    the_plan = plan(build_manifest(cfg, tmp_path))
    arrays = stage_arrays(
        the_plan, cfg, tmp_path / "logs", overrides={"partition": "gpu", "max_parallel": 10}, extra_args=("--qos=long",)
    )
    cmds = _commands(render_script(arrays, tmp_path / "m.jsonl", python="/env/bin/python"))
    assert list(cmds) == ["index", "resize", "train", "valuation_shard", "valuation", "economy", "figures"]
    opts = {
        stage: {a.split("=", 1)[0]: a.split("=", 1)[1] for a in argv if a.startswith("--") and "=" in a}
        for stage, argv in cmds.items()
    }
    assert opts["train"]["--array"] == "2-85%10"  # 12 seeds x 7 coalitions
    assert opts["valuation_shard"]["--array"] == f"86-{85 + 12 * cfg.valuation.shards}%10"
    assert opts["resize"]["--dependency"] == "afterok:${JOB_index}"
    assert opts["valuation"]["--dependency"] == "afterok:${JOB_valuation_shard}"
    assert opts["figures"]["--dependency"] == "afterok:${JOB_valuation}:${JOB_economy}"
    assert "--dependency" not in opts["index"]
    assert opts["train"]["--gres"] == "gpu:1" and "--gres" not in opts["figures"]
    assert opts["train"]["--mem"] == "64G" and opts["index"]["--mem"] == "16G"
    assert all(
        o["--partition"] == "gpu" and o["--qos"] == "long" and o["--kill-on-invalid-dep"] == "yes"
        for o in opts.values()
    )
    assert all("--account" not in o for o in opts.values())
    assert opts["economy"]["--output"] == f"{tmp_path / 'logs'}/economy-%A_%a.out"
    for argv in cmds.values():  # the job script gets the manifest, the checkout and the interpreter
        assert argv[-4:] == [
            str(REPO / "slurm" / "papermill_job.sh"),
            str(tmp_path / "m.jsonl"),
            str(REPO),
            "/env/bin/python",
        ]


def test_only_pending_rows_are_submitted(tmp_path):
    cfg = load_config("demo")
    tasks = build_manifest(cfg, tmp_path)
    the_plan = plan(tasks)
    partial = type(the_plan)(tasks, [t for t in tasks if t.stage in {"valuation", "figures"}], {})
    arrays = stage_arrays(partial, cfg, tmp_path)
    assert [(a.stage, a.after) for a in arrays] == [("valuation", ()), ("figures", ("valuation",))]


def test_cli_dry_run_prints_the_commands_and_submits_nothing(tmp_path, run_ddval):
    proc = run_ddval(
        "submit",
        "--preset",
        "demo",
        "--backend",
        "slurm",
        "--dry-run",
        "--results",
        tmp_path,
        "--account",
        "lab42",
        "--time",
        "00:20:00",
    )
    assert proc.returncode == 0, proc.stderr
    cmds = _commands(proc.stdout)
    assert list(cmds) == ["index", "resize", "train", "valuation", "economy", "figures"]
    assert all("--account=lab42" in argv and "--time=00:20:00" in argv for argv in cmds.values())
    assert "dry run: nothing submitted" in proc.stdout
    assert not (tmp_path / "demo" / "slurm").exists()  # no submission folder, no jobs
    assert (tmp_path / "demo" / "manifest.jsonl").exists()


def test_cli_local_dry_run_lists_pending_tasks(tmp_path, run_ddval):
    proc = run_ddval(
        "submit", "--preset", "demo", "--backend", "local", "--dry-run", "--results", tmp_path, "--seeds", "1"
    )
    assert proc.returncode == 0, proc.stderr
    # 2 data + 3 settings x (train + valuation) + 2 more replicates of non-IID's training + economy + figures
    assert "12 of 12 tasks to run (index 1, resize 1, train 5, valuation 3, economy 1, figures 1)" in proc.stdout
    assert "train/seed-1/labelflip  (missing)" in proc.stdout


def test_real_data_preset_lists_what_is_missing(tmp_path, run_ddval):
    env = {"DDVAL_NIH_ROOT": str(tmp_path / "nope"), "DDVAL_CHEXPERT_ROOT": "", "DDVAL_MIMIC_ROOT": ""}
    proc = run_ddval("reproduce", "--preset", "paper_noniid", "--results", tmp_path, env=env)
    assert proc.returncode == 2
    err = proc.stderr
    assert f"nih: {tmp_path / 'nope'} (from $DDVAL_NIH_ROOT) is not a folder" in err
    assert "chexpert: not configured; set DDVAL_CHEXPERT_ROOT" in err
    assert "mimic: not configured; set DDVAL_MIMIC_ROOT" in err
    assert not (tmp_path / "paper_noniid" / "notebooks").exists()  # nothing ran


def test_the_run_prints_each_data_root_and_why(tmp_path, run_ddval):
    """Issue 17, case 3: DDVAL_NIH_ROOT silently won over data.roots; now the run says which root it
    reads for each dataset and why."""
    (tmp_path / "env_nih").mkdir()
    (tmp_path / "cx").mkdir()
    preset = tmp_path / "mine.yaml"
    preset.write_text("extends: paper_noniid\ndata:\n  roots: {nih: preset_nih, chexpert: cx}\n")
    env = {"DDVAL_NIH_ROOT": str(tmp_path / "env_nih"), "DDVAL_CHEXPERT_ROOT": "", "DDVAL_MIMIC_ROOT": ""}
    proc = run_ddval(
        "submit", "--preset", preset, "--backend", "local", "--dry-run", "--results", tmp_path / "r", env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert "DDVAL_<DATASET>_ROOT takes precedence over data.roots" in proc.stdout
    assert (
        f"nih: {tmp_path / 'env_nih'} (from $DDVAL_NIH_ROOT; it takes precedence over data.roots.nih = "
        f"{tmp_path / 'preset_nih'})"
    ) in proc.stdout
    preset_root = f"chexpert: {tmp_path / 'cx'} (from data.roots.chexpert of preset 'mine' ($DDVAL_CHEXPERT_ROOT is"
    assert preset_root + " not set))" in proc.stdout
    assert "mimic: - (not configured: set $DDVAL_MIMIC_ROOT or data.roots.mimic)" in proc.stdout
    assert "mimic: not configured; set DDVAL_MIMIC_ROOT" in proc.stderr  # dry run: a warning, not an error


def test_cli_errors_are_one_line_messages(tmp_path, run_ddval):
    proc = run_ddval("reproduce", "--preset", "no_such_preset", "--results", tmp_path)
    assert proc.returncode == 2 and "ddval: error: no preset 'no_such_preset'" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_ddval("run-task", tmp_path / "missing.jsonl", "0")
    assert proc.returncode == 2 and "manifest not found" in proc.stderr


def test_job_script_refuses_to_run_outside_an_array(tmp_path):
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    proc = subprocess.run(
        ["bash", str(REPO / "slurm" / "papermill_job.sh"), str(tmp_path / "m.jsonl")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 2 and "run me as a job array" in proc.stderr
    proc = subprocess.run(
        ["bash", str(REPO / "slurm" / "papermill_job.sh"), str(tmp_path / "m.jsonl"), str(tmp_path)],
        capture_output=True,
        text=True,
        env={**env, "SLURM_ARRAY_TASK_ID": "0"},
    )
    assert proc.returncode == 2 and f"no Python environment at {tmp_path}/.venv/bin/python" in proc.stderr


@pytest.fixture
def small_fs(tmp_path):
    """``mount(kind)``: a real tmpfs at a new folder, read-only (``"ro"``) or filled up (``"full"``)."""
    import subprocess

    mounted = []

    def mount(kind: str) -> Path:
        point = tmp_path / kind
        point.mkdir()
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(point)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            pytest.skip(f"mounting a tmpfs needs root (CI runs as root): {proc.stderr.strip()}")
        mounted.append(point)
        if kind == "ro":
            subprocess.run(["mount", "-o", "remount,ro", str(point)], check=True)
        else:
            with open(point / "filler", "wb", buffering=0) as fh, pytest.raises(OSError, match="No space left"):
                while True:
                    fh.write(b"\0" * 4096)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], check=True)


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("ro", "Read-only file system (the results folder is on a read-only"),
        ("full", "No space left on device (the disk holding the results folder"),
    ],
)
def test_unwritable_results_folder_is_one_line_naming_the_path(small_fs, run_ddval, kind, says):
    """Issue 17, case 9: a read-only or full results folder ended in a raw OSError traceback."""
    results = small_fs(kind) / "results"
    if kind == "full":
        (results / "demo").mkdir(parents=True)  # directories still fit; file contents do not
    proc = run_ddval("reproduce", "--preset", "demo", "--results", results)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"ddval: error: {results}") and says in lines[0]
    assert "choose another with --results or $DDVAL_RESULTS" in lines[0]


def test_a_relative_data_root_in_the_environment_means_where_the_command_runs(tmp_path):
    """`DDVAL_NIH_ROOT=nih ddval ...` run in the folder that holds nih/ passed the command's check, but
    the index notebook runs in notebooks/, where the relative path names no folder: the task failed."""
    import os
    import subprocess
    import sys

    from ddval.data.synthetic import write_cohort

    write_cohort(
        tmp_path / "raw",
        load_config(
            "demo", {"data": {"synthetic": {"patients": {"nih": 12, "chexpert": 1, "mimic": 1}, "image_size": 16}}}
        ),
    )
    preset = tmp_path / "mine.yaml"
    preset.write_text(
        "extends: demo\nseeds: [0]\ndata: {source: real, datasets: [nih]}\nsettings:\n"
        "  - {name: two, scheme: iid, institutions: [{name: a, datasets: [nih], train: 4, val: 2, "
        "test: 2}, {name: b, datasets: [nih], train: 4, val: 2, test: 2}]}\n"
    )
    env = dict(
        os.environ,
        DDVAL_NIH_ROOT="raw/nih",
        DDVAL_PROGRESS="off",
        PYTHONPATH=os.pathsep.join([str(REPO / "lib"), os.environ.get("PYTHONPATH", "")]),
    )

    def ddval(*args):
        return subprocess.run(
            [sys.executable, "-m", "ddval.cli", *map(str, args)],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=600,
        )

    dry = ddval("submit", "--preset", "mine.yaml", "--results", "results", "--backend", "local", "--dry-run")
    assert f"nih: {tmp_path / 'raw' / 'nih'} (from $DDVAL_NIH_ROOT" in dry.stdout, dry.stdout + dry.stderr
    index = ddval("run-task", tmp_path / "results" / "mine" / "manifest.jsonl", 0)
    assert index.returncode == 0, index.stdout + index.stderr
    assert (tmp_path / "results" / "mine" / "data" / "index.parquet").exists()


def test_output_cut_short_by_the_reader_is_no_error(tmp_path):
    """`ddval status | head -3` ended with "ddval: error: (no path): Broken pipe" on stderr."""
    import os
    import subprocess
    import sys

    tiny = REPO / "tests" / "jobs" / "fixtures" / "tiny.yaml"
    env = dict(
        os.environ,
        DDVAL_PROGRESS="off",
        PYTHONPATH=os.pathsep.join([str(REPO / "lib"), os.environ.get("PYTHONPATH", "")]),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "ddval.cli", "status", "--preset", str(tiny), "--results", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    proc.stdout.close()  # the reader is gone before anything is written, as `head` after its lines
    err = proc.stderr.read()
    assert proc.wait(timeout=120) != 0 and err == "", err


def test_a_slurm_task_locks_its_row_although_it_inherits_the_submitters_lock(tmp_path, run_ddval):
    """SLURM array tasks lock their own manifest row, so a re-submitted copy of a row never runs beside
    it. But sbatch hands the jobs the environment of `ddval submit`, which held the results folder's
    lock: the tasks saw $DDVAL_LOCK_HELD, took it for a runner's, and locked nothing."""
    import os
    import subprocess
    import sys

    from ddval.jobs.manifest import read_manifest
    from ddval.lock import HELD_ENV, task_lock

    tiny = REPO / "tests" / "jobs" / "fixtures" / "tiny.yaml"
    notebooks = REPO / "tests" / "jobs" / "fixtures" / "notebooks"
    assert run_ddval("manifest", "--preset", tiny, "--results", tmp_path, "--notebooks", notebooks).returncode == 0
    manifest = tmp_path / "tiny" / "manifest.jsonl"
    task = read_manifest(manifest)[0]
    env = dict(
        os.environ,
        DDVAL_PROGRESS="off",
        SLURM_ARRAY_JOB_ID="41",
        SLURM_ARRAY_TASK_ID="0",
        **{HELD_ENV: str(tmp_path / "tiny")},
        PYTHONPATH=os.pathsep.join([str(REPO / "lib"), os.environ.get("PYTHONPATH", "")]),
    )
    with task_lock(task.output):  # the same row, already running elsewhere
        proc = subprocess.run(
            [sys.executable, "-m", "ddval.cli", "run-task", str(manifest), "0"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            cwd=REPO,
        )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"task {task.output} is already running" in proc.stderr
