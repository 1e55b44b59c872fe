"""Diagnosis: why DDVal's agreement with the exact Shapley values is what it is on the demo.

    DDVAL_RESULTS=/scratch/root .venv/bin/python benchmarks/diagnose_ddval_demo.py --seeds 0 1 2

Needs a results root where stages 01-04 of the preset ran for the seeds (non-IID and IID settings).
DDVal's KNN step takes milliseconds on the demo, so its choices can be varied cheaply on the same
trained models; nothing here changes the pipeline's defaults (the paper's: flattened denseblock4,
K = 3, balanced test sets). Prints, and writes to ``benchmarks/results/diagnose_ddval_demo.md``:

1. the noise floor of the ground truth: cosine of the *equal split* (every institution the same
   share) to the exact values, and in the IID setting, where institutions are exchangeable and the
   expected exact values are equal, how far the exact values are from equal;
2. DDVal's cosine and Pearson correlation (mean over seeds) for feature spaces (the paper's
   denseblock4 output; the classifier's input = ReLU(norm5(·)) pooled; the model's 8 output
   probabilities; the raw 32 px pixels), K and the per-class test-set size.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path


HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "lib"))


def feature_variants(ctx):
    """name -> {institution: InstitutionFeatures} for the feature spaces compared."""
    import torch

    from ddval.data.dataset import XrayDataset
    from ddval.train import load_model
    from ddval.valuation.features import capture, hooked_layer

    model = load_model(ctx.cfg, ctx.seed, ctx.setting, root=ctx.root).eval()
    part = ctx.partition

    def images(name, split):
        rows = part[(part["institution"] == name) & (part["split"] == split)].reset_index(drop=True)
        data = XrayDataset(rows, ctx.cfg.data.image_size, train=False)
        return torch.stack([data[i][0] for i in range(len(data))])

    out = {
        "denseblock4 flatten (paper)": ctx.feats,
        "ReLU(norm5) pooled": {},
        "model outputs (8)": {},
        "raw pixels": {},
    }
    for name, f in ctx.feats.items():
        per = {}
        for split in ("train", "test"):
            x = images(name, split)
            with torch.no_grad(), capture(hooked_layer(model, "features.norm5")) as maps:
                probs = model(x)
            per[split] = {
                "ReLU(norm5) pooled": torch.relu(maps[0]).mean(dim=(2, 3)).numpy(),
                "model outputs (8)": probs.numpy(),
                "raw pixels": x[:, 0].flatten(1).numpy(),
            }
        for variant in ("ReLU(norm5) pooled", "model outputs (8)", "raw pixels"):
            out[variant][name] = replace(
                f, train=replace(f.train, x=per["train"][variant]), test=replace(f.test, x=per["test"][variant])
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--settings", nargs="+", default=["noniid", "iid"])
    parser.add_argument("--out", default=str(HERE / "results" / "diagnose_ddval_demo.md"))
    args = parser.parse_args()
    os.environ.setdefault("DDVAL_PROGRESS", "off")

    import pandas as pd
    import torch

    from ddval.config import load_config
    from ddval.valuation.baselines import shapley
    from ddval.valuation.compare import similarity
    from ddval.valuation.hierarchy import institution_values, pooled_point_table
    from ddval.valuation.pooled import knn_sum, label_values, pool_features
    from ddval.valuation.context import SettingInputs

    torch.set_num_threads(1)
    cfg = load_config(args.preset)
    noise, rows = [], []
    for seed in args.seeds:
        for setting in args.settings:
            ctx = SettingInputs(cfg, seed, setting)
            exact = shapley(ctx.utility, ctx.players)
            equal = pd.Series(exact.sum() / len(exact), index=exact.index)
            noise.append(
                {
                    "setting": setting,
                    "seed": seed,
                    "equal_split_cosine": similarity(exact, equal)["cosine"],
                    "exact_min_share": exact.min() / exact.sum(),
                    "exact_max_share": exact.max() / exact.sum(),
                }
            )
            for variant, feats in feature_variants(ctx).items():
                for per_class in (10, 25, 50, 10_000):
                    pooled = pool_features(feats, per_class)
                    for k in (1, 3, 5, 11, 25):
                        points = pooled_point_table(label_values(knn_sum(pooled, k)), pooled, ctx.grand_utility)
                        sim = similarity(exact, institution_values(points, ctx.players))
                        rows.append(
                            {
                                "setting": setting,
                                "seed": seed,
                                "features": variant,
                                "test_per_class": "all" if per_class == 10_000 else per_class,
                                "k": k,
                                "cosine": sim["cosine"],
                                "pearson": sim["pearson"],
                            }
                        )
    noise = pd.DataFrame(noise)
    table = pd.DataFrame(rows)
    summary = (
        table.groupby(["features", "test_per_class", "k", "setting"], sort=False)[["cosine", "pearson"]]
        .mean()
        .unstack("setting")
    )
    summary.columns = [f"{m} {s}" for m, s in summary.columns]
    text = (
        f"# DDVal on the `{args.preset}` preset: noise floor and sensitivity (seeds {args.seeds})\n\n"
        "`python benchmarks/diagnose_ddval_demo.py` (see its docstring). Paper defaults: denseblock4 flatten, K = 3, "
        f"test_per_class = {cfg.valuation.test_per_class} on the demo.\n\n"
        "## Ground truth: exact values against an equal split\n\n```\n"
        + noise.round(4).to_string(index=False)
        + "\n```\n\n"
        "## DDVal's cosine / Pearson to the exact values (mean over seeds)\n\n```\n"
        + summary.round(4).to_string()
        + "\n```\n"
    )
    print(text)
    if args.out != "-":
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
