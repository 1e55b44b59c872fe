"""What notebooks 01 (index) and 02 (resize) display: counts, prevalences, demographics, montages.

Tables are plain pandas frames (round them for display with :func:`ddval.notebook.show`); the
montage is for looking at the data, not for analysis.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ddval.config import DATASETS, LABELS, ExperimentConfig
from ddval.data import degrade
from ddval.data.images import read_grayscale

#: Short names of the labels for figure captions.
ABBREVIATIONS = {
    "atelectasis": "Atel",
    "cardiomegaly": "Card",
    "consolidation": "Cons",
    "edema": "Edem",
    "no_finding": "NoF",
    "pleural_effusion": "Eff",
    "pneumonia": "Pneu",
    "pneumothorax": "Ptx",
}


def counts_by_sex(index: pd.DataFrame) -> pd.DataFrame:
    """Counts per dataset x sex: scans, patients, and positives of every label (rows), one column per
    (dataset, sex), plus a total column per dataset."""
    frame = index.assign(scans=1)
    both = pd.concat([frame, frame.assign(sex="all")], ignore_index=True)
    grouped = both.groupby(["dataset", "sex"], sort=False)
    table = grouped[["scans"] + list(LABELS)].sum()
    table.insert(1, "patients", grouped["patient_id"].nunique())
    order = [d for d in DATASETS if d in set(index["dataset"])]
    table = table.reindex(pd.MultiIndex.from_product([order, ["F", "M", "U", "all"]]), fill_value=0)
    table = table.loc[[k for k in table.index if k[1] == "all" or table.loc[k, "scans"] > 0]]
    table.index.names = ["dataset", "sex"]
    return table.astype(int).T


def label_prevalence(index: pd.DataFrame) -> pd.DataFrame:
    """Share of positive scans per label (rows) and dataset (columns)."""
    return index.groupby("dataset", sort=False)[list(LABELS)].mean().T


def demographics(index: pd.DataFrame) -> pd.DataFrame:
    """Per dataset: mean age, scans of unknown age, shares of male, frontal and AP scans."""
    return index.groupby("dataset", sort=False).agg(
        age_mean=("age", "mean"),
        age_unknown=("age", lambda a: int(a.isna().sum())),
        male_share=("sex", lambda s: (s == "M").mean()),
        frontal_share=("view", lambda v: (v == "frontal").mean()),
        ap_share=("view_position", lambda v: (v == "AP").mean()),
    )


def resize_counts(resized: pd.DataFrame, index: pd.DataFrame) -> pd.DataFrame:
    """Scans per dataset: indexed, resized, quarantined."""
    n_index = index.groupby("dataset", sort=False).size()
    n_resized = resized.groupby("dataset", sort=False).size().reindex(n_index.index, fill_value=0)
    return pd.DataFrame({"indexed": n_index, "resized": n_resized, "quarantined": n_index - n_resized})


def scan_montage(frame: pd.DataFrame, per_dataset: int = 8, seed: int = 0):
    """A matplotlib figure: ``per_dataset`` random scans of each dataset (rows), captioned with
    their positive labels (:data:`ABBREVIATIONS`)."""
    import matplotlib.pyplot as plt

    datasets = list(pd.unique(frame["dataset"]))
    fig, axes = plt.subplots(
        len(datasets), per_dataset, figsize=(1.5 * per_dataset, 1.75 * len(datasets)), squeeze=False
    )
    for r, dataset in enumerate(datasets):
        rows = frame.loc[frame["dataset"] == dataset]
        picked = rows.sample(n=min(per_dataset, len(rows)), random_state=seed)
        for c, ax in enumerate(axes[r]):
            if c >= len(picked):
                _panel(ax)
                continue
            row = picked.iloc[c]
            title = " ".join(ABBREVIATIONS[lab] for lab in LABELS if row[lab] == 1.0) or "-"
            _panel(ax, np.asarray(read_grayscale(row["path"])), title, 7, dataset if c == 0 else None)
    fig.tight_layout()
    return fig


def _panel(ax, image: np.ndarray | None = None, title: str = "", fontsize: int = 7, ylabel: str | None = None):
    """One montage panel: ``image`` in gray levels 0-255 with its title (and the row's label), no ticks; an
    empty panel without ``image``."""
    ax.set_xticks([])
    ax.set_yticks([])
    if image is None:
        ax.axis("off")
        return
    ax.imshow(image, cmap="gray", vmin=0, vmax=255)
    ax.set_title(title, fontsize=fontsize)
    if ylabel is not None:
        ax.set_ylabel(ylabel)


def quality_montage(cfg: ExperimentConfig, resized: pd.DataFrame):
    """One scan as every institution of each setting with quality kinds holds it in training.

    Args:
        cfg: the experiment (its settings, and its first seed for the rewrites).
        resized: the resized index (``index_resized.parquet``).

    Returns:
        A matplotlib figure, one row per setting with quality kinds and one panel per institution, titled
        by institution and kind (and label flip rate, when not 0; :func:`ddval.data.degrade.quality_examples`);
        ``None``, with nothing drawn, when no setting has a quality kind.
    """
    settings = [s for s in cfg.settings if degrade.has_quality(s)]
    if not settings:
        return None
    import matplotlib.pyplot as plt

    width = max(len(s.institutions) for s in settings)
    fig, axes = plt.subplots(len(settings), width, figsize=(1.6 * width, 1.9 * len(settings)), squeeze=False)
    for r, setting in enumerate(settings):
        examples = degrade.quality_examples(resized, setting, cfg.seeds[0])
        for c, ax in enumerate(axes[r]):
            if c >= len(examples):
                _panel(ax)
                continue
            name, kind, image = examples[c]
            flip = setting.institutions[c].flip_rate
            title = f"{name}\n{kind}" + (f", flip {flip:g}" if flip else "")
            _panel(ax, image, title, 8, setting.name if c == 0 else None)
    fig.tight_layout()
    return fig
