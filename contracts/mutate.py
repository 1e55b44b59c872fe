"""Mutation testing of the economy's contracts: ``python contracts/mutate.py [--jobs 2] [--list]``.

A fixed, listed set of mutants of ``RewardPool`` and ``SwarmRegistry``, generated from the sources
by three rules (``--list`` prints every one):

- **check**: each ``revert`` is removed (a one-line ``if (...) revert E(...);`` goes as a whole),
  and each ``onlyOwner`` is removed from its function;
- **comparison**: each ``<``, ``<=``, ``>``, ``>=``, ``==``, ``!=`` is moved across its boundary
  (``<`` ↔ ``<=``, ``>`` ↔ ``>=``, ``==`` ↔ ``!=``), one occurrence per mutant;
- **state write**: each statement that writes storage (``x = ...``, ``x += ...``, ``m[k] = ...``,
  ``.push``, ``BitMaps.set``) is removed, a write inside an expression (``++attestations[id]``)
  becomes a read (``attestations[id] + 1``), and a storage initializer is dropped;

plus the hand-made mutants of :data:`EXTRA`.

Every mutant is compiled (one solc-js run for all, with the pinned settings of
:mod:`ddval.economy.contracts`), and the contract tests run against it (pytest, ``-x``: the first
failing test kills it) with ``DDVAL_TEST_ARTIFACTS`` pointing at a folder holding the committed
artifacts and the mutant. A mutant that no test kills is a hole in the tests, unless it is listed
in :data:`EQUIVALENT` with the reason why no test can kill it. The score (killed / non-equivalent)
is printed; the exit status is 1 below 100 % (``tests/economy/test_mutation.py`` runs this in CI).

Cost: the contract test files run in order against a mutant until one test fails, which took 58 min
for the 138 mutants with 2 jobs on a loaded 2-core machine. :data:`KILLERS` (committed) names, for
each mutant, the test that killed it last time; that test runs first, alone (about 3 s), and only a
mutant it does not kill (a test or the contract changed) meets the full test files. So every mutant
is still tested, and a hole is still found, at about a tenth of the cost. ``--full`` ignores the
list; ``--update-killers`` rewrites it from the run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

from ddval.economy import contracts  # noqa: E402

#: The mutated contracts and the test files that run against each (in the order they run).
TARGETS = {
    "RewardPool": ("contracts/src/RewardPool.sol", ("tests/economy/test_pool.py", "tests/economy/test_pool_states.py")),
    "SwarmRegistry": (
        "contracts/src/SwarmRegistry.sol",
        ("tests/economy/test_registry.py", "tests/economy/test_pool.py", "tests/economy/test_pool_states.py"),
    ),
}

#: ``{mutant key: test id}``: the test that killed each mutant in the last run (see the module docstring).
KILLERS = ROOT / "contracts" / "mutant-killers.json"

#: Mutants no test can kill, by :attr:`Mutant.key`, with the reason. Keep it short: every entry is
#: a claim that the two programs behave the same.
EQUIVALENT: dict[str, str] = {}

_COMPARE = {"<": "<=", "<=": "<", ">": ">=", ">=": ">", "==": "!=", "!=": "=="}
_STATE_DECL = re.compile(
    r"^    (?:mapping\(.*\)|[\w.]+(?:\[\])?)\s+(?:(?:public|private|internal)\s+)?(?P<name>\w+)(?P<init>\s*=\s*[^;]+)?;"
)


@dataclass(frozen=True)
class Mutant:
    """One mutant: which contract, which rule, the source line before and after (``None``: deleted)."""

    contract: str
    kind: str
    line: int  # 1-based, in the original source
    before: str
    after: str | None
    where: str = ""  # the enclosing function, constructor or modifier

    @property
    def key(self) -> str:
        """Stable across edits elsewhere in the file: contract, place, rule and the line itself."""
        after = "(removed)" if self.after is None else f"`{self.after.strip()}`"
        return f"{self.contract}.{self.where} {self.kind}: `{self.before.strip()}` -> {after}"

    def apply(self, source: str) -> str:
        lines = source.splitlines(keepends=True)
        assert lines[self.line - 1].rstrip("\n") == self.before, f"{self.key}: source changed"
        lines[self.line - 1] = "" if self.after is None else self.after + "\n"
        return "".join(lines)


def _code(line: str) -> str:
    """The code part of a line (no ``//`` comment)."""
    return line.split("//", 1)[0]


def _state_variables(lines: list[str]) -> tuple[set[str], list[tuple[int, str, str]]]:
    """Storage variables (immutables and constants excluded) and their initializers ``(line, name, init)``."""
    names, inits = set(), []
    for i, line in enumerate(lines, start=1):
        m = _STATE_DECL.match(_code(line))
        declaration = line.strip().startswith(("error", "event", "function"))
        if m is None or declaration or re.search(r"\b(immutable|constant)\b", line):
            continue
        names.add(m["name"])
        if m["init"]:
            inits.append((i, m["name"], m["init"]))
    return names, inits


def mutants_of(contract: str, source: str) -> list[Mutant]:
    """Every mutant of ``source`` by the three rules (see the module docstring), in source order."""
    lines = source.splitlines()
    storage, inits = _state_variables(lines)
    out: list[Mutant] = []
    write = re.compile(r"^\s*(?P<name>\w+)(?:\[[^\]]*\])*\s*(?:=|\+=|-=)[^=]")
    where = "(declarations)"
    for i, line in enumerate(lines, start=1):
        code = _code(line)
        stripped = code.strip()
        head = re.match(r"\s*(function|modifier)\s+(\w+)|\s*(constructor)\b", code)
        if head:
            where = head.group(2) or head.group(3)
        skipped = ("///", "*", "pragma", "import", "error ", "event ")
        if not stripped or "mapping(" in code or stripped.startswith(skipped):
            continue
        if re.search(r"\brevert \w+\(", code):
            out.append(Mutant(contract, "check", i, line, None, where))
        if re.search(r"\bonlyOwner\b", code) and "function" in code:
            out.append(Mutant(contract, "check", i, line, line.replace(" onlyOwner", ""), where))
        for m in re.finditer(r"<=|>=|==|!=|<|>", code):
            mutated = code[: m.start()] + _COMPARE[m.group(0)] + code[m.end() :]
            out.append(Mutant(contract, "comparison", i, line, mutated.rstrip() + line[len(code) :], where))
        wm = write.match(code)
        if wm and wm["name"] in storage and line.startswith(" " * 8):
            out.append(Mutant(contract, "state write", i, line, None, where))
        elif re.match(r"^\s*\w+\.(push|set)\(", code) and code.strip().split(".")[0] in storage:
            out.append(Mutant(contract, "state write", i, line, None, where))
        for m in re.finditer(r"\+\+(?P<target>(?P<name>\w+)(?:\[[^\]]*\])*)", code):
            if m["name"] in storage:
                read = line.replace(m.group(0), f"{m['target']} + 1")
                out.append(Mutant(contract, "state write", i, line, read, where))
    for i, _, init in inits:
        out.append(Mutant(contract, "state write", i, lines[i - 1], lines[i - 1].replace(init, ""), "(declarations)"))
    return sorted(out, key=lambda mu: (mu.line, mu.kind, mu.after or ""))


#: Hand-made mutants beyond the three rules: ``(contract, function, line, replacement)``. The first is
#: the one of issue 12's review that survived the old tests (a sweep allowed at the attestation deadline).
EXTRA = (
    (
        "RewardPool",
        "sweepNotBefore",
        "        return finalized ? claimDeadline : attestationDeadline;",
        "        return attestationDeadline;",
    ),
)


def all_mutants() -> list[Mutant]:
    out = []
    for contract, (path, _) in TARGETS.items():
        source = (ROOT / path).read_text()
        out += mutants_of(contract, source)
        lines = source.splitlines()
        for target, where, before, after in EXTRA:
            if target == contract:
                out.append(Mutant(contract, "hand-made", lines.index(before) + 1, before, after, where))
    return out


# ---------------------------------------------------------------------------- compile and test


def compile_mutants(mutants: list[Mutant]) -> dict[int, dict]:
    """``index -> artifact document`` of every mutant that compiles (one solc-js run for all)."""
    sources, units = {}, {}
    for k, mu in enumerate(mutants):
        path = TARGETS[mu.contract][0]
        unit = f"mutants/m{k:03d}/{Path(path).name}"
        sources[unit] = {"content": mu.apply((ROOT / path).read_text())}
        units[unit] = k
    std = {
        "language": "Solidity",
        "sources": sources,
        "settings": {
            **contracts.COMPILER_SETTINGS,
            "outputSelection": {u: {"*": contracts.OUTPUT_SELECTION} for u in sources},
        },
    }
    try:
        out = contracts.compile_standard_json(std, ROOT)
    except contracts.BuildError:
        if len(mutants) == 1:
            return {}
        half = len(mutants) // 2  # a stillborn mutant fails the batch: split until it is alone
        first, second = compile_mutants(mutants[:half]), compile_mutants(mutants[half:])
        return {**first, **{k + half: v for k, v in second.items()}}
    docs = {}
    for unit, k in units.items():
        c = out["contracts"].get(unit, {}).get(mutants[k].contract)
        if c and c["evm"]["bytecode"]["object"]:
            docs[k] = {
                "contractName": mutants[k].contract, "sourceName": TARGETS[mutants[k].contract][0], "abi": c["abi"],
                "bytecode": "0x" + c["evm"]["bytecode"]["object"],
                "deployedBytecode": "0x" + c["evm"]["deployedBytecode"]["object"],
            }  # fmt: skip
    return docs


def compile_in_parallel(mutants: list[Mutant], jobs: int) -> dict[int, dict]:
    """:func:`compile_mutants` in ``jobs`` solc-js processes (contiguous chunks)."""
    bounds = [round(len(mutants) * j / jobs) for j in range(jobs + 1)]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        parts = list(pool.map(lambda j: compile_mutants(mutants[bounds[j] : bounds[j + 1]]), range(jobs)))
    return {k + bounds[j]: doc for j, part in enumerate(parts) for k, doc in part.items()}


def run_tests(mutant: Mutant, artifact: dict, workdir: Path, first: str | None = None) -> str | None:
    """Run the contract tests against ``mutant``.

    Args:
        mutant: The mutant under test.
        artifact: Its compiled artifact (replaces the contract's committed one).
        workdir: An empty folder of this mutant's own.
        first: A test id to run alone first (the mutant's last killer); the full test files run only
            when it passes.

    Returns:
        The id of the test that killed the mutant (failed, or errored in its fixtures: the mutant
        broke every deployment), or None when every test passed.
    """
    folder = workdir / "artifacts"
    shutil.copytree(contracts.artifacts_dir(ROOT), folder)
    (folder / f"{mutant.contract}.json").write_text(json.dumps(artifact))
    if first is not None:
        killer = _pytest(folder, [first])
        if killer is not None:
            return killer
    return _pytest(folder, list(TARGETS[mutant.contract][1]))


def _pytest(artifacts: Path, tests: list[str]) -> str | None:
    """Run ``tests`` (``-x``) with the artifacts of ``artifacts``; the first failing test's id, or None."""
    # Only Hypothesis' plugin: the others (nbval, Jupyter, ...) cost seconds of start-up per mutant.
    env = {
        **os.environ,
        "DDVAL_TEST_ARTIFACTS": str(artifacts),
        "DDVAL_MUTATION": "1",
        "DDVAL_PROGRESS": "off",
        "PYTHONPATH": str(ROOT / "lib"),
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
    }
    options = ["-p", "_hypothesis_pytestplugin", "-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "--tb=no"]
    cmd = [sys.executable, "-m", "pytest", *options, "-rfE", *tests]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode == 0:
        return None
    failed = re.search(r"^(?:FAILED|ERROR) (\S+)", proc.stdout, re.M)
    return failed.group(1) if failed else f"pytest exit {proc.returncode}: {proc.stdout.strip().splitlines()[-1:]}"


def read_killers() -> dict[str, str]:
    """The committed :data:`KILLERS` map (empty when the file is absent)."""
    return json.loads(KILLERS.read_text()) if KILLERS.exists() else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested in parallel (default 2)")
    parser.add_argument("--list", action="store_true", help="print the mutants and exit")
    parser.add_argument("--only", help="test only the mutants whose key contains this text")
    parser.add_argument("--report", type=Path, help="write the results as JSON")
    parser.add_argument("--full", action="store_true", help="ignore the last killers: full test files per mutant")
    parser.add_argument("--update-killers", action="store_true", help=f"rewrite {KILLERS.name} from this run")
    args = parser.parse_args(argv)
    mutants = all_mutants()
    if args.list:
        for k, mu in enumerate(mutants):
            print(f"m{k:03d} line {mu.line}: {mu.key}")
        return 0
    stale = sorted(set(EQUIVALENT) - {mu.key for mu in mutants})
    if stale:
        print("equivalent mutants listed that no longer exist (update EQUIVALENT):", *stale, sep="\n  ")
        return 1
    chosen = [(k, mu) for k, mu in enumerate(mutants) if args.only is None or args.only in mu.key]
    killers_before = {} if args.full else read_killers()
    start = time.perf_counter()
    docs = compile_in_parallel([mu for _, mu in chosen], args.jobs)
    compiled = time.perf_counter() - start
    with tempfile.TemporaryDirectory(prefix="ddval-mutants-") as tmp:

        def test(j: int) -> str | None:
            if j not in docs:
                return "stillborn"
            mu = chosen[j][1]
            return run_tests(mu, docs[j], Path(tmp) / f"m{chosen[j][0]:03d}", killers_before.get(mu.key))

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            killers = list(pool.map(test, range(len(chosen))))
    rows, survivors = [], []
    for (k, mu), killer in zip(chosen, killers):
        status = "killed" if killer else "SURVIVED"
        status = "stillborn" if killer == "stillborn" else "equivalent" if mu.key in EQUIVALENT else status
        rows.append({"id": f"m{k:03d}", "key": mu.key, "status": status, "killed_by": killer})
        print(f"m{k:03d} {status:<10} {mu.key}" + (f"  <- {killer}" if killer and status == "killed" else ""))
        if status == "SURVIVED":
            survivors.append(mu.key)
    counted = [r for r in rows if r["status"] in ("killed", "SURVIVED")]
    score = sum(r["status"] == "killed" for r in counted) / max(len(counted), 1)
    stillborn = sum(r["status"] == "stillborn" for r in rows)
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        f"mutation score {score:.1%}: {len(counted) - len(survivors)} of {len(counted)} mutants killed "
        f"({len(rows) - len(counted) - stillborn} equivalent, {stillborn} not compilable); "
        f"compile {compiled:.0f} s, total {time.perf_counter() - start:.0f} s wall with {args.jobs} jobs, "
        f"{cpu.ru_utime + cpu.ru_stime:.0f} s CPU in solc-js and pytest"
    )
    if args.update_killers:
        found = {r["key"]: r["killed_by"] for r in rows if r["status"] == "killed" and "::" in r["killed_by"]}
        kept = {} if args.only is None else {k: v for k, v in read_killers().items() if k in {m.key for m in mutants}}
        KILLERS.write_text(json.dumps(dict(sorted({**kept, **found}.items())), indent=1) + "\n")
    if args.report:
        args.report.write_text(json.dumps({"score": score, "mutants": rows}, indent=1) + "\n")
    return 0 if not survivors else 1


if __name__ == "__main__":
    sys.exit(main())
