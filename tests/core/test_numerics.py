"""Portable CPU numerics (ddval.numerics): pinned on import, applied before training, part of the params."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ddval import numerics

PROBE = (
    "import json, os, ddval, torch\n"
    "x = torch.ones(3) + 1\n"  # the first computation fixes ATen's kernels
    "print(json.dumps({'env': {k: os.environ.get(k) for k in ('ATEN_CPU_CAPABILITY', 'MKL_CBWR')},"
    " 'aten': torch.backends.cpu.get_cpu_capability()}))\n"
)


def _probe(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "DDVAL_NUMERICS")}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_ddval_pins_avx2_kernels_and_mkl_compatible_mode():
    got = _probe()
    assert got["env"] == {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE"}
    assert got["aten"] in ("AVX2", "DEFAULT")  # DEFAULT only on a CPU without AVX2


def test_native_mode_leaves_the_choice_to_pytorch():
    got = _probe(DDVAL_NUMERICS="native")
    assert got["env"] == {"ATEN_CPU_CAPABILITY": None, "MKL_CBWR": None}


def test_an_explicit_user_choice_wins():
    assert _probe(ATEN_CPU_CAPABILITY="default")["aten"] == "DEFAULT"


def test_unknown_mode_is_an_error(monkeypatch):
    monkeypatch.setenv("DDVAL_NUMERICS", "fast")
    with pytest.raises(ValueError, match="DDVAL_NUMERICS='fast'"):
        numerics.mode()


def test_apply_turns_off_processor_dependent_convolutions(monkeypatch):
    import torch

    monkeypatch.setenv("DDVAL_NUMERICS", "portable")
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", True)
    previous = torch.backends.nnpack.set_flags(True)
    try:
        numerics.apply_to_torch()
        assert torch._C._get_nnpack_enabled() is False
    finally:
        torch.backends.nnpack.set_flags(previous[0])
    assert torch.backends.mkldnn.enabled is False


def test_apply_refuses_kernels_chosen_before_ddval(monkeypatch):
    import torch

    monkeypatch.setenv("DDVAL_NUMERICS", "portable")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    with pytest.raises(numerics.NumericsError, match="AVX512 kernels"):
        numerics.apply_to_torch()


def test_numerics_are_part_of_the_training_and_feature_parameters(monkeypatch):
    import pandas as pd

    from ddval import store
    from ddval.config import load_config
    from ddval.train.stage import coalition_params
    from ddval.valuation.features import features_params

    cfg = load_config("demo")
    partition = pd.DataFrame({"scan_id": ["a", "b"], "institution": ["nih", "nih"]})

    def hashes() -> tuple[str, str]:
        train = coalition_params(cfg, 0, "noniid", ["nih"], partition)
        return store.param_hash(train), store.param_hash(features_params(cfg, 0, "noniid", "/nonexistent"))

    portable = hashes()
    monkeypatch.setenv("DDVAL_NUMERICS", "native")
    native = hashes()
    assert portable[0] != native[0] and portable[1] != native[1]
