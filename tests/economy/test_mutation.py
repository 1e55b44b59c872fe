"""Mutation testing of the contracts in CI: every listed mutant of RewardPool and SwarmRegistry is
killed by the contract tests (``contracts/mutate.py``), and the list covers what it says it covers."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys

import pytest

from ddval.config import repo_root


def mutate_module():
    spec = importlib.util.spec_from_file_location("ddval_contracts_mutate", repo_root() / "contracts" / "mutate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_mutants_cover_every_revert_comparison_and_storage_write():
    mutate = mutate_module()
    for contract, (path, _) in mutate.TARGETS.items():
        source = (repo_root() / path).read_text()
        code = [
            line.split("//", 1)[0]
            for line in source.splitlines()
            if not line.strip().startswith(("///", "pragma", "import"))
        ]
        mutants = mutate.mutants_of(contract, source)
        kinds = [mu.kind for mu in mutants]
        reverts = sum(len(re.findall(r"\brevert \w+\(", line)) for line in code)
        owner_checks = sum("onlyOwner" in line and "function" in line for line in code)
        assert kinds.count("check") == reverts + owner_checks, contract
        comparisons = sum(len(re.findall(r"<=|>=|==|!=|<|>", line)) for line in code if "mapping(" not in line)
        assert kinds.count("comparison") == comparisons, contract
        assert kinds.count("state write") >= 10, contract
        assert len({mu.key for mu in mutants}) == len(mutants), f"{contract}: two mutants share a key"
        for mu in mutants:
            assert mu.apply(source) != source
    assert set(mutate.EQUIVALENT) <= {mu.key for mu in mutate.all_mutants()}, (
        "an equivalent mutant that no longer exists"
    )


def test_the_last_killers_name_listed_mutants_and_existing_tests():
    """``contracts/mutant-killers.json`` only speeds the run up; a stale entry would silently stop doing so."""
    mutate = mutate_module()
    keys = {mu.key for mu in mutate.all_mutants()}
    killers = mutate.read_killers()
    assert set(killers) <= keys, "run `python contracts/mutate.py --update-killers` (mutants changed)"
    for test_id in set(killers.values()):
        path, _, name = test_id.partition("::")
        source = (repo_root() / path).read_text()
        assert re.search(rf"^def {re.escape(name.split('[')[0])}\(", source, re.M), f"{test_id} no longer exists"
    assert len(killers) >= 0.9 * len(keys), "most mutants should have a last killer: run with --update-killers"


@pytest.mark.mutation
def test_a_mutant_its_last_killer_misses_meets_the_full_test_files(tmp_path):
    """The committed killers are a shortcut, never the verdict: a wrong one costs time, not a survivor."""
    mutate = mutate_module()
    [mutant] = [
        mu for mu in mutate.all_mutants() if mu.key.startswith("RewardPool.constructor check: `revert ZeroAddress")
    ]
    [artifact] = mutate.compile_mutants([mutant]).values()
    passing = "tests/economy/test_token.py::test_metadata_and_supply"  # a test that cannot see the pool
    killer = mutate.run_tests(mutant, artifact, tmp_path, first=passing)
    assert killer == "tests/economy/test_pool.py::test_constructor_rejects_zero_addresses"


@pytest.mark.mutation
def test_every_contract_mutant_is_killed(tmp_path):
    report = tmp_path / "mutants.json"
    proc = subprocess.run(
        [sys.executable, "contracts/mutate.py", "--jobs", "2", "--report", str(report)],
        cwd=repo_root(),
        capture_output=True,
        text=True,
        timeout=3600,
    )
    print(proc.stdout[-3000:])
    assert report.exists(), proc.stderr[-3000:]
    rows = json.loads(report.read_text())["mutants"]
    survivors = [r["key"] for r in rows if r["status"] == "SURVIVED"]
    assert not survivors, "mutants no contract test kills:\n" + "\n".join(survivors)
    assert not [r for r in rows if r["status"] == "stillborn"], "mutants that do not compile: fix the mutation rules"
    assert proc.returncode == 0 and re.search(r"^mutation score 100\.0%", proc.stdout, re.M)
