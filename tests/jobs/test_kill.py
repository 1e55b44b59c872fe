"""kill -9 of a runner mid-training (issue 17, case 8): its kernel and training workers go with it, and
the re-run ends with the same bytes as a run that was never interrupted. Real notebooks 01-03 on a
tiny synthetic preset; the runner is `ddval run-task`, as in a SLURM job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ddval import store
from ddval.config import load_config
from ddval.jobs.manifest import read_manifest
from ddval.jobs.task import task_status

pytestmark = pytest.mark.slow

REPO = Path(__file__).parents[2]
PRESET = """\
extends: demo
seeds: [0]
data:
  image_size: 32
  workers: 1
  synthetic: {patients: {nih: 30, chexpert: 30, mimic: 30}, image_size: 48}
settings:
  - name: trio
    scheme: noniid
    institutions:
      - {name: nih, datasets: [nih], train: 20, val: 8, test: 10}
      - {name: chexpert, datasets: [chexpert], train: 20, val: 8, test: 10}
      - {name: mimic, datasets: [mimic], train: 20, val: 8, test: 10}
train: {max_rounds: 6, patience: 6, batch_size: 8, threads: 1, processes: 2, device: cpu,
        small_growth_rate: 4, small_block_config: [1, 1, 1, 1], small_init_features: 8}
slurm: {train_tasks: setting}
"""


def env(tag: str = "") -> dict[str, str]:
    lib = os.pathsep.join([str(REPO / "lib"), os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, PYTHONPATH=lib, DDVAL_PROGRESS="off", DDVAL_TEST_TAG=tag)


def ddval(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ddval.cli", *map(str, args)],
        env=env(),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=1200,
        **kw,
    )


def tagged(tag: str) -> list[int]:
    """Processes whose environment holds ``DDVAL_TEST_TAG=tag`` (every descendant inherits it)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if f"\0DDVAL_TEST_TAG={tag}\0".encode() in b"\0" + Path(f"/proc/{pid}/environ").read_bytes():
                found.append(int(pid))
        except OSError:
            pass
    return found


def prepare(preset: Path, root: Path):
    """Manifest written, stages 01 and 02 run; returns (manifest, train task)."""
    assert ddval("manifest", "--preset", preset, "--results", root).returncode == 0
    manifest = root / "tiny_kill" / "manifest.jsonl"
    tasks = read_manifest(manifest)
    for task in tasks[:2]:
        proc = ddval("run-task", manifest, task.row)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    (train,) = [t for t in tasks if t.stage == "train"]
    return manifest, train


def outputs(root: Path) -> dict[str, bytes]:
    """Every file a coalition record vouches for (timings aside: they differ run to run by nature)."""
    train = root / "tiny_kill" / "seed-0" / "trio" / "train"
    out = {}
    for record in sorted(train.glob("*/.train.done.json")):
        for rel in store.record_outputs(store.read_json(record)):
            if rel != "timing.json":
                out[f"{record.parent.name}/{rel}"] = (record.parent / rel).read_bytes()
    return out


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def test_kill_9_mid_training_then_rerun_gives_the_same_bytes(tmp_path):
    preset = tmp_path / "tiny_kill.yaml"
    preset.write_text(PRESET)
    cfg = load_config(preset)
    assert cfg.train.processes == 2 and len(cfg.settings[0].institutions) == 3  # 7 coalitions in a pool of 2

    clean_manifest, clean_train = prepare(preset, tmp_path / "clean")
    proc = ddval("run-task", clean_manifest, clean_train.row)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    reference = outputs(tmp_path / "clean")
    assert len([k for k in reference if k.endswith("best.pt")]) == 7

    root = tmp_path / "killed"
    manifest, train = prepare(preset, root)
    tag = f"kill-test-{os.getpid()}"
    runner = subprocess.Popen(
        [sys.executable, "-m", "ddval.cli", "run-task", str(manifest), str(train.row)],
        env=env(tag),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )
    grand = root / "tiny_kill" / "seed-0" / "trio" / "train" / "nih+chexpert+mimic"
    deadline = time.monotonic() + 600
    while not (grand / "rounds" / "002").exists():  # the pool is training (the grand coalition goes first)
        assert runner.poll() is None and time.monotonic() < deadline, "training did not start"
        time.sleep(0.2)
    assert len(tagged(tag)) >= 3  # runner, kernel, pool workers
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    deadline = time.monotonic() + 15  # the kernel polls its parent once a second
    while tagged(tag):
        if time.monotonic() > deadline:
            left = tagged(tag)
            for pid in left:
                os.kill(pid, signal.SIGKILL)
            pytest.fail(f"{len(left)} process(es) outlived the killed runner: {left}")
        time.sleep(0.2)
    before = snapshot(root)
    time.sleep(3)
    assert snapshot(root) == before  # nothing writes any more
    assert task_status(train) != "complete"
    assert store.stage_status(grand, "train", {}) in {"missing", "stale"}  # never recorded half done

    proc = ddval("run-task", manifest, train.row)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert task_status(train) == "complete"
    again = outputs(root)
    assert sorted(again) == sorted(reference)
    assert [k for k in reference if again[k] != reference[k]] == []  # byte for byte
