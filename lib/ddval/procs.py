"""Worker processes that die with their parent.

A runner killed with ``kill -9`` (or a SLURM task at its time limit) gets no chance to stop its
children; a worker left behind kept writing into the results folder (it once recorded a coalition
complete ten seconds after its runner died) and then hung on a pipe. Every pool of ddval starts its
workers with :func:`die_with_parent` as initializer, and every subprocess a runner spawns with it as
``preexec_fn``: on Linux the kernel sends the child ``SIGKILL`` when its parent dies
(``PR_SET_PDEATHSIG``), and a child whose parent is already gone exits at once. Notebook kernels
watch their parent themselves (ipykernel exits when the process that started it is gone), and so the
whole tree under a killed runner goes.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

#: ``prctl`` option of Linux (``<linux/prctl.h>``): the signal a process gets when its parent dies.
PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None) -> None:
    """Ask the kernel to kill this process when its parent dies; exit now if ``parent_pid`` (the
    parent that started it) is already gone. Call it in the child (pool initializer, ``preexec_fn``)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)  # the parent died before the line above took effect
