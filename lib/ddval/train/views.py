"""What notebook 03 displays: the coalition utilities, the training curves and the rounds kept.

Tables come back rounded (``ddval.notebook.show``) so that a displayed table is stable to its last
printed digit; the figure is drawn from the curves table only.
"""

from __future__ import annotations

import pandas as pd

from ddval.notebook import show


def utility_table(utilities: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """AUROC per label and the utility (``mean``) of every coalition, one row per setting × coalition (×
    training replicate, when the rows have a ``replicate`` column).

    Args:
        utilities: rows of :func:`ddval.train.run_training_stage` (or ``load_utilities``).
        digits: decimals shown.

    Returns:
        The pivot table, labels as columns, coalitions in training order.
    """
    index = ["setting", "replicate", "coalition"] if "replicate" in utilities.columns else ["setting", "coalition"]
    table = utilities.pivot_table(index=index, columns="label", values="auroc", sort=False)
    return show(table, digits)


def curves_figure(curves: pd.DataFrame):
    """Mean validation loss per round, one line per coalition coloured by its number of members, one
    panel per setting.

    Args:
        curves: the table of :func:`ddval.train.load_curves`.

    Returns:
        The seaborn ``FacetGrid``.
    """
    import seaborn as sns

    members = curves["coalition"].str.count(r"\+").add(1).rename("members")  # coalition size
    return sns.relplot(
        data=curves,
        x="round",
        y="val_loss",
        hue=members,
        units="coalition",
        estimator=None,
        col="setting",
        kind="line",
        height=3.2,
        facet_kws={"sharey": False},
    )


def best_rounds(curves: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """The round whose model was kept, per coalition, with its train and validation loss.

    Args:
        curves: the table of :func:`ddval.train.load_curves`.
        digits: decimals shown.

    Returns:
        ``round, train_loss, val_loss`` indexed by setting and coalition.
    """
    best = curves[curves["is_best"]].set_index(["setting", "coalition"])
    return show(best[["round", "train_loss", "val_loss"]], digits)
