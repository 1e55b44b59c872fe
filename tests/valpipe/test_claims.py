"""The shipped results (``results/<preset>/``) against what the README says and what the benchmark
claims: README tables generated from them, the ground truth and its ceiling recomputed from the
replicates' utilities, and the claims about DDVal that hold on them (each test names its claim)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ddval import readme
from ddval.summary import ResultTables, shipped_results_root
from ddval.valuation import ground_truth
from ddval.valuation.compare import similarity

PRESETS = [p.name for p in sorted(shipped_results_root().iterdir()) if (p / "seed-0").is_dir()]


def _tables(preset: str) -> ResultTables:
    return ResultTables.open(None, preset)


def test_readme_results_tables_are_the_shipped_tables():
    stale = readme.stale_blocks()
    assert not stale, f"README blocks {stale} differ from results/: run python -m ddval.readme"


def _replicate_utilities(reps: pd.DataFrame) -> dict[int, dict[frozenset, float]]:
    out = {}
    for r, frame in reps.groupby("replicate"):
        util = {frozenset(str(c).split("+")): float(u) for c, u in zip(frame["coalition"], frame["utility"])}
        util[frozenset()] = 0.5
        out[int(r)] = util
    return out


@pytest.mark.parametrize("preset", PRESETS)
def test_ground_truth_and_ceiling_recomputed_from_the_replicates(preset):
    """The exact values are those of the mean utilities over the replicates, and the noise ceiling is the
    mean agreement of exact values from disjoint halves of them (recomputed here from replicates.csv)."""
    t = _tables(preset)
    reps, values, sim = t.load("replicates.csv"), t.load("institution_values.csv"), t.load("similarity.csv")
    if reps is None:
        pytest.skip(f"results/{preset} has no replicates.csv")
    for (setting, seed), frame in reps.groupby(["setting", "seed"]):
        utils = _replicate_utilities(frame)
        exact = values[(values["setting"] == setting) & (values["seed"] == seed) & (values["method"] == "exact")]
        players = list(exact["institution"])
        np.testing.assert_allclose(
            ground_truth.exact_values(utils, players).to_numpy(), exact["value"].to_numpy(), atol=1e-9
        )
        ceiling = sim[(sim["setting"] == setting) & (sim["seed"] == seed) & (sim["method"] == "noise_ceiling")]
        if len(utils) < 2:
            assert ceiling.empty
            continue
        halves = ground_truth.half_splits(list(utils))
        assert halves and all(not set(a) & set(b) for a, b in halves)
        brute = np.mean(
            [
                similarity(ground_truth.exact_values(utils, players, a), ground_truth.exact_values(utils, players, b))[
                    "cosine"
                ]
                for a, b in halves
            ]
        )
        assert ceiling["cosine"].iloc[0] == pytest.approx(brute, abs=1e-9)


@pytest.mark.parametrize("preset", PRESETS)
def test_shipped_intervals_stay_inside_each_metric_range(preset):
    """Issue 11: a bounded metric's interval over seeds never leaves the metric's range (λ-MR once read
    18.30 ± 229.94 % cosine)."""
    from ddval.scorecard import similarity_summary

    sim = _tables(preset).load("similarity.csv")
    if sim is None or sim.empty or "l1_share" not in sim.columns:
        pytest.skip(f"results/{preset} has no similarity rows with the benchmark's metrics")
    summary = similarity_summary(sim)
    for col, low, high in (("cosine_pct", -100.0, 100.0), ("spearman", -1.0, 1.0), ("l1_share", 0.0, 2.0)):
        for suffix in ("", "_low", "_high"):
            x = summary[col + suffix].dropna()
            assert ((x >= low - 1e-9) & (x <= high + 1e-9)).all(), (col + suffix, x.tolist())


def test_demo_noniid_size_split_is_as_good_as_ddval():
    """The README's claim on the demo's non-IID setting (institutions that differ mainly in size): DDVal's
    cosine is within half a point of the size split's in every seed, and on the mean over seeds it is below
    the best reference split of each seed, so the benchmark does not credit it there."""
    from ddval.scorecard import BEST_REFERENCE, versus

    sim = _tables("demo").load("similarity.csv")
    here = sim[sim["setting"] == "noniid"].pivot_table(index="seed", columns="method", values="cosine")
    assert ((here["ddval"] - here["size_split"]).abs() < 0.005).all(), here[["ddval", "size_split"]]
    best = versus(sim[sim["setting"] == "noniid"], "ddval", [BEST_REFERENCE]).iloc[0]
    assert best["wins"] <= 1 and best["n"] == len(here) and best["diff"] < 0, best


def test_demo_noniid_ceiling_is_above_ddval_in_every_seed_and_above_every_row_on_the_mean():
    """The README's claim on the demo's non-IID setting (3 training replicates): exact values from single
    replicates agree with each other at 96 % or more and better than DDVal agrees with the ground truth in every
    seed, and better than every method and reference split on the mean over seeds (a row can pass the ceiling
    in a single seed: it is scored against the mean of all replicates, which is less noisy than one)."""
    sim = _tables("demo").load("similarity.csv")
    here = sim[sim["setting"] == "noniid"].pivot_table(index="seed", columns="method", values="cosine")
    ceiling = here.pop("noise_ceiling")
    assert (here["ddval"] < ceiling).all(), here["ddval"]
    assert (here.mean() < ceiling.mean()).all(), here.mean()
    assert ceiling.min() > 0.96, ceiling


# --------------------------------------------------------------------------------------------
# The benchmark preset (results/benchmark, 5 seeds, 3 training replicates): the README's headline
# --------------------------------------------------------------------------------------------


def _benchmark(name: str) -> pd.DataFrame:
    """A table of the shipped benchmark run; the README's headline rests on it, so it must be there."""
    assert "benchmark" in PRESETS, "results/benchmark is not shipped: run ddval reproduce --preset benchmark"
    frame = _tables("benchmark").load(name)
    assert frame is not None and len(frame), f"results/benchmark has no {name}"
    return frame


