"""bootstrap.py: the replicates are the metrics of resampled dev sets, the seed noise is what the
resampling leaves unexplained, and a matched row picks its reference's runs at its seeds."""
from __future__ import annotations

import numpy as np
import pytest

import bootstrap
from batching import TASKS
from evaluation import pearson


def _run(rng: np.random.Generator, n: int = 120) -> dict:
    """A run's dev scores on fixed labels (the same for every run: one dev set), right or wrong at random."""
    labels = {"sst": np.arange(n) % 5, "para": np.arange(n) % 2, "sts": np.linspace(0, 5, n)}
    sst = np.eye(5)[np.where(rng.random(n) < 0.6, labels["sst"], rng.integers(0, 5, n))]
    return {"dev": {"sst": {"scores": sst, "labels": labels["sst"]},
                    "para": {"scores": np.where(rng.random(n) < 0.8, labels["para"], 1 - labels["para"]) * 0.8 + 0.1,
                             "labels": labels["para"]},
                    "sts": {"scores": labels["sts"] + rng.normal(0, 1.5, n), "labels": labels["sts"]}}}


def test_each_replicate_is_the_metric_of_one_resampled_dev_set_shared_by_all_runs():
    rng = np.random.default_rng(0)
    runs = [_run(rng), _run(rng)]
    reps = bootstrap.replicate_metrics(runs, ["sst", "para", "sts"], resamples=50, seed=3)
    for t, name in (("sst", "sst_acc"), ("para", "para_acc"), ("sts", "sts_r")):
        # the same draws, redone by hand: one [resamples, n] index matrix per task, from (seed, task)
        idx = np.random.default_rng([3, TASKS.index(t)]).integers(0, 120, size=(50, 120))
        for run, rep in zip(runs, reps):
            d = run["dev"][t]
            if t == "sts":
                want = [pearson(d["scores"][i], d["labels"][i]) for i in idx]
            else:
                pred = d["scores"].argmax(-1) if t == "sst" else (d["scores"] > 0.5).astype(int)
                want = [(pred[i] == d["labels"][i]).mean() for i in idx]
            assert rep[name] == pytest.approx(want, abs=1e-9)
    # the full dev set's metrics, as training reports them, are not a replicate's
    full = bootstrap.run_metrics(runs[0], ["sst"])["sst_acc"]
    assert full == (runs[0]["dev"]["sst"]["scores"].argmax(-1) == runs[0]["dev"]["sst"]["labels"]).mean()


def test_seed_spread_pools_what_the_bootstrap_does_not_explain():
    rng = np.random.default_rng(0)
    metrics = [[{"m": 0.9}, {"m": 0.8}], [{"m": 0.5}, {"m": 0.7}, {"m": 0.6}], [{"m": 0.1}]]
    # replicates jittered about each score: the bootstrap's part of the spread between seeds
    reps = [[{"m": m["m"] + 0.01 * rng.standard_normal(4000)} for m in g] for g in metrics]
    sd, df = bootstrap.seed_spread(metrics, reps)
    # squared deviations: 0.005 (first group) + 0.02 (second); the single seed adds nothing
    between = sum((np.stack([r["m"] for r in g]) - np.stack([r["m"] for r in g]).mean(0)).var(1).sum()
                  for g in reps)
    assert 0 < between < 0.001
    assert df == 3 and sd["m"] == pytest.approx(np.sqrt((0.025 - between) / 3))
    # seeds that differ no more than resampling explains add nothing (floored at 0)
    wide = [[{"m": m["m"] + rng.standard_normal(4000)} for m in g] for g in metrics]
    assert bootstrap.seed_spread(metrics, wide) == ({"m": 0.0}, 3)
    assert bootstrap.seed_spread([[{"m": 0.9}], [{"m": 0.1}]], [[{"m": np.zeros(3)}], [{"m": np.zeros(3)}]]) == ({}, 0)


def test_bootstrap_se_is_the_spread_of_the_group_means_difference():
    rng = np.random.default_rng(1)
    a = [{"m": rng.normal(0.5, 0.01, 5000)} for _ in range(2)]
    b = [{"m": rng.normal(0.6, 0.01, 5000)}]
    se = bootstrap.bootstrap_se(b, a, "m")
    assert se == pytest.approx(np.std(b[0]["m"] - (a[0]["m"] + a[1]["m"]) / 2))
    assert se == pytest.approx(0.01 * np.sqrt(1 + 0.5), rel=0.05)  # independent draws: variances add


def test_a_matched_row_is_compared_with_the_reference_runs_at_its_seeds_only():
    assert bootstrap.at_seeds_of(["r0", "r1", "r2"], None) == ["r0", "r1", "r2"]
    assert bootstrap.at_seeds_of(["r0", "r1", "r2"], [2, 0]) == ["r2", "r0"]
    # its noise: the spread of its per-seed differences, not of the seeds' scores
    metrics, ref = [{"m": 0.71}, {"m": 0.75}], [{"m": 0.70}, {"m": 0.74}]
    zero = [{"m": np.zeros(100)}, {"m": np.zeros(100)}]
    assert bootstrap.paired_spread(metrics, zero, ref, zero) == ({"m": pytest.approx(0.0)}, 1)
    assert bootstrap.paired_spread(metrics, zero, [{"m": 0.70}, {"m": 0.72}], zero)[0]["m"] == pytest.approx(
        np.std([0.01, 0.03], ddof=1))


def test_excludes_0():
    assert bootstrap.excludes_0(0.001, 0.02) and bootstrap.excludes_0(-0.02, -0.001)
    assert not bootstrap.excludes_0(-0.01, 0.01) and not bootstrap.excludes_0(0.0, 0.01)
