"""samplers.TaskSampler: p_i ∝ N_i^α (proportional α=1, sqrt α=--sample_wt, annealed α from 1 to
0.2 over the epochs; Stickland & Murray, 2019), round robin, and determinism in (seed, epoch)."""
from __future__ import annotations

import math
from collections import Counter

import pytest

from samplers import KINDS, TaskSampler, annealed_alpha, task_probs

pytestmark = pytest.mark.usefixtures("one_thread")

SIZES = {"sst": 8544, "para": 141506, "sts": 6040}  # the real training set sizes
STEPS = 200_000


def expected(alpha: float) -> dict[str, float]:
    """p_i = N_i^α / Σ_j N_j^α, written out independently of samplers.task_probs."""
    w = {t: math.exp(alpha * math.log(n)) for t, n in SIZES.items()}
    z = sum(w.values())
    return {t: x / z for t, x in w.items()}


def check_frequencies(tasks: list[str], p: dict[str, float]):
    """Observed frequencies match p: per task within 5 standard errors, and a chi-square
    statistic (2 degrees of freedom) below 20 (p ≈ 5e-5 under the null)."""
    n = len(tasks)
    counts = Counter(tasks)
    assert set(counts) <= set(p)
    chi2 = 0.0
    for t, pt in p.items():
        freq = counts[t] / n
        se = math.sqrt(pt * (1 - pt) / n)
        assert abs(freq - pt) < max(5 * se, 1e-9), (t, freq, pt)
        assert abs(freq - pt) < 0.005, (t, freq, pt)
        chi2 += (counts[t] - n * pt) ** 2 / (n * pt)
    assert chi2 < 20.0, chi2


def test_task_probs_formula():
    for alpha in (1.0, 0.5, 0.3, 0.0):
        got = task_probs(SIZES, alpha)
        want = expected(alpha)
        assert sum(got.values()) == pytest.approx(1.0)
        for t in SIZES:
            assert got[t] == pytest.approx(want[t], rel=1e-12)
    # α = 0 is uniform, α = 1 is proportional to the sizes
    assert task_probs(SIZES, 0.0)["sts"] == pytest.approx(1 / 3)
    assert task_probs(SIZES, 1.0)["para"] == pytest.approx(141506 / (8544 + 141506 + 6040))


@pytest.mark.parametrize("kind,alpha,want_alpha", [
    ("proportional", 0.5, 1.0),   # proportional ignores --sample_wt
    ("sqrt", 0.5, 0.5),
    ("sqrt", 0.3, 0.3),
])
def test_frequencies_match_p(kind, alpha, want_alpha):
    s = TaskSampler(SIZES, kind, alpha=alpha, epochs=3, seed=5)
    assert s.probs(1) == pytest.approx(expected(want_alpha))
    check_frequencies(s.epoch_tasks(1, STEPS), expected(want_alpha))


def test_sqrt_differs_from_proportional():
    """The tolerance above is tight enough to tell the schemes apart."""
    p_sqrt, p_prop = expected(0.5), expected(1.0)
    assert abs(p_sqrt["sst"] - p_prop["sst"]) > 0.05
    tasks = TaskSampler(SIZES, "sqrt", 0.5, seed=0).epoch_tasks(0, 20_000)
    with pytest.raises(AssertionError):
        check_frequencies(tasks, p_prop)


def test_annealed_frequencies_each_epoch():
    E = 5
    s = TaskSampler(SIZES, "annealed", alpha=0.5, epochs=E, seed=3)
    for epoch, alpha in zip(range(E), (1.0, 0.8, 0.6, 0.4, 0.2)):
        assert s.alpha_at(epoch) == pytest.approx(alpha)
        assert s.probs(epoch) == pytest.approx(expected(alpha))
    for epoch in (0, 4):  # first and last epoch
        check_frequencies(s.epoch_tasks(epoch, STEPS), expected(s.alpha_at(epoch)))


def test_annealed_alpha_schedule():
    assert [annealed_alpha(e, 5) for e in range(5)] == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2])
    assert annealed_alpha(0, 1) == 1.0
    assert annealed_alpha(0, 2) == pytest.approx(1.0) and annealed_alpha(1, 2) == pytest.approx(0.2)
    # linear: equal steps between consecutive epochs, from 1.0 to 0.2
    E = 9
    a = [annealed_alpha(e, E) for e in range(E)]
    assert a[0] == pytest.approx(1.0) and a[-1] == pytest.approx(0.2)
    diffs = [y - x for x, y in zip(a, a[1:])]
    assert diffs == pytest.approx([-0.8 / (E - 1)] * (E - 1))
    # one epoch: proportional sampling
    s = TaskSampler(SIZES, "annealed", epochs=1)
    assert s.alpha_at(0) == 1.0
    assert s.probs(0) == pytest.approx(expected(1.0))


def test_round_robin_cycles_exactly():
    s = TaskSampler(SIZES, "round_robin", seed=1)
    tasks = s.epoch_tasks(0, 10)
    assert tasks == ["sst", "para", "sts"] * 3 + ["sst"]
    assert s.epoch_tasks(3, 10) == tasks  # the same in every epoch
    assert s.probs(0) == pytest.approx({t: 1 / 3 for t in SIZES})
    two = TaskSampler({"para": 5, "sts": 100}, "round_robin")
    assert two.epoch_tasks(0, 5) == ["para", "sts", "para", "sts", "para"]


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "round_robin"])
def test_same_seed_and_epoch_same_sequence(kind):
    a = TaskSampler(SIZES, kind, 0.5, epochs=4, seed=7)
    b = TaskSampler(SIZES, kind, 0.5, epochs=4, seed=7)
    assert a.epoch_tasks(2, 500) == b.epoch_tasks(2, 500)
    assert a.epoch_tasks(2, 500) == a.epoch_tasks(2, 500)  # no hidden state between calls
    assert a.epoch_tasks(1, 500) != a.epoch_tasks(2, 500)  # epochs differ
    c = TaskSampler(SIZES, kind, 0.5, epochs=4, seed=8)
    assert c.epoch_tasks(2, 500) != a.epoch_tasks(2, 500)  # seeds differ
    # a prefix of a longer epoch is not required, but the length is honoured
    assert len(a.epoch_tasks(0, 37)) == 37


def test_unknown_kind_raises():
    with pytest.raises(ValueError, match="unknown sampling"):
        TaskSampler(SIZES, "uniform")
    with pytest.raises(ValueError):
        TaskSampler(SIZES, "")