def _quality_cosines() -> pd.DataFrame:
    sim = _benchmark("similarity.csv")
    return sim[sim["setting"] == "quality"].pivot_table(index="seed", columns="method", values="cosine")


def _quality_values(method: str) -> pd.DataFrame:
    values = _benchmark("institution_values.csv")
    here = values[(values["setting"] == "quality") & (values["method"] == method)]
    return here.pivot_table(index="seed", columns="institution", values="value")


def test_benchmark_has_five_seeds_and_three_replicates_of_every_coalition():
    reps = _benchmark("replicates.csv")
    for setting, frame in reps.groupby("setting"):
        assert sorted(frame["seed"].unique()) == [0, 1, 2, 3, 4], setting
        per = frame.groupby(["seed", "coalition"])["replicate"].nunique()
        assert (per == 3).all(), setting
    assert reps[reps["setting"] == "quality"]["coalition"].nunique() == 31


def test_benchmark_trainings_stop_by_patience_not_by_the_round_cap():
    """Issue 11: at least 90 % of the coalition trainings behind the ground truth end by patience."""
    reps = _benchmark("replicates.csv")
    share = reps.groupby("setting")["stop"].apply(lambda s: (s == "patience").mean())
    assert (share >= 0.9).all(), share


def test_benchmark_quality_ground_truth_is_firm_and_counting_cannot_follow_it():
    """On institutions of equal size that differ in quality, exact values from single replicates agree at
    89 % cosine or more in every seed, while the equal split (= the size split) stays 20 points or more below
    that ceiling in every seed: this setting can tell valuing data from counting it."""
    cos = _quality_cosines()
    assert (cos["noise_ceiling"] >= 0.89).all(), cos["noise_ceiling"]
    np.testing.assert_allclose(cos["equal_split"], cos["size_split"], atol=1e-12)  # equal sizes
    assert (cos["noise_ceiling"] - cos["equal_split"] >= 0.20).all(), cos[["noise_ceiling", "equal_split"]]


def test_benchmark_quality_ddval_beats_counting_but_stays_far_below_the_ceiling():
    """DDVal beats the best reference split in 4 of 5 seeds with a mean paired difference whose interval is
    above zero, and is below the noise ceiling in every seed, by more than 10 points on the mean (the issue's
    target, within 1 point of the ceiling, is not met)."""
    from ddval.scorecard import BEST_REFERENCE, versus

    sim = _benchmark("similarity.csv")
    best = versus(sim[sim["setting"] == "quality"], "ddval", [BEST_REFERENCE]).iloc[0]
    assert best["wins"] >= 4 and best["n"] == 5 and best["diff_low"] > 0, best
    cos = _quality_cosines()
    assert (cos["ddval"] < cos["noise_ceiling"]).all()
    assert (cos["noise_ceiling"] - cos["ddval"]).mean() > 0.10


