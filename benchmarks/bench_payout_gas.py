"""Payout cost, measured in full: a per-recipient transfer loop vs Merkle claims for 10 ... 10,000 recipients.

Notebook 05 measures the same table within its time budget on the embedded chain, sampling the
largest counts. This script executes *every* loop transaction and *every* claim, on anvil (started
here from node_modules, on a free loopback port), and writes ``benchmarks/payout_gas.csv``:

    .venv/bin/python benchmarks/bench_payout_gas.py   # ~11,000 transactions: 10-30 min on 2 cores

Gas per transaction is identical on anvil and on the embedded eth-tester chain (checked by
tests/economy/test_flow.py for the whole economy flow).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

from ddval.economy import chain as chain_mod  # noqa: E402
from ddval.economy.scaling import measure_payout_scaling  # noqa: E402

COUNTS = (10, 100, 1000, 10000)


def start_anvil() -> tuple[str, subprocess.Popen]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [str(ROOT / "node_modules" / ".bin" / "anvil"), "--host", "127.0.0.1", "--port", str(port), "--silent"]
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            chain_mod.connect(url, timeout=1)
            return url, proc
        except chain_mod.ChainError:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit("anvil did not start (run `make env`)")


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally below: stop anvil
    url, proc = start_anvil()
    try:
        chain = chain_mod.connect(url, n_accounts=3)
        client = chain.w3.client_version
        start = time.perf_counter()
        table = measure_payout_scaling(chain, COUNTS, loop_all_up_to=10**9, claims_all_up_to=10**9)
        seconds = time.perf_counter() - start
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    table.to_csv(ROOT / "benchmarks" / "payout_gas.csv", index=False)
    print(table.to_string(index=False))
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\n{client}; every transaction executed; {seconds:.0f} s (load average {load}: gas is exact, the time is not)"
    )


if __name__ == "__main__":
    main()
