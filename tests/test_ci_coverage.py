"""benchmarks/ci_coverage.py: compare.py's CI covers a true Δ of 0 about 95% of the time, also
when seeds differ as a whole (where a CI over the dev examples alone does not)."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import ci_coverage  # noqa: E402


def test_the_ci_with_seed_noise_keeps_its_coverage_where_the_examples_only_one_loses_it():
    examples_only, with_seeds = ci_coverage.coverage(sims=150, examples=300, seeds=2, rows=6,
                                                     seed_sd=0.3, resamples=1000)
    assert examples_only < 0.8 and with_seeds >= 0.88


def test_without_seed_noise_both_cis_cover_about_95_percent():
    examples_only, with_seeds = ci_coverage.coverage(sims=150, examples=300, seeds=2, rows=6,
                                                     seed_sd=0.0, resamples=1000)
    assert examples_only >= 0.88 and with_seeds >= 0.88


def test_the_seeds_power_counts_resolve_the_change_four_times_in_five():
    # seeds that move a run as a whole, and a true change a sixth of their spread: the count read
    # off 2-seed pilot tables resolves it in about 80% of tables, half of it in about 50%
    p = ci_coverage.power_check(sims=120, examples=300, pilot_seeds=2, pilot_rows=6, seed_sd=0.3,
                                effect=0.3, resamples=1000)
    assert p["delta"] == pytest.approx(0.0458, abs=0.001) and p["seeds"] > 4
    assert 0.68 <= p["resolved"] <= 0.92 and 0.3 <= p["half"] <= 0.65


def test_the_script_writes_its_table(tmp_path):
    out = tmp_path / "cov.md"
    assert ci_coverage.main(["--sims", "5", "--resamples", "200", "--settings", "2x2",
                             "--seed_sd", "0.1", "--power", "0.1:0.3", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| 2 | 2 | 0.1 |" in text and "coverage: compare.py" in text
    assert re.search(r"^\| 0\.1 \| 0\.3 \| 0\.0\d{3} \| \d+ \| [01]\.\d{3} \| [01]\.\d{3} \|$", text, re.M)
    assert ci_coverage.main(["--sims", "5", "--resamples", "200", "--settings", "2x2",
                             "--seed_sd", "0", "--power", "--out", str(out)]) == 0
    assert "Seeds counted" not in out.read_text()  # --power with nothing: no check
