"""How often compare.py's 95% CI of Δ covers the true Δ, on simulated runs where it is known.

    .venv/bin/python benchmarks/ci_coverage.py [--sims 300] [--out results/ci_coverage.md]

Each simulation draws a fresh dev set of --examples items from a population (item difficulty:
a logit from N(1, 1.5²)) and trains nothing: a "run" is a seed that shifts every item's logit by
the same b ~ N(0, σ²) (a seed better or worse as a whole) and then gets each item right at random.
Two configurations that are truly the same (Δ = 0 over seeds and items) are compared, with the
other rows of the table (same truth) pooled into the seed noise as a sweep's table does. The
coverage of 0 is counted for the CI over the dev examples alone (the bootstrap) and for
compare.py's CI, which adds the seeds' noise that the bootstrap does not carry. A calibrated 95% CI
covers 0 in about 95% of simulations; one that covers much less calls noise a difference.

It also checks power.py's seed counts (--power sets which), the "How many seeds" of compare.py:
row 1's items truly easier by an effect, the seeds counted from pilot tables, and how often
compare.py's CI then excludes 0, four times in five where the count is right.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bootstrap  # noqa: E402
import power  # noqa: E402


def logistic(x):
    """The chance of getting an item of logit x right."""
    return 1 / (1 + np.exp(-x))


def simulate(rng: np.random.Generator, examples: int, seeds: int, rows: int, seed_sd: float,
             resamples: int, effect: float = 0.0) -> dict:
    """One table: `rows` configurations of `seeds` seeds on one fresh dev set, row 1's items
    `effect` easier on the logit scale (0: every row the same). Row 1's Δ against row 0:
    {"examples": the 95% CI over the dev examples alone, "compare": compare.py's, both (lo, hi);
    "boot_se": the bootstrap's SE of Δ, "seed_sd": the seeds' pooled noise beyond it}."""
    difficulty = rng.normal(1.0, 1.5, examples)
    idx = rng.integers(0, examples, size=(resamples, examples))
    drawn = np.stack([np.bincount(r, minlength=examples) for r in idx]).astype(float)
    metrics, replicates = [], []
    for row in range(rows):
        shift = difficulty + (effect if row == 1 else 0.0)
        hits = [(rng.random(examples) < logistic(shift + rng.normal(0, seed_sd))).astype(float)
                for _ in range(seeds)]
        metrics.append([bootstrap.with_overall({"sst_acc": h.mean()}) for h in hits])
        replicates.append([{"sst_acc": drawn @ h / examples} for h in hits])
    spread, df = bootstrap.seed_spread(metrics, [[bootstrap.with_overall(r) for r in g] for g in replicates])
    examples_only, both = (bootstrap.bootstrap_deltas(replicates, noise, df, seed=int(rng.integers(2**31)))[1]
                           for noise in (None, spread))
    return {"examples": examples_only["sst_acc"], "compare": both["sst_acc"],
            "boot_se": bootstrap.bootstrap_se(replicates[1], replicates[0], "sst_acc"), "seed_sd": spread.get("sst_acc")}


def coverage(sims: int, examples: int, seeds: int, rows: int, seed_sd: float, resamples: int,
             seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng([seed, seeds, rows, int(seed_sd * 1000)])
    tables = [simulate(rng, examples, seeds, rows, seed_sd, resamples) for _ in range(sims)]
    return tuple(float(np.mean([t[ci][0] <= 0 <= t[ci][1] for t in tables])) for ci in ("examples", "compare"))


def true_delta(effect: float, seed_sd: float, draws: int = 2_000_000, seed: int = 0) -> float:
    """The population's Δ accuracy of items `effect` easier on the logit scale, over seeds."""
    rng = np.random.default_rng(seed)
    logit = rng.normal(1.0, 1.5, draws) + rng.normal(0, seed_sd, draws)
    return float(np.mean(logistic(logit + effect) - logistic(logit)))


