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
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import compare  # noqa: E402


def simulate(rng: np.random.Generator, examples: int, seeds: int, rows: int, seed_sd: float,
             resamples: int) -> tuple[bool, bool]:
    """One table: `rows` configurations of `seeds` seeds on one fresh dev set. Whether the CI of
    row 1 against row 0 covers 0, (examples only, compare.py's)."""
    difficulty = rng.normal(1.0, 1.5, examples)
    idx = rng.integers(0, examples, size=(resamples, examples))
    drawn = np.stack([np.bincount(r, minlength=examples) for r in idx]).astype(float)
    metrics, replicates = [], []
    for _ in range(rows):
        hits = [(rng.random(examples) < 1 / (1 + np.exp(-(difficulty + rng.normal(0, seed_sd))))).astype(float)
                for _ in range(seeds)]
        metrics.append([compare.with_overall({"sst_acc": h.mean()}) for h in hits])
        replicates.append([{"sst_acc": drawn @ h / examples} for h in hits])
    spread, df = compare.seed_spread(metrics, [[compare.with_overall(r) for r in g] for g in replicates])
    covers = []
    for noise in (None, spread):
        lo, hi = compare.bootstrap_deltas(replicates, noise, df, seed=int(rng.integers(2**31)))[1]["sst_acc"]
        covers.append(lo <= 0 <= hi)
    return covers[0], covers[1]


def coverage(sims: int, examples: int, seeds: int, rows: int, seed_sd: float, resamples: int,
             seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng([seed, seeds, rows, int(seed_sd * 1000)])
    hits = np.array([simulate(rng, examples, seeds, rows, seed_sd, resamples) for _ in range(sims)])
    return float(hits[:, 0].mean()), float(hits[:, 1].mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sims", type=int, default=300, help="simulated tables per setting")
    ap.add_argument("--examples", type=int, default=400, help="dev examples per table")
    ap.add_argument("--resamples", type=int, default=2000, help="bootstrap replicates per CI")
    ap.add_argument("--seed_sd", type=float, nargs="+", default=[0.0, 0.1, 0.3],
                    help="how far a seed shifts every item's logit (sd)")
    ap.add_argument("--settings", nargs="+", default=["2x2", "2x6", "3x3"], metavar="SEEDSxROWS",
                    help="seeds per row x rows per table")
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
    text = (f"Coverage of the true Δ = 0 by 95% CIs, {args.sims} simulated tables per line, "
            f"{args.examples} dev examples, {args.resamples:,} resamples. Rebuilt by "
            "`.venv/bin/python benchmarks/ci_coverage.py --out results/ci_coverage.md`.\n\n"
            + "\n".join(lines) + "\n")
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
