"""One progress-bar policy for every long loop.

``tqdm.auto`` gives a widget in JupyterLab and a text bar in a terminal. ``DDVAL_PROGRESS=off``
silences the bars (used when notebooks are executed for nbval, so committed outputs hold no
widget ids); ``DDVAL_PROGRESS=text`` forces plain text bars (log files of SLURM jobs).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, TypeVar

T = TypeVar("T")


def progress(iterable: Iterable[T] | None = None, **kwargs: Any):
    """``tqdm`` over ``iterable`` following ``$DDVAL_PROGRESS`` (``auto`` | ``text`` | ``off``)."""
    mode = os.environ.get("DDVAL_PROGRESS", "auto")
    if mode == "off":
        kwargs["disable"] = True
    if mode == "text":
        from tqdm import tqdm
    else:
        from tqdm.auto import tqdm
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)
