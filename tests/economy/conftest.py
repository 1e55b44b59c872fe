"""Fixtures of the token-economy tests: the embedded chain, a real anvil node, a real IPFS daemon.

anvil (``node_modules/.bin/anvil``, from npm) and the py-ipfs-lite daemon (``.venv/bin/py-ipfs-lite``)
are started once per session on free loopback ports and stopped at the end. They are real
components, not mocks: when a binary is missing the fixture *fails* with the command that installs
it (``make env``); it never skips.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # econ_helpers.py, econ_stage_inputs.py

from econ_helpers import _stop, _wait, free_port, start_anvil  # noqa: E402

from ddval.config import repo_root  # noqa: E402
from ddval.economy import chain as chain_mod  # noqa: E402


@pytest.fixture(scope="session")
def anvil(tmp_path_factory) -> str:
    """URL of a running anvil (chain id 31337, the standard dev accounts)."""
    url, proc = start_anvil(tmp_path_factory.mktemp("anvil"))
    yield url
    _stop(proc)


@pytest.fixture(scope="session")
def ipfs_daemon(tmp_path_factory) -> str:
    """API address (``http://127.0.0.1:PORT``) of a running py-ipfs-lite daemon (offline, in memory)."""
    binary = Path(sys.prefix) / "bin" / "py-ipfs-lite"
    if not binary.exists():
        binary = repo_root() / ".venv" / "bin" / "py-ipfs-lite"
    if not binary.exists():
        pytest.fail(f"{binary} not found: run `make env` (pip installs py-ipfs-lite==0.1.1)")
    port = free_port()
    tmp = tmp_path_factory.mktemp("ipfs")
    log = tmp / "daemon.log"
    cmd = [
        str(binary),
        "daemon",
        "--offline",
        "--no-ipni",
        "--api",
        "--api-host",
        "127.0.0.1",
        "--api-port",
        str(port),
        "--blockstore-type",
        "memory",
        "--port",
        str(free_port()),
    ]
    proc = subprocess.Popen(
        cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=tmp, env={**os.environ, "HOME": str(tmp)}
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        with urllib.request.urlopen(
            urllib.request.Request(url + "/api/v0/version", b"", method="POST"), timeout=2
        ) as r:
            return "Version" in json.loads(r.read())

    _wait(up, "py-ipfs-lite daemon", proc, log, timeout=90)
    yield url
    _stop(proc)


@pytest.fixture(scope="module")
def chain() -> chain_mod.Chain:
    """A fresh embedded chain per test module (10 funded dev accounts)."""
    return chain_mod.connect(n_accounts=10)


@pytest.fixture
def snapshot(chain):
    """Run the test on top of the module's state and roll every change back afterwards."""
    snap = chain.w3.provider.ethereum_tester.take_snapshot()
    yield chain
    chain.w3.provider.ethereum_tester.revert_to_snapshot(snap)
