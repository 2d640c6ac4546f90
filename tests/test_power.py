"""power.py: the smallest Δ a row's seeds resolve, and the seeds a Δ needs, from its noise."""
from __future__ import annotations

import math

import numpy as np
import pytest

import power


def test_the_detectable_delta_is_resolved_four_times_in_five():
    # Δ measured with a normal error of SE around a true Δ equal to detectable(SE): its 95% CI
    # (Δ ± 1.96 SE) excludes 0 in 80% of draws; half that Δ in far fewer
    se = 0.004
    draws = np.random.default_rng(0).standard_normal(200_000) * se
    for true, want in ((power.detectable(se), 0.80), (power.detectable(se) / 2, 0.29)):
        lo = true + draws - power.Z_CI * se
        assert np.mean(lo > 0) == pytest.approx(want, abs=0.01)
    assert power.ci_se(-power.Z_CI * se, power.Z_CI * se) == pytest.approx(se)


@pytest.mark.parametrize("n, n_ref", [(2, 6), (3, 3), (1, 2)])
def test_one_seeds_variance_gives_back_the_se_it_was_measured_at(n, n_ref):
    boot_se, seed_sd = 0.003, 0.002  # the bootstrap's SE at these seeds, and the seeds' own noise
    v = power.per_seed_variance(boot_se, seed_sd, n, n_ref)
    assert power.standard_error(v, n, n_ref) == pytest.approx(
        math.sqrt(boot_se ** 2 + seed_sd ** 2 * (1 / n + 1 / n_ref)))
    assert power.per_seed_variance(boot_se, None, n, n_ref) < v  # no seed noise measured: less


@pytest.mark.parametrize("paired", [False, True])
def test_seeds_needed_is_the_seed_count_whose_se_resolves_the_delta(paired):
    v = 0.0039 ** 2
    for m in (4, 10, 27, 100):
        delta = power.detectable(power.standard_error(v, m, None if paired else m))
        assert power.seeds_needed(v, delta, paired) == m
        assert power.seeds_needed(v, -delta, paired) == m  # a loss needs as many
        assert power.seeds_needed(v, delta * 0.99, paired) > m  # a smaller Δ, more
        assert power.seeds_needed(v, delta * 1.5, paired) < m  # a larger one, fewer
    # paired, the reference's runs are the row's seeds' own: half the seeds of an unpaired row
    assert power.seeds_needed(v, 0.003, True) == pytest.approx(power.seeds_needed(v, 0.003) / 2, abs=1)


def test_never_fewer_than_two_seeds_and_a_zero_delta_is_refused():
    assert power.seeds_needed(1e-12, 0.5) == 2
    with pytest.raises(ValueError, match="never resolved"):
        power.seeds_needed(1e-4, 0.0)
