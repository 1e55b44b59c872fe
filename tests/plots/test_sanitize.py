"""notebooks/sanitize.cfg masks what genuinely varies between two correct runs, and nothing else."""

from __future__ import annotations

import re

import pytest
from nbval.plugin import get_sanitize_patterns

from ddval.config import repo_root

PATTERNS = get_sanitize_patterns((repo_root() / "notebooks" / "sanitize.cfg").read_text())


def sanitize(text: str) -> str:
    """What nbval does to every compared string."""
    for regex, replace in PATTERNS:
        text = re.sub(regex, replace, text)
    return text


def test_every_pair_is_read():
    regex_lines = [
        l for l in (repo_root() / "notebooks" / "sanitize.cfg").read_text().splitlines() if l.startswith("regex: ")
    ]
    assert len(PATTERNS) == len(regex_lines) >= 10
    for regex, _ in PATTERNS:
        re.compile(regex)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("<object object at 0x7fe9e6ec7350>", "<object object at 0x7fafbbfa7350>"),
        ("tx 0x" + "ab" * 32, "tx 0x" + "cd" * 32),
        ("pool at 0x" + "Ab" * 20, "pool at 0x" + "12" * 20),
        ("commit 0123456789abcdef0123456789abcdef01234567-dirty", "commit fedcba9876543210fedcba9876543210fedcba98"),
        ("wrote /home/a/ddval/results/demo/seed-0/x.csv", "wrote /work/runner/ddval/results/demo/seed-0/x.csv"),
        ("see /tmp/ipykernel_12372/1798193716.py:2: UserWarning", "see /tmp/ipykernel_999/42.py:2: UserWarning"),
        ("{'torch': '2.14.1', 'numpy': '2.4.6'}", "{'torch': '2.15.0+cu124', 'numpy': '2.5.0'}"),
        ("rpc http://127.0.0.1:8545", "rpc http://127.0.0.1:40123"),
        ("at 2026-11-26 21:58:43.617452Z", "at 2027-01-02T03:04:05+00:00"),
        ("took 1.769 s", "took 12 s"),
        ("done in 120 ms", "done in 0.5 min"),
        ("elapsed 0:01:23", "elapsed 12:59"),
        (
            "work: 100%|██████████| 3/3 [00:00<00:00, 20560.31it/s]",
            "work: 100%|██████████| 3/3 [00:01<00:00,  2.54it/s]",
        ),
    ],
)
def test_varying_text_compares_equal(a, b):
    assert sanitize(a) == sanitize(b)
    assert sanitize(a) != a  # something was masked


@pytest.mark.parametrize(
    "text",
    [
        "99.969 ± 0.010",
        "cosine_pct  cosine_pct_ci95\n0  99.9969  0.0036",
        "n_seeds 3 settings noniid iid labelflip",
        "model_sha256 " + "0f" * 32,  # content hashes are results (deterministic training): not masked
        "cid QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",
        "demo/seed-*/*/valuation/institution_values.csv",
        "flip rate 0.25, 8 labels, k = 3, 1000 recipients, 61193.000 gas",
        "<IPython.core.display.Image object>",
        "<Figure size 1000x340 with 2 Axes>",
    ],
)
def test_results_are_not_masked(text):
    assert sanitize(text) == text