def power_check(sims: int, examples: int, pilot_seeds: int, pilot_rows: int, seed_sd: float,
                effect: float, resamples: int, seed: int = 0) -> dict:
    """Does power.py's count of seeds resolve the change it was asked for four times in five?
    `sims` pilot tables (`pilot_rows` rows of `pilot_seeds` seeds, as a sweep's; row 1 truly
    better by `effect` on the logit scale) each count power.seeds_needed for the true Δ from
    their noise; at the median count, `sims` fresh tables of two such rows count how often
    compare.py's CI excludes 0. {"delta": the true Δ, "seeds": the median count, "resolved":
    that rate, about 0.8 where the count is right; "half": the rate at half the seeds}."""
    rng = np.random.default_rng([seed, pilot_seeds, pilot_rows, int(seed_sd * 1000), int(effect * 1000)])
    delta = true_delta(effect, seed_sd)
    counts = []
    for _ in range(sims):
        t = simulate(rng, examples, pilot_seeds, pilot_rows, seed_sd, resamples, effect)
        v = power.per_seed_variance(t["boot_se"], t["seed_sd"], pilot_seeds, pilot_seeds)
        counts.append(power.seeds_needed(v, delta))
    seeds = int(np.median(counts))
    rate = lambda n: float(np.mean([simulate(rng, examples, n, 2, seed_sd, resamples, effect)["compare"][0] > 0
                                    for _ in range(sims)]))
    return {"delta": delta, "seeds": seeds, "resolved": rate(seeds), "half": rate(max(2, seeds // 2))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sims", type=int, default=300, help="simulated tables per setting")
    ap.add_argument("--examples", type=int, default=400, help="dev examples per table")
    ap.add_argument("--resamples", type=int, default=2000, help="bootstrap replicates per CI")
    ap.add_argument("--seed_sd", type=float, nargs="+", default=[0.0, 0.1, 0.3],
                    help="how far a seed shifts every item's logit (sd)")
    ap.add_argument("--settings", nargs="+", default=["2x2", "2x6", "3x3"], metavar="SEEDSxROWS",
                    help="seeds per row x rows per table")
    ap.add_argument("--power", nargs="*", default=["0:0.1", "0.1:0.1", "0.3:0.15", "0.3:0.3"],
                    metavar="SD:EFFECT", help="power.py's seed counts checked at these seed sds and "
                    "true effects (logit): none to skip")
    ap.add_argument("--pilot", default="2x6", metavar="SEEDSxROWS",
                    help="the tables the seed counts are read from")
    ap.add_argument("--out", type=Path, help="also write the markdown table here")
    args = ap.parse_args(argv)
    lines = ["| seeds per row | rows | seed sd (logit) | coverage: examples only | coverage: compare.py |",
             "|---|---|---|---|---|"]
    for setting in args.settings:
        seeds, rows = map(int, setting.split("x"))
        for sd in args.seed_sd:
            old, new = coverage(args.sims, args.examples, seeds, rows, sd, args.resamples)
            lines.append(f"| {seeds} | {rows} | {sd:g} | {old:.3f} | {new:.3f} |")
            print(lines[-1], flush=True)
    pilot_seeds, pilot_rows = map(int, args.pilot.split("x"))
    checks = ["| seed sd (logit) | effect (logit) | true Δ | seeds counted | resolved at that count | "
              "at half of it |", "|---|---|---|---|---|---|"]
    for item in args.power:
        sd, effect = map(float, item.split(":"))
        p = power_check(args.sims, args.examples, pilot_seeds, pilot_rows, sd, effect, args.resamples)
        checks.append(f"| {sd:g} | {effect:g} | {p['delta']:.4f} | {p['seeds']} | {p['resolved']:.3f} | "
                      f"{p['half']:.3f} |")
        print(checks[-1], flush=True)
    text = (f"Coverage of the true Δ = 0 by 95% CIs, {args.sims} simulated tables per line, "
            f"{args.examples} dev examples, {args.resamples:,} resamples. Rebuilt by "
            "`.venv/bin/python benchmarks/ci_coverage.py --out results/ci_coverage.md`.\n\n"
            + "\n".join(lines) + "\n")
    if args.power:
        text += ("\nSeeds counted by power.py (compare.py's 'How many seeds'): row 1 truly better by "
                 f"the effect; {args.sims} tables of {pilot_seeds} seeds x {pilot_rows} rows each count "
                 "the seeds a row needs to resolve the true Δ four times in five, from their noise; "
                 f"at the median count, {args.sims} tables of two rows count how often compare.py's "
                 "CI excludes 0 (right: about 0.8; at half the seeds about 0.5).\n\n"
                 + "\n".join(checks) + "\n")
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
