"""How many seeds a comparison needs: the smallest change a row's seeds can resolve, and the seeds
a row would need to resolve a change of a given size.

A row's Δ (compare.py) has two sources of noise, as its CI does: the dev examples, which the
paired bootstrap measures (its SE, `boot_se`), and how much a seed moves a run as a whole beyond
that (`seed_sd`, pooled over the table's rows). Both come from the runs, so both shrink with the
seeds: as 1/n + 1/n_ref for a row of n seeds against a reference of n_ref, as 1/n for a row paired
seed by seed with its reference (a prediction-time change at the reference's seeds, whose Δ
varies only with how its effect does). So one seed's share of Δ's variance is

    per_seed = boot_se² / (1/n + 1/n_ref) + seed_sd²

and at m seeds a row (its reference at as many) Δ's SE is sqrt(per_seed · 2/m). Its 95% CI
excludes 0 four times in five (80% power) when the true Δ is (z_0.975 + z_0.8) · SE or more. At
the row's own seeds the SE is read off its CI instead, which at few seeds is wider than the
normal approximation (the t draws of the seeds' noise, with the table's few degrees of freedom).

A normal approximation: at few seeds the CI's t draws of the seeds' noise make it wider still,
and a change whose size varies from example to example adds sampling of the dev set that more
seeds do not shrink. benchmarks/ci_coverage.py checks the counts on simulated tables where the
truth is known: at the count read off 2-seed pilot tables, compare.py's CI resolved the change in
74-78% of tables, a little under the 80% aimed at, so the counts are floors (by about a tenth
there). The figures are for planning a sweep; a Δ already measured is judged by its CI, never
by the power it "had".

    import power
    power.detectable(power.ci_se(lo, hi))      # the Δ a row's seeds resolve, 4 times in 5
    v = power.per_seed_variance(boot_se, seed_sd, 2, 6)
    power.seeds_needed(v, 0.003)                # seeds a row, and its reference, for ±0.003
"""
from __future__ import annotations

import math

Z_CI = 1.959963984540054      # two-sided 95% CI
Z_POWER = 0.8416212335729143  # 80% power: the CI excludes 0 four times in five


def _inverse_seeds(n: int, n_ref: int | None) -> float:
    return 1 / n + (1 / n_ref if n_ref else 0.0)


def per_seed_variance(boot_se: float, seed_sd: float | None, n: int, n_ref: int | None = None) -> float:
    """One seed's share of Δ's variance: the bootstrap's SE² measured at n seeds against n_ref
    (None: paired seed by seed), scaled back to one seed, plus the seeds' spread beyond it."""
    return boot_se ** 2 / _inverse_seeds(n, n_ref) + (seed_sd or 0.0) ** 2


def standard_error(per_seed: float, n: int, n_ref: int | None = None) -> float:
    """Δ's SE at n seeds against n_ref (None: paired)."""
    return math.sqrt(per_seed * _inverse_seeds(n, n_ref))


def ci_se(lo: float, hi: float) -> float:
    """The SE a 95% CI [lo, hi] stands for: its half-width over 1.96. Of a CI as compare.py draws
    it, t draws of the seeds' noise included, so at few seeds it is wider than standard_error's."""
    return (hi - lo) / (2 * Z_CI)


def detectable(se: float) -> float:
    """The smallest true |Δ| whose 95% CI excludes 0 four times in five at this SE."""
    return (Z_CI + Z_POWER) * se


def seeds_needed(per_seed: float, delta: float, paired: bool = False) -> int:
    """Seeds for a true Δ of `delta` to be resolved four times in five: in the row and as many in
    its reference, or, paired, in the row at seeds the reference has. Never fewer than 2, the
    fewest that measure how much a seed moves a score."""
    if delta == 0:
        raise ValueError("seeds_needed: a Δ of 0 is never resolved")
    seeds = (1 if paired else 2) * per_seed * ((Z_CI + Z_POWER) / delta) ** 2
    return max(2, math.ceil(round(seeds, 9)))  # (rounded: 5.000000001 seeds are 5)
