"""The closing summary of ``ddval reproduce``: where the figures are, and the headline table
(cosine similarity of each method's institution values to the exact Shapley values, per setting,
mean and 95 % t-interval over seeds), read from the valuation tables ``similarity.csv``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ddval import store
from ddval.config import ExperimentConfig


def similarity_table(cfg: ExperimentConfig, seeds: tuple[int, ...], results_root: str | os.PathLike | None = None) -> pd.DataFrame:
    """All ``similarity.csv`` rows of the IID / non-IID settings of ``seeds`` (missing files are skipped)."""
    frames = []
    for seed in seeds:
        for s in cfg.settings:
            if s.scheme not in {"iid", "noniid"}:
                continue
            path = store.setting_dir(cfg, seed, s.name, results_root) / "valuation" / "similarity.csv"
            if path.exists():
                frames.append(store.read_table(path))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def headline(similarity: pd.DataFrame) -> pd.DataFrame:
    """Method x setting: ``"99.97 ± 0.01"`` (cosine in %, mean ± 95 % t half-width over seeds)."""
    from scipy import stats

    if similarity.empty:
        return similarity
    rows = []
    for (method, setting), g in similarity.groupby(["method", "setting"], sort=False):
        pct = 100 * g["cosine"].to_numpy(dtype=float)
        half = stats.t.ppf(0.975, len(pct) - 1) * pct.std(ddof=1) / np.sqrt(len(pct)) if len(pct) > 1 else float("nan")
        cell = f"{pct.mean():.3f}" + (f" ± {half:.3f}" if np.isfinite(half) else "")
        rows.append({"method": method, "setting": setting, "cell": cell, "n": len(pct)})
    table = pd.DataFrame(rows).pivot(index="method", columns="setting", values="cell")
    n = similarity.groupby("setting")["seed"].nunique()
    table.columns = [f"{c} (n={n[c]})" for c in table.columns]
    order = [m for m in ("ddval", "or", "lambda_mr", "gtg", "safe") if m in table.index]
    return table.loc[order + [m for m in table.index if m not in order]]


def format_summary(cfg: ExperimentConfig, seeds: tuple[int, ...], results_root: str | os.PathLike | None = None) -> str:
    """The text ``ddval reproduce`` prints at the end."""
    figures = store.figures_dir(cfg, results_root)
    pngs = sorted(figures.glob("*.png")) if figures.exists() else []
    lines = [f"figures: {figures} ({len(pngs)} PNG" + ("" if len(pngs) == 1 else "s") + ", PDFs and summary_*.csv next to them)"]
    lines.append(f"notebooks: {store.preset_dir(cfg, results_root) / 'notebooks'}")
    table = headline(similarity_table(cfg, seeds, results_root))
    if table.empty:
        lines.append("headline: no similarity.csv found (no IID / non-IID setting valued yet)")
    else:
        lines.append("cosine similarity to the exact Shapley values, % (mean ± 95 % CI over seeds):")
        lines.append(table.to_string())
    return "\n".join(lines)


def figure_files(cfg: ExperimentConfig, results_root: str | os.PathLike | None = None) -> list[Path]:
    """PNG files in the figures folder."""
    figures = store.figures_dir(cfg, results_root)
    return sorted(figures.glob("*.png")) if figures.exists() else []
