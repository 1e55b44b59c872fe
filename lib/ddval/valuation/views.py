"""What notebook 04 displays, built from the stage's result and the tables it wrote.

* :func:`institution_pivot`: every method's institution values side by side;
* :func:`similarity_view`: every method's similarity to the exact values, with the noise ceiling and
  the reference splits (rows of ``similarity.csv`` like the methods) beside them;
* :func:`stop_reasons`: why the ground truth's trainings stopped;
* :func:`table`: one of the setting's experiment tables (``labelflip.csv``, ``flip_detection.csv``,
  ``dp.csv``, ``scalability.csv``) of one seed;
* :func:`crossover`: from the scalability table, the client count from which DDVal is faster.

Tables over seeds (the figures of notebook 06) are :mod:`ddval.summary`'s.
"""

from __future__ import annotations

import os

import pandas as pd

from ddval import layout, store
from ddval.config import ExperimentConfig


def institution_pivot(values: pd.DataFrame) -> pd.DataFrame:
    """``institution_values`` as one row per setting and institution, one column per method."""
    return values.pivot_table(index=["setting", "institution"], columns="method", values="value", sort=False)


def similarity_view(similarity: pd.DataFrame) -> pd.DataFrame:
    """The similarity rows (noise ceiling, methods, reference splits) indexed by setting and method."""
    return similarity.sort_values("setting", kind="stable").set_index(["setting", "method"]).drop(columns="seed")


def stop_reasons(replicates: pd.DataFrame) -> pd.DataFrame:
    """Coalition trainings that stopped by patience and by the round cap, per setting
    (:func:`ddval.scorecard.stop_reasons` of ``replicates.csv``; empty input, empty output)."""
    from ddval.scorecard import stop_reasons as count

    return count(replicates) if len(replicates) else replicates


def table(
    cfg: ExperimentConfig, seed: int, name: str, setting: str | None = None, root: str | os.PathLike | None = None
) -> pd.DataFrame:
    """Table ``name`` (e.g. ``"labelflip.csv"``) of every setting of ``seed`` that has it (or of
    ``setting``), concatenated; an empty frame when none has it."""
    if name not in layout.TABLES:
        raise KeyError(f"unknown result table {name!r}; known: {sorted(layout.TABLES)}")
    names = [setting] if setting is not None else [s.name for s in cfg.settings]
    frames = [store.read_table(p) for n in names if (p := layout.valuation_dir(cfg, seed, n, root) / name).exists()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def crossover(scal: pd.DataFrame) -> pd.DataFrame:
    """Per method, the smallest client count at which DDVal is faster, and whether both times
    there are measurements."""
    rows = []
    if scal.empty:
        return pd.DataFrame(rows, columns=["method", "ddval_faster_from_n", "measured"])
    ddval = scal[scal["method"] == "ddval"].set_index("n_clients")
    for method, frame in scal[scal["method"] != "ddval"].groupby("method", sort=False):
        frame = frame.set_index("n_clients")
        faster = [
            n for n in frame.index if n in ddval.index and ddval.at[n, "wall_time_s"] < frame.at[n, "wall_time_s"]
        ]
        n = min(faster) if faster else None
        measured = bool(n is not None and frame.at[n, "measured"] and ddval.at[n, "measured"])
        rows.append({"method": method, "ddval_faster_from_n": n, "measured": measured})
    return pd.DataFrame(rows, columns=["method", "ddval_faster_from_n", "measured"])
