"""Solidity contracts: the pinned build (solc-js through py-solc-x), committed artifacts, deployment.

The build is pinned here and only here: compiler version, optimizer, EVM version and the list of
sources. ``python contracts/build.py`` (or :func:`build`) recompiles every contract with the npm
``solc`` package through ``tools/solc-shim.js`` (a native-solc stand-in that py-solc-x drives over
standard JSON) and writes ``contracts/artifacts/<Name>.json`` (ABI, bytecode, deployed bytecode)
plus ``contracts/artifacts/build-info.json`` (compiler, settings, SHA-256 of every source,
OpenZeppelin files included). Python code and the tests load the committed artifacts, so they need
no Node; ``tests/economy/test_artifacts.py`` recompiles and fails when an artifact is stale.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ddval.config import repo_root

#: Compiler pin. The npm package version equals the compiler version (see package.json).
SOLC_VERSION = "0.8.37"

#: Compiler settings that affect the bytecode (they are recorded in the metadata, too).
COMPILER_SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 200},
    # cancun: supported by eth-tester/py-evm, anvil and every public EVM chain ddval targets.
    "evmVersion": "cancun",
    "metadata": {"bytecodeHash": "ipfs"},
}

#: Sources compiled by the build, relative to the repository root. ``contracts/src`` is the
#: economy; ``contracts/test`` holds tokens with hostile or quirky behaviour for the tests.
SOURCE_DIRS = ("contracts/src", "contracts/test")

OUTPUT_SELECTION = ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]


class BuildError(RuntimeError):
    """The contracts could not be compiled (compiler missing or compile errors)."""


@dataclass(frozen=True)
class Artifact:
    """A compiled contract: ABI and creation/runtime bytecode (0x-prefixed hex)."""

    name: str
    source: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str


def artifacts_dir(root: Path | None = None) -> Path:
    """Folder of the committed artifacts."""
    return (root or repo_root()) / "contracts" / "artifacts"


def source_files(root: Path | None = None) -> list[str]:
    """Project Solidity sources (repository-relative POSIX paths, sorted)."""
    root = root or repo_root()
    files = []
    for d in SOURCE_DIRS:
        files += [p.relative_to(root).as_posix() for p in sorted((root / d).glob("*.sol"))]
    return files


def standard_json_input(root: Path | None = None) -> dict[str, Any]:
    """The solc standard-JSON input of the build (project sources inline; OZ via the shim)."""
    root = root or repo_root()
    sources = {name: {"content": (root / name).read_text()} for name in source_files(root)}
    return {
        "language": "Solidity",
        "sources": sources,
        "settings": {**COMPILER_SETTINGS, "outputSelection": {"*": {"*": OUTPUT_SELECTION}}},
    }


def shim_path(root: Path | None = None) -> Path:
    """``tools/solc-shim.js``."""
    return (root or repo_root()) / "tools" / "solc-shim.js"


def compile_standard_json(std_input: dict[str, Any], root: Path | None = None) -> dict[str, Any]:
    """Run the pinned solc-js on a standard-JSON input (imports of ``@openzeppelin/...`` resolve to
    ``node_modules``); returns solc's output. Raises :class:`BuildError` when Node or the npm
    ``solc`` package is missing, when the npm compiler is not :data:`SOLC_VERSION`, or on compile errors."""
    import solcx
    import solcx.wrapper
    from solcx.exceptions import SolcError

    root = root or repo_root()
    if shutil.which("node") is None:
        raise BuildError("compiling the contracts needs Node.js on PATH (and `npm ci` for the npm solc package)")
    shim = shim_path(root)
    try:
        version = str(solcx.wrapper.get_solc_version(shim))
    except (SolcError, OSError, ValueError) as exc:
        raise BuildError(f"{shim}: cannot run the solc-js shim (run `make env` / `npm ci`): {exc}") from exc
    if version != SOLC_VERSION:
        raise BuildError(f"npm solc is {version}, the build pins {SOLC_VERSION} (run `npm ci`)")
    try:
        return solcx.compile_standard(std_input, solc_binary=shim, base_path=root)
    except SolcError as exc:
        raise BuildError(f"solc {SOLC_VERSION} failed:\n{exc}") from exc


def compile_contracts(root: Path | None = None) -> tuple[dict[str, Artifact], dict[str, Any]]:
    """Compile every source with the pinned solc-js; return ``(artifacts by name, build info)``.

    Raises :class:`BuildError` as :func:`compile_standard_json` does, and on any warning.
    """
    root = root or repo_root()
    out = compile_standard_json(standard_json_input(root), root)
    artifacts: dict[str, Artifact] = {}
    for source, contracts in sorted(out["contracts"].items()):
        if not source.startswith("contracts/"):
            continue  # OpenZeppelin libraries and interfaces are compiled but not shipped
        for name, c in sorted(contracts.items()):
            if not c["evm"]["bytecode"]["object"]:
                continue  # interfaces and abstract contracts
            if name in artifacts:
                raise BuildError(f"two contracts named {name} ({artifacts[name].source}, {source})")
            artifacts[name] = Artifact(
                name=name,
                source=source,
                abi=c["abi"],
                bytecode="0x" + c["evm"]["bytecode"]["object"],
                deployed_bytecode="0x" + c["evm"]["deployedBytecode"]["object"],
            )
    warnings = [e["formattedMessage"] for e in out.get("errors", []) if e.get("severity") == "warning"]
    if warnings:
        raise BuildError("solc warnings (the build must be warning-free):\n" + "\n".join(warnings))
    info = {
        "compiler": {"name": "solc-js (npm solc)", "version": SOLC_VERSION},
        "settings": COMPILER_SETTINGS,
        "sources": _source_hashes(root, sorted(out["sources"])),
        "contracts": {a.name: a.source for a in artifacts.values()},
    }
    return artifacts, info


def _source_hashes(root: Path, units: list[str]) -> dict[str, str]:
    hashes = {}
    for unit in units:
        path = root / unit if unit.startswith("contracts/") else root / "node_modules" / unit
        hashes[unit] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def current_source_hashes(root: Path | None = None) -> dict[str, str]:
    """SHA-256 of every source listed in the committed build info, as the files are now."""
    root = root or repo_root()
    info = json.loads((artifacts_dir(root) / "build-info.json").read_text())
    return _source_hashes(root, sorted(info["sources"]))


def write_artifacts(artifacts: dict[str, Artifact], info: dict[str, Any], out_dir: Path | None = None) -> list[Path]:
    """Write one JSON per contract plus ``build-info.json`` (deterministic formatting)."""
    from ddval.store import write_text

    out_dir = out_dir or artifacts_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for a in artifacts.values():
        doc = {
            "contractName": a.name,
            "sourceName": a.source,
            "abi": a.abi,
            "bytecode": a.bytecode,
            "deployedBytecode": a.deployed_bytecode,
        }
        written.append(write_text(out_dir / f"{a.name}.json", json.dumps(doc, indent=1, sort_keys=True) + "\n"))
    written.append(write_text(out_dir / "build-info.json", json.dumps(info, indent=1, sort_keys=True) + "\n"))
    for stale in sorted(set(out_dir.glob("*.json")) - set(written)):
        stale.unlink()  # a contract that no longer exists must not leave an artifact behind
    return written


def build(root: Path | None = None) -> list[Path]:
    """Recompile and rewrite the committed artifacts (``python contracts/build.py``)."""
    artifacts, info = compile_contracts(root)
    return write_artifacts(artifacts, info, artifacts_dir(root))


@lru_cache(maxsize=None)
def load_artifact(name: str, directory: str | None = None) -> Artifact:
    """The committed artifact of contract ``name`` (e.g. ``"RewardPool"``)."""
    path = Path(directory) if directory else artifacts_dir()
    file = path / f"{name}.json"
    if not file.exists():
        known = sorted(p.stem for p in path.glob("*.json") if p.stem != "build-info")
        raise FileNotFoundError(f"{file}: no artifact for contract {name!r}; known: {known}")
    doc = json.loads(file.read_text())
    return Artifact(doc["contractName"], doc["sourceName"], doc["abi"], doc["bytecode"], doc["deployedBytecode"])


def strip_metadata(bytecode: str) -> str:
    """Bytecode without the trailing CBOR metadata (its length is the last two bytes)."""
    raw = bytes.fromhex(bytecode.removeprefix("0x"))
    if len(raw) < 2:
        return bytecode
    n = int.from_bytes(raw[-2:], "big") + 2
    return "0x" + raw[:-n].hex() if n <= len(raw) else bytecode
