"""The committed contract artifacts are what the pinned compiler makes of the committed sources."""

from __future__ import annotations

import json

import pytest

from ddval.economy import contracts


def test_sources_are_unchanged_since_the_artifacts_were_built():
    """Fast check (no Node): SHA-256 of every source, OpenZeppelin files included."""
    info = json.loads((contracts.artifacts_dir() / "build-info.json").read_text())
    assert info["compiler"]["version"] == contracts.SOLC_VERSION and info["settings"] == contracts.COMPILER_SETTINGS
    now = contracts.current_source_hashes()
    changed = sorted(k for k in info["sources"] if now[k] != info["sources"][k])
    assert not changed, f"sources changed since the last build, run `python contracts/build.py`: {changed}"
    assert set(contracts.source_files()) <= set(info["sources"]), "a new source was never built"


@pytest.fixture(scope="module")
def rebuilt():
    return contracts.compile_contracts()


def test_recompiling_reproduces_the_committed_artifacts_byte_for_byte(rebuilt):
    artifacts, info = rebuilt
    committed = {p.stem for p in contracts.artifacts_dir().glob("*.json")} - {"build-info"}
    assert committed == set(artifacts), "artifacts of removed or new contracts: run `python contracts/build.py`"
    for name, fresh in artifacts.items():
        old = contracts.load_artifact(name)
        assert old.abi == fresh.abi, f"{name}: ABI is stale"
        # Everything is pinned (compiler, settings, sources), so even the metadata hash must match.
        assert contracts.strip_metadata(old.bytecode) == contracts.strip_metadata(fresh.bytecode), (
            f"{name}: code is stale"
        )
        assert old.bytecode == fresh.bytecode and old.deployed_bytecode == fresh.deployed_bytecode, (
            f"{name}: metadata is stale"
        )
    assert info["sources"] == json.loads((contracts.artifacts_dir() / "build-info.json").read_text())["sources"]


def test_strip_metadata_removes_exactly_the_cbor_tail():
    code = contracts.load_artifact("RewardPool").deployed_bytecode
    stripped = contracts.strip_metadata(code)
    tail = bytes.fromhex(code[len(stripped) :])
    assert tail[:3] == bytes.fromhex("a26469") and tail[-2:] == (len(tail) - 2).to_bytes(
        2, "big"
    )  # {"ipfs": ..., "solc": ...}