def test_benchmark_quality_safe_is_nearest_the_ceiling_and_no_method_passes_it_on_the_mean():
    cos = _quality_cosines()
    methods = cos.drop(columns=["noise_ceiling", "equal_split", "size_split", "positives_split"]).mean()
    assert methods.idxmax() == "safe", methods
    assert (methods < cos["noise_ceiling"].mean()).all(), methods


def test_benchmark_quality_ddval_ranks_label_noise_below_the_clean_institution_in_every_seed():
    """Like the exact values, DDVal values the institution with 30 % flipped labels below the clean one in
    every seed; unlike them, it values it below zero in every seed (retraining still gains from the 70 %
    correct labels: its exact value is within ±0.03 AUROC of zero)."""
    ddval, exact = _quality_values("ddval"), _quality_values("exact")
    assert (ddval["noisy"] < ddval["clean"]).all() and (exact["noisy"] < exact["clean"]).all()
    assert (ddval["noisy"] < 0).all(), ddval["noisy"]
    assert (exact["noisy"].abs() < 0.03).all(), exact["noisy"]


def test_benchmark_quality_ddval_credits_out_of_distribution_scans_that_retraining_does_not():
    """A failure the benchmark exposes: DDVal values the institution of out-of-distribution scans above zero
    and above its exact value in every seed, while its exact value is negative on the mean over seeds; and it
    gives the clean institution less than its exact value in every seed."""
    ddval, exact = _quality_values("ddval"), _quality_values("exact")
    assert (ddval["ood"] > 0).all() and (ddval["ood"] > exact["ood"]).all(), (ddval["ood"], exact["ood"])
    assert exact["ood"].mean() < 0, exact["ood"]
    assert (ddval["clean"] < exact["clean"]).all()


def test_the_demo_trains_what_the_benchmark_trains_for_its_seeds():
    """The README's claim: the demo's non-IID and IID settings are the benchmark's, so for the demo's seeds the
    same partitions give the same trainings, bit for bit (every replicate's utility, rounds and stop), and the
    same exact values."""
    demo = _tables("demo").load("replicates.csv")
    bench = _benchmark("replicates.csv")
    keys = ["setting", "seed", "replicate", "coalition"]
    for setting in ("noniid", "iid"):
        mine = demo[demo["setting"] == setting].sort_values(keys).reset_index(drop=True)
        theirs = bench[(bench["setting"] == setting) & bench["seed"].isin(mine["seed"])]
        theirs = theirs[theirs["replicate"].isin(mine["replicate"])].sort_values(keys).reset_index(drop=True)
        assert len(mine) and len(mine) == len(theirs), setting
        pd.testing.assert_frame_equal(mine, theirs[mine.columns])


def _benchmark_cosines(setting: str) -> pd.DataFrame:
    sim = _benchmark("similarity.csv")
    return sim[sim["setting"] == setting].pivot_table(index="seed", columns="method", values="cosine")


def test_benchmark_noniid_control_still_measures_size():
    """On the size control DDVal is within 0.4 points of the size split in every seed and beats the best
    reference split in at most 1 of 5 seeds, below it on the mean."""
    from ddval.scorecard import BEST_REFERENCE, versus

    cos = _benchmark_cosines("noniid")
    assert ((cos["ddval"] - cos["size_split"]).abs() < 0.004).all(), cos[["ddval", "size_split"]]
    sim = _benchmark("similarity.csv")
    best = versus(sim[sim["setting"] == "noniid"], "ddval", [BEST_REFERENCE]).iloc[0]
    assert best["wins"] <= 1 and best["diff_high"] < 0, best


def test_benchmark_iid_null_case_separates_nothing():
    """On equal institutions every reference split, DDVal and SaFE score 98.5 % or more on the mean, within a
    point of each other, and the ceiling of single replicates lies below them (the ground truth is the mean of
    three replicates)."""
    means = _benchmark_cosines("iid").mean()
    rows = ["ddval", "safe", "equal_split", "size_split", "positives_split"]
    assert (means[rows] >= 0.985).all() and means[rows].max() - means[rows].min() < 0.01, means[rows]
    assert (means["noise_ceiling"] < means[rows]).all(), means
