"""`make test` for a reviewer without root (issue 17, case 11): tools/slurm-up.sh died "must run as root".
Run as a real user without root (as root: `nobody`, through runuser), it starts a SLURM cluster of that
user's own, on ports of its own beside the root cluster, and runs a job as that user."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm
REPO = Path(__file__).parents[2]


def free_port_pair() -> int:
    for port in range(30000, 31000, 2):
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair")


def as_user(command: list[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    """``command`` as a user without root: ``nobody`` when we are root, else ourselves."""
    prefix = ["runuser", "-u", "nobody", "--"] if os.getuid() == 0 else []
    return subprocess.run(
        [*prefix, "env", *[f"{k}={v}" for k, v in env.items()], *command],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd="/",
    )


@pytest.fixture
def open_tmp():
    """A temporary folder other users can enter (pytest's own is private to us)."""
    folder = Path(tempfile.mkdtemp(prefix="ddval-slurm-user-"))
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_slurm_up_without_root_starts_a_cluster_of_the_user(open_tmp):
    if shutil.which("sinfo") is None:
        pytest.fail("SLURM is not installed (the SLURM tests need it; see tools/slurm-up.sh)")
    tmp_path = open_tmp
    base = tmp_path / "slurm"
    base.mkdir()
    user = "nobody" if os.getuid() == 0 else pwd.getpwuid(os.getuid()).pw_name
    if os.getuid() == 0:
        shutil.chown(base, user="nobody")
    for name in ("slurm-user-up.sh", "slurm-common.sh"):  # copies nobody can read wherever the checkout is
        shutil.copy(REPO / "tools" / name, tmp_path / name)
        os.chmod(tmp_path / name, 0o755)
    script = tmp_path / "slurm-user-up.sh"
    env = {
        "DDVAL_SLURM_DIR": str(base),
        "DDVAL_SLURM_PORT": str(free_port_pair()),
        "HOME": str(base),
        "PATH": os.environ["PATH"],
    }
    try:
        up = as_user(["bash", str(script)], env)
        assert up.returncode == 0, up.stdout + up.stderr
        conf = up.stdout.strip().splitlines()[-1]
        assert conf == str(base / "slurm.conf")
        text = Path(conf).read_text()
        assert f"SlurmUser={user}" in text and f"SlurmdUser={user}" in text and "AuthType=auth/none" in text
        env["SLURM_CONF"] = conf
        out = base / "job.out"
        job = as_user(["sbatch", "--parsable", f"--output={out}", "--wrap", "id -un"], env)
        assert job.returncode == 0, job.stderr
        deadline = time.monotonic() + 120
        while not (out.exists() and out.read_text().strip()):
            assert time.monotonic() < deadline, as_user(["scontrol", "show", "job", job.stdout.strip()], env).stdout
            time.sleep(0.5)
        assert out.read_text().strip() == user
        again = as_user(["bash", str(script)], env)  # idempotent: the node is up, nothing restarts
        assert again.returncode == 0 and "starting" not in again.stderr, again.stderr
        # auth/none: while it runs, whoever reaches its ports runs jobs as this user; it can be stopped
        assert as_user(["bash", str(script), "--running"], env).returncode == 0
        pids = [int((base / "run" / f"{name}.pid").read_text()) for name in ("slurmctld", "slurmd")]
        stop = as_user(["bash", str(script), "--stop"], env)
        assert stop.returncode == 0 and "stopped" in stop.stderr, stop.stdout + stop.stderr
        assert [pid for pid in pids if Path(f"/proc/{pid}").exists()] == []
        assert as_user(["bash", str(script), "--running"], env).returncode == 1
    finally:
        for name in ("slurmd", "slurmctld"):
            pid = base / "run" / f"{name}.pid"
            if pid.exists():
                subprocess.run(["kill", pid.read_text().strip()], check=False)
