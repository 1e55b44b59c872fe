"""Helpers of the token-economy tests: free ports, real anvil processes, revert assertions.

(A module name of its own, so that it never collides with another test area's helpers.)
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from ddval.config import repo_root
from ddval.economy import chain as chain_mod
from ddval.economy.contracts import load_artifact


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(check, what: str, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with code {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.2)
    proc.terminate()
    pytest.fail(f"{what} did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()  # the node wrapper of anvil forwards SIGTERM to the binary
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _rpc(url: str, method: str, params: list | None = None) -> dict:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=2) as resp:
        return json.loads(resp.read())


def start_anvil(tmp: Path, *extra: str, port: int | None = None) -> tuple[str, subprocess.Popen]:
    """Start anvil on ``port`` (default: a free one); return its URL and process."""
    binary = repo_root() / "node_modules" / ".bin" / "anvil"
    if not binary.exists():
        pytest.fail(f"{binary} not found: run `make env` (npm ci installs @foundry-rs/anvil)")
    port = port or free_port()
    log = tmp / f"anvil-{port}.log"
    proc = subprocess.Popen(
        [str(binary), "--host", "127.0.0.1", "--port", str(port), *extra],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    _wait(lambda: "result" in _rpc(url, "eth_chainId"), "anvil", proc, log)
    return url, proc


@contextlib.contextmanager
def reverts(error: str, *args):
    """Expect a :class:`~ddval.economy.chain.TxFailed` with custom error ``error`` (and ``args``)."""
    with pytest.raises(chain_mod.TxFailed) as info:
        yield info
    assert info.value.error == error, f"expected {error}, got {info.value}"
    if args:
        assert info.value.error_args == args, f"{error}: expected args {args}, got {info.value.error_args}"


def deploy(chain, name: str, *args, sender=None):
    """Deploy a committed artifact from ``sender`` (default: account 0). ``DDVAL_TEST_ARTIFACTS`` names
    another artifact folder (``contracts/mutate.py`` runs the contract tests against each mutant)."""
    artifact = load_artifact(name, os.environ.get("DDVAL_TEST_ARTIFACTS"))
    contract, _ = chain.deploy(artifact, *args, sender=sender or chain.accounts[0])
    return contract


def next_block_at(c, ts: int) -> None:
    """Move the embedded chain's clock so that the next transaction is mined at ``ts``: eth-tester
    mines at the latest timestamp + 1 while the chain is ahead of the wall clock, and a reverting
    transaction mines nothing (so the next one is still at ``ts``)."""
    gap = ts - 1 - c.timestamp()
    assert gap > 0, f"{ts} is not in the future of the latest block"
    c.advance_time(gap)
