"""The paired bootstrap over the dev examples, and the seeds' noise it does not carry: the
statistics under compare.py's CIs (compare.py groups the runs and prints the tables).

A run here is its dev scores ({task: {"scores", "labels"}}); its metrics are scored exactly as
training reports them. Every replicate resamples each task's dev examples once, and every run is
scored on those same examples, so a Δ's CI is the difference's, not the noise of either run alone.
"""
from __future__ import annotations

import numpy as np

from batching import TASKS
from evaluation import METRIC_NAMES, decide, overall, task_metric


def run_metrics(run: dict, tasks: list[str]) -> dict:
    """The run's task metrics on the full dev sets, exactly as training reports them."""
    return {METRIC_NAMES[t]: task_metric(t, decide(t, run["dev"][t]["scores"]), run["dev"][t]["labels"])
            for t in tasks}


def _pearson_rows(x: np.ndarray, y: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """Pearson r of each row of x [b, N] with the row-centred y [b, N] (yy: its row sums of
    squares); 0 where a row is constant, like evaluation.pearson."""
    x = x - x.mean(1, keepdims=True)
    denom = np.sqrt((x * x).sum(1) * yy)
    return np.divide((x * y).sum(1), denom, out=np.zeros(len(x)), where=denom > 0)


def replicate_metrics(runs: list[dict], tasks: list[str], resamples: int = 10_000, seed: int = 0) -> list[dict]:
    """Per run, {metric name: [resamples] array}: each task metric on every bootstrap replicate,
    all runs on the same resampled dev examples. A task's resamples come from its own generator
    (seed, task), so they do not depend on which other tasks are compared."""
    out = [{} for _ in runs]
    for t in tasks:
        rng = np.random.default_rng([seed, TASKS.index(t)])
        labels = runs[0]["dev"][t]["labels"]
        n = len(labels)
        decided = [decide(t, r["dev"][t]["scores"]) for r in runs]
        if t == "sts":
            preds = [p.astype(np.float64) for p in decided]
        else:  # [N, R] 0/1: a replicate's hit counts are exact integers, whatever the sum order
            hits = np.stack([p == labels for p in decided], 1).astype(np.float64)
        parts = [[] for _ in runs]
        chunk = max(1, 2_000_000 // n)  # index matrices of ~16 MB
        for start in range(0, resamples, chunk):
            b = min(chunk, resamples - start)
            idx = rng.integers(0, n, size=(b, n))
            if t == "sts":
                y = labels.astype(np.float64)[idx]
                y -= y.mean(1, keepdims=True)
                yy = (y * y).sum(1)
                for i, p in enumerate(preds):  # one run at a time: same inputs, same bits
                    parts[i].append(_pearson_rows(p[idx], y, yy))
            else:  # how often each example was drawn in each replicate, times its hits
                counts = np.bincount((idx + n * np.arange(b)[:, None]).ravel(), minlength=b * n)
                acc = counts.reshape(b, n).astype(np.float64) @ hits / n
                for i in range(len(runs)):
                    parts[i].append(acc[:, i])
        for i in range(len(runs)):
            out[i][METRIC_NAMES[t]] = np.concatenate(parts[i])
    return out


def with_overall(metrics: dict) -> dict:
    """The task metrics (floats or replicate arrays) plus their overall score."""
    return {**metrics, "overall": overall(metrics)}


def group_mean(per_run: list[dict]) -> dict:
    """A group's metrics: the mean over its seeds of each task metric (floats or replicate
    arrays), and the overall score of those means (= the mean of the seeds' overall scores)."""
    return with_overall({k: sum(m[k] for m in per_run) / len(per_run) for k in per_run[0]})


def seed_spread(metrics: list[list[dict]], replicates: list[list[dict]]) -> tuple[dict, int]:
    """The training noise the bootstrap over examples does not already carry, per metric: its sd,
    and the degrees of freedom sum(n - 1) over the groups ({}, 0 when no group has two seeds).

    `metrics[g][s]`: the metrics of seed s of group g; `replicates[g][s]`: its bootstrap replicates.
    Seeds of one group differ in two ways: example by example at random (this one right on an
    example that one gets wrong), which resampling the examples already puts in the CI; and as a
    whole (one seed better on most examples), which it does not. The spread of the seeds' scores
    about their group's mean estimates both; the bootstrap variance of those deviations estimates
    the first alone; the difference, pooled over the groups, is the second (floored at 0).
    Pooling assumes a change of configuration does not change how much a seed moves the scores:
    it is what lets two seeds a row estimate that noise at all."""
    df = sum(len(g) - 1 for g in metrics)
    if df == 0:
        return {}, 0
    sd = {}
    for k in metrics[0][0]:
        spread = between = 0.0
        for g, reps in zip(metrics, replicates):
            values, draws = np.array([m[k] for m in g]), np.stack([r[k] for r in reps])
            spread += ((values - values.mean()) ** 2).sum()
            between += (draws - draws.mean(0)).var(1).sum()
        sd[k] = float(np.sqrt(max(0.0, spread - between) / df))
    return sd, df


def bootstrap_deltas(groups: list[list[dict]], spread: dict | None = None, df: int = 0,
                     seed: int = 0, refs: list | None = None, paired: list | None = None) -> list[dict]:
    """The 95% CI of Δ = group - groups[0] for each metric and overall, per group (a list of its
    runs' replicate_metrics dicts): [{metric: (lo, hi)}]. Overall comes from the task metrics of
    the same replicate, so the tasks are resampled jointly. With a seed `spread` (seed_spread's
    sd per metric, df > 0), every replicate of a group's Δ also gets the noise of its seed means:
    sd * sqrt(1/n + 1/n_ref) times a t(df) draw, the same draws for every metric of the group.
    `refs[i]` (matched_seeds): the indices of the reference's runs group i is compared with, None
    for all of them. `paired[i]` (paired_spread, for a matched group): that group's own noise, the
    spread of its per-seed Δ, in place of `spread`: sd * sqrt(1/n) times a t(n - 1) draw."""
    out = []
    for i, g in enumerate(groups):
        base = at_seeds_of(groups[0], refs[i] if refs else None)
        ref, mean = group_mean(base), group_mean(g)
        own, own_df, scale = spread, df, np.sqrt(1 / len(g) + 1 / len(base))
        if paired and paired[i] is not None:  # the same training seed by seed: Δ's own spread
            (own, own_df), scale = paired[i], np.sqrt(1 / len(g))
        noise = 0.0
        if i > 0 and own and own_df > 0:
            t = np.random.default_rng([seed, 7919, i]).standard_t(own_df, size=len(mean["overall"]))
            noise = t * scale
        ci = {}
        for k in mean:
            d = mean[k] - ref[k] + (own or {}).get(k, 0.0) * noise
            lo, hi = np.percentile(d, [2.5, 97.5])
            ci[k] = (float(lo), float(hi))
        out.append(ci)
    return out


def bootstrap_se(group: list[dict], base: list[dict], key: str = "overall") -> float:
    """The SE of Δ `key` over the bootstrap replicates alone, without the seeds' noise: `group`
    and `base` are their runs' replicate_metrics dicts (power.py scales it to other seeds)."""
    return float(np.std(group_mean(group)[key] - group_mean(base)[key]))


def at_seeds_of(items: list, at: list[int] | None) -> list:
    """The reference's `items` (runs, their metrics or replicates) that a group is compared with:
    those at the indices `at` (matched_seeds), every one when None."""
    return items if at is None else [items[j] for j in at]


def paired_spread(metrics: list[dict], replicates: list[dict], ref_metrics: list[dict],
                  ref_replicates: list[dict]) -> tuple[dict, int]:
    """A matched group's noise beyond the bootstrap: seed_spread of its per-seed differences from
    the reference's run at the same seed (metrics[s] - ref_metrics[s], and so their replicates),
    as one group of n seeds: (sd per metric, n - 1). A prediction-time change scored on the very
    weights of its reference differs from it only by how its effect varies with the seed; the
    seeds' own spread, which the unpaired CI adds, cancels in each difference."""
    diff = lambda a, b: [{k: x[k] - y[k] for k in x} for x, y in zip(a, b)]
    return seed_spread([diff(metrics, ref_metrics)], [diff(replicates, ref_replicates)])


def excludes_0(lo: float, hi: float) -> bool:
    """The CI [lo, hi] lies wholly above or below 0."""
    return lo > 0 or hi < 0
