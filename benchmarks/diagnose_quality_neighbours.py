"""Diagnosis: where DDVal's institution values come from on the benchmark's quality setting.

    .venv/bin/python benchmarks/diagnose_quality_neighbours.py [--results results] [--preset benchmark]

Needs the feature files of the valuation stage (``<S>/valuation/features/*.npz``), which a run of
``ddval reproduce --preset benchmark`` writes (they are not shipped). For every seed it pools the
features as DDVal does (``ddval.valuation.pooled.pool_features``: every institution's training scans
against the per-label balanced test scans), finds each test scan's K nearest training scans in the
feature space (K = ``valuation.k``, Euclidean, as the engine), and splits every institution's DDVal value
(``point_values.parquet``) into the part carried by scans that are a K-nearest neighbour of at least one
test scan and the part carried by scans that never are. Prints a Markdown table (means over seeds) and
writes it to ``benchmarks/results/diagnose_quality.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "lib"))


def near_scans(pooled, k: int) -> set[str]:
    """Training scans that are among the ``k`` nearest of at least one pooled test scan."""
    train = np.asarray(pooled.train_x, dtype=np.float64)
    test = np.asarray(pooled.test_x, dtype=np.float64)
    dist = (test**2).sum(1)[:, None] - 2.0 * test @ train.T + (train**2).sum(1)[None, :]
    nearest = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return set(pooled.scan_id[np.unique(nearest)])


def seed_table(cfg, seed: int, setting: str, root) -> pd.DataFrame:
    """Per institution: scans, scans ever among a test scan's K nearest, and the DDVal value of each part."""
    from ddval.layout import valuation_dir
    from ddval.valuation.features import read_features
    from ddval.valuation.pooled import pool_features

    vdir = valuation_dir(cfg, seed, setting, root)
    names = [i.name for i in cfg.setting(setting).institutions]
    feats = {n: read_features(vdir / "features" / f"{n}.npz", n) for n in names}
    pooled = pool_features(feats, cfg.valuation.test_per_class, dtype=np.float64)
    near = near_scans(pooled, cfg.valuation.k)
    points = pd.read_parquet(vdir / "point_values.parquet")
    points = points[points["institution"].isin(names)].assign(near=lambda p: p["scan_id"].isin(near))
    rows = []
    for name in names:
        mine = points[points["institution"] == name]
        rows.append(
            {
                "seed": seed,
                "institution": name,
                "scans": len(mine),
                "near": int(mine["near"].sum()),
                "value": mine["value"].sum(),
                "value_near": mine.loc[mine["near"], "value"].sum(),
                "value_never_near": mine.loc[~mine["near"], "value"].sum(),
            }
        )
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=None, help="results root (default: $DDVAL_RESULTS, else results/)")
    parser.add_argument("--preset", default="benchmark")
    parser.add_argument("--setting", default="quality")
    args = parser.parse_args(argv)
    from ddval.config import load_config
    from ddval.readme import markdown

    cfg = load_config(args.preset)
    per_seed = pd.concat([seed_table(cfg, s, args.setting, args.results) for s in cfg.seeds], ignore_index=True)
    table = per_seed.groupby("institution", sort=False)[
        ["scans", "near", "value", "value_near", "value_never_near"]
    ].mean()
    table["per never-near scan"] = table["value_never_near"] / (table["scans"] - table["near"])
    shown = table.reset_index()
    for col in ("value", "value_near", "value_never_near"):
        shown[col] = shown[col].map("{:+.4f}".format)
    shown["per never-near scan"] = shown["per never-near scan"].map("{:.1e}".format)
    shown["near"] = shown["near"].map("{:.1f}".format)
    shown["scans"] = shown["scans"].map("{:.0f}".format)
    text = (
        f"# DDVal's values on the {args.preset} preset's {args.setting} setting, split by neighbourhood\n\n"
        f"Means over seeds {list(cfg.seeds)}. `near`: training scans among the K = {cfg.valuation.k} nearest "
        "training scans (pooled features, Euclidean) of at least one of DDVal's test scans; `value_near` / "
        "`value_never_near`: the institution's DDVal value (macro-AUROC) carried by those scans / by all the "
        "others. Written by `benchmarks/diagnose_quality_neighbours.py`.\n\n" + markdown(shown)
    )
    print(text)
    out = HERE / "results" / "diagnose_quality.md"
    out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
