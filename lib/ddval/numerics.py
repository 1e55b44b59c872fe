"""CPU numerics that give the same bits on every x86-64 machine (``DDVAL_NUMERICS=portable``, the default).

Training is chaotic: with the demo's learning rate a difference in the last bit of one convolution grows
into a different model within a few rounds (one coalition's AUROC moved from 0.60 to 0.63 between an
Intel Xeon and an AMD EPYC on the same wheels). PyTorch picks its CPU kernels by what the processor
offers: ATen's vectorised kernels by the widest instruction set (AVX2 or AVX-512), oneDNN and NNPACK
convolutions by the processor, and MKL's GEMM by vendor and instruction set. Each choice changes the
order of floating-point additions, so the same seed gives different models on different machines.

Portable numerics pin every one of those choices to a code path that every x86-64 CPU with AVX2 runs
the same way:

- ``ATEN_CPU_CAPABILITY=avx2``: ATen's AVX2 kernels on every AVX2 machine (AVX-512 ones are skipped);
- ``MKL_CBWR=COMPATIBLE``: MKL's conditional numerical reproducibility mode that runs one code path on
  Intel and non-Intel processors;
- oneDNN (``torch.backends.mkldnn``) and NNPACK off: convolutions go through ATen + MKL above.

The environment variables are read by PyTorch and MKL when they first compute, so they are set when
``ddval`` is imported (before any ddval module imports torch). ``DDVAL_NUMERICS=native`` leaves every
choice to PyTorch (faster, not portable). The mode and the kernels actually in use are part of the
training and feature parameters (:func:`fingerprint`), so results of different numerics never mix.
GPUs are not covered: CUDA kernels differ by device generation.
"""

from __future__ import annotations

import os

#: Environment of the portable mode (set with ``setdefault``: an explicit user choice wins).
PORTABLE_ENV: dict[str, str] = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE"}

MODES = ("portable", "native")


class NumericsError(RuntimeError):
    """PyTorch chose its CPU kernels before ddval could pin them."""


def mode() -> str:
    """``$DDVAL_NUMERICS``: ``"portable"`` (default) or ``"native"``."""
    value = os.environ.get("DDVAL_NUMERICS", "portable")
    if value not in MODES:
        raise ValueError(f"DDVAL_NUMERICS={value!r}: expected one of {list(MODES)}")
    return value


def configure_environment() -> None:
    """Set the portable environment (called on ``import ddval``, before torch computes anything)."""
    if mode() == "portable":
        for key, value in PORTABLE_ENV.items():
            os.environ.setdefault(key, value)


def apply_to_torch() -> None:
    """Turn off the convolution back ends whose results depend on the processor (portable mode), and
    check that ATen runs the pinned kernels.

    Raises:
        NumericsError: torch computed before ``ddval`` was imported, so ATen picked its kernels already.
    """
    if mode() != "portable":
        return
    import torch

    torch.backends.mkldnn.enabled = False
    torch.backends.nnpack.set_flags(False)
    wanted = os.environ.get("ATEN_CPU_CAPABILITY", "").upper()
    actual = torch.backends.cpu.get_cpu_capability()
    if wanted == "AVX2" and actual not in ("AVX2", "DEFAULT"):
        raise NumericsError(
            f"PyTorch runs {actual} kernels, not the portable AVX2 ones: it computed before ddval was imported. "
            "Import ddval first (or set ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=COMPATIBLE before starting Python), "
            "or choose DDVAL_NUMERICS=native (faster, results differ between processors)."
        )


def fingerprint() -> dict[str, str]:
    """What decides the CPU bits of a result: the mode, ATen's kernels and MKL's reproducibility mode."""
    import torch

    return {
        "mode": mode(),
        "aten": torch.backends.cpu.get_cpu_capability(),
        "mkl_cbwr": os.environ.get("MKL_CBWR", ""),
    }
