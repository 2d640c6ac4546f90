"""compare.py: paired bootstrap Δ and CIs between run folders built from synthetic dev scores."""
from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import bootstrap
import compare
import power
import multitask_classifier as mc
from batching import TASKS
from evaluation import METRIC_NAMES, decide, save_dev_scores, task_metric

SIZES = {"sst": 200, "para": 150, "sts": 100}
B = 2000  # resamples: enough for stable percentiles, fast


def _labels(task: str, ids_seed: int = 0) -> np.ndarray:
    g = np.random.default_rng(ids_seed)
    n = SIZES[task]
    if task == "sst":
        return g.integers(0, 5, n)
    if task == "para":
        return g.integers(0, 2, n)
    return g.uniform(0, 5, n).astype(np.float32)


def _scores(task: str, labels: np.ndarray, wrong: int = 0, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """Scores right on every example except the first `wrong` (SST, PARA); STS: labels + noise."""
    if task == "sst":
        pred = labels.copy()
        pred[:wrong] = (pred[:wrong] + 1) % 5
        return np.eye(5, dtype=np.float32)[pred] * 0.6 + 0.08
    if task == "para":
        pred = labels.copy()
        pred[:wrong] = 1 - pred[:wrong]
        return np.where(pred == 1, 0.9, 0.1).astype(np.float32)
    return labels + noise * np.random.default_rng(seed).standard_normal(len(labels)).astype(np.float32)


def make_run(folder: Path, argv=(), sst_wrong=0, para_wrong=0, sts_noise=0.5, sts_seed=0,
             tasks=("sst", "para", "sts"), ids_prefix="id", wall_s=None) -> Path:
    """A run folder: config.json from the real parser, dev_scores.npz via save_dev_scores."""
    folder.mkdir(parents=True)
    config = vars(mc.parse_args(["--out_dir", str(folder), *map(str, argv)]))
    (folder / "config.json").write_text(json.dumps(config))
    if wall_s is not None:
        (folder / "summary.json").write_text(json.dumps({"wall_s": wall_s}))
    scores, dev, examples = {}, {}, {}
    wrong = {"sst": sst_wrong, "para": para_wrong}
    for t in tasks:
        labels = _labels(t)
        scores[t] = _scores(t, labels, wrong.get(t, 0), sts_noise, sts_seed)
        ids = [f"{ids_prefix}{t}{i}" for i in range(len(labels))]
        dev[t] = SimpleNamespace(labels=torch.tensor(labels), ids=ids)
        examples[t] = [SimpleNamespace(sent1=f"s{i}", sent2=None if t == "sst" else f"t{i}")
                       for i in range(len(labels))]
    save_dev_scores(folder / "dev_scores.npz", scores, dev, examples)
    return folder


def test_k_wrong_sst_predictions_give_delta_minus_k_over_n(tmp_path):
    k, n = 12, SIZES["sst"]
    ref = make_run(tmp_path / "ref")
    worse = make_run(tmp_path / "worse", sst_wrong=k)
    rows = compare.compare([ref, worse], resamples=B, seed=0)
    assert rows[0]["delta"] is None and rows[0]["metrics"]["sst_acc"] == 1.0
    d, lo, hi = rows[1]["delta"]["sst_acc"]
    assert d == pytest.approx(-k / n, abs=1e-12)
    # worse is never right where ref is wrong: every replicate's Δ is <= 0, and -k/n is inside
    assert lo < d < hi < 0
    se = np.sqrt(k / n * (1 - k / n) / n)  # the binomial SE of the paired difference
    assert 2.5 * se < hi - lo < 5 * se
    for task in ("para_acc", "sts_r"):
        assert rows[1]["delta"][task] == (0.0, 0.0, 0.0)
    # the other tasks identical: overall moves by Δ sst / 3, replicate by replicate
    od, olo, ohi = rows[1]["delta"]["overall"]
    assert (od, olo, ohi) == pytest.approx((d / 3, lo / 3, hi / 3), rel=1e-9)
    assert rows[1]["significant"]


def test_self_comparison_is_exactly_zero(tmp_path):
    run = make_run(tmp_path / "a", sst_wrong=30, para_wrong=20, sts_noise=1.0)
    twin = tmp_path / "b"  # the same scores in another folder (another out_dir)
    make_run(twin, sst_wrong=30, para_wrong=20, sts_noise=1.0)
    rows = compare.compare([run, run, twin], resamples=B, seed=3)
    assert [r["name"] for r in rows] == ["a", "a (2)", "b"]  # same seed: not a group of seeds
    for row in rows[1:]:
        assert set(row["delta"]) == {"sst_acc", "para_acc", "sts_r", "overall"}
        for d, lo, hi in row["delta"].values():
            assert d == 0.0 and lo == 0.0 and hi == 0.0
        assert not row["significant"]
    text = compare.markdown(rows)
    assert "a (2): Δ overall +0.0000 95% CI [0.0000, 0.0000]" in text
    assert "-0.0000" not in text


def test_runs_differing_only_by_seed_form_a_group(tmp_path):
    s1 = make_run(tmp_path / "default-s1", ["--seed", 1], sst_wrong=10, sts_seed=1, wall_s=600)
    lr = make_run(tmp_path / "lr", ["--seed", 1, "--lr", 3e-4], sst_wrong=5)
    # ignored keys (threads, prediction paths, out_dir) do not split the group
    s2 = make_run(tmp_path / "default-s2", ["--seed", 2, "--threads", 4, "--sst_dev_out", "x.csv"],
                  sst_wrong=20, sts_seed=2, wall_s=720)
    rows = compare.compare([s1, lr, s2], resamples=B)
    assert [(r["name"], r["seeds"]) for r in rows] == [("default", [1, 2]), ("lr", [1])]
    assert rows[0]["metrics"]["sst_acc"] == pytest.approx((0.95 + 0.90) / 2)
    assert rows[0]["sd"]["sst_acc"] == pytest.approx(np.std([0.95, 0.90], ddof=1))
    assert rows[1]["sd"]["sst_acc"] is None and rows[0]["wall_s"] == 660
    assert rows[1]["delta"]["sst_acc"][0] == pytest.approx(0.975 - 0.925)
    text = compare.markdown(rows)
    assert "| default | 2 (1, 2) | 0.9250 ± 0.0354 |" in text
    assert "Δ overall vs default (95% CI)" in text and "reference" in text
    # --no_group: one row per run
    assert len(compare.compare([s1, lr, s2], resamples=B, by_seed=False)) == 3
    # a run linked into another sweep's folder is named by the link: it joins that folder's row
    other = tmp_path / "sweep"
    other.mkdir()
    for seed, run in ((1, s1), (2, s2)):
        (other / f"base-s{seed}").symlink_to(run, target_is_directory=True)
    assert [r["name"] for r in compare.compare([other / "base-s1", other / "base-s2", lr], resamples=B)] == ["base", "lr"]


def test_the_group_replicate_is_the_mean_over_seeds(tmp_path):
    ref = make_run(tmp_path / "ref", ["--lr", 3e-4])  # another configuration: not one of the seeds
    s1 = make_run(tmp_path / "x-s1", ["--seed", 1], sst_wrong=8, para_wrong=3)
    s2 = make_run(tmp_path / "x-s2", ["--seed", 2], sst_wrong=16, para_wrong=9)
    runs = [compare.load_run(p) for p in (ref, s1, s2)]
    reps = bootstrap.replicate_metrics(runs, ["sst", "para", "sts"], resamples=B, seed=0)
    (ci,) = bootstrap.bootstrap_deltas([[reps[0]], [reps[1], reps[2]]])[1:]
    delta = (reps[1]["sst_acc"] + reps[2]["sst_acc"]) / 2 - reps[0]["sst_acc"]
    assert ci["sst_acc"] == pytest.approx(tuple(np.percentile(delta, [2.5, 97.5])))
    # compare() adds the noise of x's two seeds that the bootstrap does not carry, times
    # sqrt(1/2 + 1/1), t(1) draws
    rows = compare.compare([ref, s1, s2], resamples=B, seed=0)
    a, b = reps[1]["sst_acc"], reps[2]["sst_acc"]
    beyond = np.sqrt(2 * (8 / 200 / 2) ** 2 - 2 * np.var((a - b) / 2))  # (spread - between) / df
    assert rows[1]["name"] == "x" and rows[1]["seed_df"] == 1 and beyond > 0
    t = np.random.default_rng([0, 7919, 1]).standard_t(1, size=B)
    noisy = np.percentile(delta + beyond * np.sqrt(1 / 2 + 1) * t, [2.5, 97.5])
    assert rows[1]["delta"]["sst_acc"][1:] == pytest.approx(tuple(noisy))


def test_ensemble_rows_score_the_mean_of_their_seeds_scores_and_leave_the_other_rows_alone(tmp_path, capsys):
    ref = make_run(tmp_path / "ref", ["--lr", 3e-4], sst_wrong=20, wall_s=100)
    seeds = [make_run(tmp_path / f"x-s{k}", ["--seed", k], sst_wrong=4 * k, para_wrong=k,
                      sts_noise=1.0, sts_seed=k, wall_s=60 * k) for k in (1, 2, 3)]
    plain = compare.compare([ref, *seeds], resamples=B)
    rows = compare.compare([ref, *seeds], resamples=B, ensembles=True)
    assert rows[:2] == plain  # the ensemble row comes last: the others keep their CIs
    e = rows[2]
    assert (e["name"], e["seeds"], e["sd"]["overall"]) == ("x ensemble", ["ensemble of 3"], None)
    assert e["wall_s"] == 60 + 120 + 180  # what training the three cost
    # by hand: every task's scores averaged over the seeds, then decided and scored
    dev = [np.load(s / "dev_scores.npz") for s in seeds]
    want = {METRIC_NAMES[t]: task_metric(t, decide(t, np.mean([d[f"{t}_scores"] for d in dev], 0)),
                                         dev[0][f"{t}_labels"]) for t in TASKS}
    assert e["metrics"] == pytest.approx(bootstrap.with_overall(want))
    # averaging three independent noises: the ensemble's STS r beats its best member's
    assert e["metrics"]["sts_r"] > max(bootstrap.run_metrics(compare.load_run(s), ["sts"])["sts_r"] for s in seeds)
    assert e["delta"]["overall"][0] == pytest.approx(e["metrics"]["overall"] - rows[0]["metrics"]["overall"])
    # the command line; without a group of several seeds there is nothing to ensemble
    assert compare.main([str(ref), *map(str, seeds), "--ensemble", "--resamples", "5000"]) == 0
    assert "| x ensemble | ensemble of 3 |" in capsys.readouterr().out
    assert compare.main([str(ref), str(seeds[0]), "--ensemble", "--resamples", "5000"]) == 2
    assert "no group of two or more runs" in capsys.readouterr().err


def test_a_difference_within_the_seed_noise_is_not_significant(tmp_path):
    # b is worse than a at every seed's pairing, by 0.075 SST accuracy, so a bootstrap over the dev
    # examples alone calls it certain; but a's own two seeds are 0.15 apart, so another pair of
    # seeds could well reverse it.
    a = [make_run(tmp_path / f"a-s{s}", ["--seed", s], sst_wrong=w) for s, w in ((1, 10), (2, 40))]
    b = [make_run(tmp_path / f"b-s{s}", ["--seed", s, "--lr", 3e-4], sst_wrong=w)
         for s, w in ((1, 25), (2, 55))]
    runs = [compare.load_run(p) for p in a + b]
    reps = bootstrap.replicate_metrics(runs, ["sst", "para", "sts"], resamples=B, seed=0)
    examples_only = bootstrap.bootstrap_deltas([reps[:2], reps[2:]])[1]["overall"]
    assert examples_only[1] < 0  # the old CI: excludes 0
    rows = compare.compare(a + b, resamples=B, seed=0)
    d, lo, hi = rows[1]["delta"]["overall"]
    assert d == pytest.approx(-0.075 / 3) and lo < d < 0 < hi and not rows[1]["significant"]
    # the seeds are 0.15 apart on 30 examples: far more than resampling 200 examples explains
    assert rows[1]["seed_df"] == 2 and 0.8 * 0.05 / np.sqrt(2) < rows[1]["seed_sd"] < 0.05 / np.sqrt(2)
    assert "2 degrees of freedom" in compare.markdown(rows)


def test_seeds_that_agree_add_no_noise_and_one_seed_a_row_is_said_to_leave_it_out(tmp_path):
    twins = [make_run(tmp_path / f"a-s{s}", ["--seed", s], sst_wrong=10) for s in (1, 2)]
    other = [make_run(tmp_path / f"b-s{s}", ["--seed", s, "--lr", 3e-4], sst_wrong=20) for s in (1, 2)]
    rows = compare.compare(twins + other, resamples=B, seed=0)
    runs = [compare.load_run(p) for p in twins + other]
    reps = bootstrap.replicate_metrics(runs, ["sst", "para", "sts"], resamples=B, seed=0)
    assert rows[1]["seed_sd"] == 0.0
    assert rows[1]["delta"]["overall"][1:] == pytest.approx(
        bootstrap.bootstrap_deltas([reps[:2], reps[2:]])[1]["overall"])
    single = compare.markdown(compare.compare([twins[0], other[0]], resamples=B, seed=0))
    assert "the noise of training is not in the CI" in single


def test_a_row_training_like_its_reference_at_some_of_its_seeds_is_compared_at_those_seeds(tmp_path):
    # The reference's third seed is far worse than its first two. A row that trains alike (PARA
    # predicted from one pair order, an average of the weights) at the first two seeds, scoring
    # the same, must read Δ = 0 exactly, not the +0.025 that the reference's mean over all three
    # seeds gives; a row that trains otherwise is still measured against all three.
    ref = [make_run(tmp_path / f"ref-s{s}", ["--seed", s], sst_wrong=w, sts_seed=s)
           for s, w in ((1, 10), (2, 20), (3, 60))]
    same = [make_run(tmp_path / f"same-s{s}", ["--seed", s, "--pair_orders", "one", "--swa", 0.5],
                     sst_wrong=w, sts_seed=s) for s, w in ((1, 10), (2, 20))]
    lr = [make_run(tmp_path / f"lr-s{s}", ["--seed", s, "--lr", 3e-4], sst_wrong=w, sts_seed=s)
          for s, w in ((1, 10), (2, 20))]
    seed4 = make_run(tmp_path / "one-s4", ["--seed", 4, "--pair_orders", "one"], sst_wrong=20, sts_seed=1)
    rows = compare.compare([*ref, *same, *lr, seed4], resamples=B, seed=0)
    assert [(r["name"], r["paired_seeds"]) for r in rows] == [
        ("ref", None), ("same", [1, 2]), ("lr", None), ("one-s4", None)]
    assert rows[0]["metrics"]["sst_acc"] == pytest.approx(1 - 90 / 200 / 3)  # its row: all 3 seeds
    assert all(d == 0.0 for d, _, _ in rows[1]["delta"].values())
    # another training, or a seed the reference lacks: against all 3 seeds (30 errors on average)
    assert rows[2]["delta"]["sst_acc"][0] == pytest.approx((30 - 15) / 200)
    assert rows[3]["delta"]["sst_acc"][0] == pytest.approx((30 - 20) / 200)
    # the CI: the same replicates against the reference's seeds 1 and 2; the rows that train
    # otherwise with the pooled seed noise, the paired row with the spread of its per-seed Δ alone
    parts = ([0, 1, 2], [3, 4], [5, 6], [7])
    runs = [compare.load_run(p) for p in [*ref, *same, *lr, seed4]]
    reps = bootstrap.replicate_metrics(runs, ["sst", "para", "sts"], resamples=B, seed=0)
    per_seed = [[bootstrap.with_overall(bootstrap.run_metrics(runs[i], ["sst", "para", "sts"])) for i in g]
                for g in parts]
    spread, df = bootstrap.seed_spread(per_seed, [[bootstrap.with_overall(reps[i]) for i in g] for g in parts])
    assert df == 4 and spread["sst_acc"] > 0  # the third seed: noise beyond the bootstrap
    cis = bootstrap.bootstrap_deltas([[reps[i] for i in g] for g in parts], spread, df, 0,
                                   [None, [0, 1], None, None])
    for r, ci in zip(rows[2:], cis[2:]):
        assert r["delta"]["overall"][1:] == pytest.approx(ci["overall"])
    # "same" scores as the reference at each of its seeds: every replicate's Δ is 0, and none of
    # the reference's seed-to-seed spread (its third seed) widens it
    assert rows[1]["paired_sd"] == 0.0 and rows[1]["delta"]["overall"][1:] == (0.0, 0.0)
    assert cis[1]["overall"][1] > 0  # (what the unpaired noise would have made of it)
    text = compare.markdown(rows)
    assert "same: Δ overall +0.0000 95% CI" in text and "] at seeds 1, 2\n" in text
    assert "A Δ 'at seeds S' is against the reference's runs at those seeds alone" in text
    same_row = next(l for l in text.splitlines() if l.startswith("| same"))
    assert same_row.count("at seeds") == 1  # on the Δ overall cell only
    assert text.count("] at seeds") == 2  # that cell and its line below the table
    # at all of the reference's seeds: paired seed by seed as well
    assert compare.compare([*ref[:2], *same], resamples=B)[1]["paired_seeds"] == [1, 2]


def test_a_paired_rows_ci_carries_how_its_effect_varies_with_the_seed(tmp_path):
    # The same training scored otherwise (--int8) at three seeds: 2, 4 and 12 more SST errors
    # than its reference's run at each seed, whose own seeds differ far more (10, 40, 70 errors).
    # Its CI is the bootstrap of the paired Δ plus the spread of the three Δs, not of the seeds.
    ref = [make_run(tmp_path / f"ref-s{s}", ["--seed", s], sst_wrong=w, sts_seed=s)
           for s, w in ((1, 10), (2, 40), (3, 70))]
    q = [make_run(tmp_path / f"q-s{s}", ["--seed", s, "--int8"], sst_wrong=w, sts_seed=s)
         for s, w in ((1, 12), (2, 44), (3, 82))]
    rows = compare.compare([*ref, *q], resamples=B, seed=0)
    assert rows[1]["paired_seeds"] == [1, 2, 3]
    assert rows[1]["delta"]["sst_acc"][0] == pytest.approx(-6 / 200)
    runs = [compare.load_run(p) for p in [*ref, *q]]
    reps = [bootstrap.with_overall(r) for r in bootstrap.replicate_metrics(runs, ["sst", "para", "sts"], resamples=B, seed=0)]
    metrics = [bootstrap.with_overall(bootstrap.run_metrics(r, ["sst", "para", "sts"])) for r in runs]
    sd, df = bootstrap.paired_spread(metrics[3:], reps[3:], metrics[:3], reps[:3])
    assert df == 2 and 0 < sd["overall"] < rows[1]["seed_sd"]  # the Δs vary less than the seeds
    assert rows[1]["paired_sd"] == pytest.approx(sd["overall"])
    ci = bootstrap.bootstrap_deltas([reps[:3], reps[3:]], {"overall": rows[1]["seed_sd"]}, 4, 0, [None, [0, 1, 2]],
                                  [None, (sd, df)])[1]
    assert rows[1]["delta"]["overall"][1:] == pytest.approx(ci["overall"])
    unpaired = bootstrap.bootstrap_deltas([reps[:3], reps[3:]], {k: rows[1]["seed_sd"] for k in sd}, 4, 0)[1]
    lo, hi = ci["overall"]
    assert unpaired["overall"][0] < lo < hi < unpaired["overall"][1]


def test_how_many_seeds_reads_each_rows_ci_forward(tmp_path, capsys):
    # A reference whose seeds differ a lot (10, 30, 20 SST errors), a row that trains otherwise at
    # two seeds, and a row scored otherwise on the reference's weights at two of its seeds, its Δ
    # steady (2 and 3 more errors): the paired row resolves far smaller changes, and so needs
    # far fewer seeds for the same one.
    ref = [make_run(tmp_path / f"ref-s{s}", ["--seed", s], sst_wrong=w, sts_seed=s)
           for s, w in ((1, 10), (2, 30), (3, 20))]
    lr = [make_run(tmp_path / f"lr-s{s}", ["--seed", s, "--lr", 3e-4], sst_wrong=w, sts_seed=s)
          for s, w in ((1, 14), (2, 26))]
    q = [make_run(tmp_path / f"q-s{s}", ["--seed", s, "--int8"], sst_wrong=w, sts_seed=s)
         for s, w in ((1, 12), (2, 33))]
    rows = compare.compare([*ref, *lr, *q], resamples=B, seed=0, ensembles=True)
    assert [r["name"] for r in rows[3:]] == ["ref ensemble", "lr ensemble", "q ensemble"]
    note = compare.seeds_note(rows, 0.003)
    seeds = {}
    for r, n_ref in ((rows[1], 3), (rows[2], None)):  # q: Δ at its own seeds, paired
        noise = r["seed_sd"] if n_ref else r["paired_sd"]
        v = power.per_seed_variance(r["boot_se"], noise, 2, n_ref)
        seeds[r["name"]] = power.seeds_needed(v, 0.003, paired=n_ref is None)
        lo, hi = r["delta"]["overall"][1:]
        figures = f"{r['name']} ±{power.detectable(power.ci_se(lo, hi)):.4f} at 2 seeds, about {seeds[r['name']]}"
        # the normal approximation the count uses is no wider than the CI, whose t draws of the
        # seeds' noise (4 degrees of freedom here) widen it
        assert 0.5 < power.standard_error(v, 2, n_ref) / power.ci_se(lo, hi) < 1.1
        assert re.search(re.escape(figures) + "[;.] ", note)
    assert seeds["q"] < seeds["lr"]
    assert "ensemble ±" not in note and "for planning runs" in note  # an ensemble is one run: nothing to say
    assert note in compare.markdown(rows, 0.003) and note != compare.seeds_note(rows, 0.01)
    # one seed a row: said to be lower still; the reference alone: no note
    single = compare.compare([ref[0], lr[0]], resamples=B, seed=0)
    assert "lr-s1 ±" in compare.seeds_note(single) and "lower still" in compare.seeds_note(single)
    assert compare.seeds_note(rows[:1]) == "" and "How many seeds" not in compare.markdown(rows[:1])
    # the command line: --target sets the Δ counted for; a Δ of 0 or less is refused in one line
    assert compare.main([*map(str, ref + lr), "--resamples", "5000", "--target", "0.05"]) == 0
    assert re.search(r"to resolve ±0\.0500: lr ±0\.\d{4} at 2 seeds, about \d+\. ", capsys.readouterr().out)
    assert compare.main([*map(str, ref + lr), "--target", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--target 0.0" in err


def test_missing_task_is_left_out_with_a_note(tmp_path, capsys):
    a = make_run(tmp_path / "a")
    b = make_run(tmp_path / "b", sst_wrong=4, tasks=("sst", "para"))
    rows = compare.compare([a, b], resamples=B)
    assert set(rows[1]["delta"]) == {"sst_acc", "para_acc", "overall"}
    assert "sts left out" in capsys.readouterr().err
    assert "Note: sts left out" in compare.markdown(rows)


def test_refuses_other_dev_ids_and_folders_without_scores(tmp_path, capsys):
    a = make_run(tmp_path / "a")
    other = make_run(tmp_path / "other", ids_prefix="x")
    assert compare.main([str(a), str(other)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "other" in err and "ids" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    assert compare.main([str(a), str(empty)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "empty" in err and "dev_scores.npz" in err
    # config.json is read as --config reads it: a bad one is the same one-line error
    (a / "config.json").write_text("[1, 2]")
    assert compare.main([str(a), str(other)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "config.json: not a valid configuration" in err


def test_cli_writes_markdown_and_forest_plot(tmp_path, capsys):
    a = make_run(tmp_path / "base", sst_wrong=20, para_wrong=10)
    b = make_run(tmp_path / "better", sst_wrong=5, para_wrong=10, sts_noise=0.3)
    c = make_run(tmp_path / "same", sst_wrong=20, para_wrong=11)
    md, png = tmp_path / "cmp.md", tmp_path / "cmp.png"
    assert compare.main([str(a), str(b), str(c), "--out", str(md), "--plot", str(png),
                         "--resamples", "5000"]) == 0
    out = capsys.readouterr().out
    assert md.read_text() == out
    line = re.search(r"^better: Δ overall \+(\d\.\d{4}) 95% CI \[(\d\.\d{4}), (\d\.\d{4})\]$", out, re.MULTILINE)
    assert line and 0 < float(line[2]) < float(line[1]) < float(line[3])
    assert re.search(r"^same: Δ overall -0\.00\d\d 95% CI \[-0\.\d{4}, 0\.\d{4}\]$", out, re.MULTILINE)
    assert "| better * |" in out and "| same |" in out and "`*`" in out
    assert re.search(r"\d of the 8 95% CIs of Δ here exclude 0; were no change real, about 0\.4 ", out)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    assert compare.main([str(a), "--resamples", "100"]) == 2  # too few for a 95% CI


def test_the_chance_note_counts_the_cis_that_exclude_0_against_one_in_twenty():
    rows = [{"delta": None},
            {"delta": {"overall": (0.010, 0.002, 0.020), "sst_acc": (0.03, -0.01, 0.07)}},
            {"delta": {"overall": (-0.010, -0.020, -0.001), "sst_acc": (0.0, -0.05, 0.05)}},
            {"delta": {"overall": (0.001, -0.004, 0.006), "sst_acc": (0.04, 0.01, 0.07)}}]
    assert compare.chance_note(rows).startswith("3 of the 6 95% CIs of Δ here exclude 0; were no change "
                                                "real, about 0.3 would by chance")
    assert compare.chance_note(rows, ["overall"]).startswith("2 of the 3 95% CIs")
    assert compare.chance_note(rows, ["sts_r"]) == compare.chance_note(rows[:1]) == ""


def test_same_seed_same_ci(tmp_path):
    a = make_run(tmp_path / "a", sst_wrong=20)
    b = make_run(tmp_path / "b", sst_wrong=25, sts_noise=0.7)
    first, again, other = (compare.compare([a, b], resamples=B, seed=s)[1]["delta"] for s in (7, 7, 8))
    assert first == again
    assert first["overall"] != other["overall"]


def test_a_run_saved_before_a_flag_existed_groups_with_runs_at_its_default(tmp_path):
    old = make_run(tmp_path / "x-s1", ["--seed", "1"])
    config = json.loads((old / "config.json").read_text())
    del config["precision"], config["compile"]  # flags added after that run was saved
    (old / "config.json").write_text(json.dumps(config))
    make_run(tmp_path / "x-s2", ["--seed", "2"], sst_wrong=3)
    rows = compare.compare([tmp_path / "x-s1", tmp_path / "x-s2"], resamples=5000)
    assert len(rows) == 1 and rows[0]["name"] == "x" and rows[0]["seeds"] == [1, 2]


def test_a_run_saved_before_a_default_changed_groups_with_runs_at_the_old_value(tmp_path):
    # --rdrop was added at 0 and is 3 now: a run saved before it existed trained without R-Drop,
    # so it groups with runs at --rdrop 0, not with runs at today's default
    assert mc.parse_args([]).rdrop != 0
    old = make_run(tmp_path / "x-s1", ["--seed", "1"])
    config = json.loads((old / "config.json").read_text())
    del config["rdrop"]
    (old / "config.json").write_text(json.dumps(config))
    make_run(tmp_path / "x-s2", ["--seed", "2", "--rdrop", "0"], sst_wrong=3)
    make_run(tmp_path / "y-s3", ["--seed", "3"], sst_wrong=1)
    rows = compare.compare([tmp_path / "x-s1", tmp_path / "x-s2", tmp_path / "y-s3"], resamples=5000)
    assert [(r["name"], r["seeds"]) for r in rows] == [("x", [1, 2]), ("y-s3", [3])]
    assert compare.run_config(old)["rdrop"] == 0


def test_a_setting_its_extension_never_read_does_not_split_a_group(tmp_path):
    # --smart_eps went from 1e-5 to 1e-2: runs without --smart never read it, so a run saved before
    # groups with today's; with --smart on, the ε is part of what was trained
    make_run(tmp_path / "x-s1", ["--seed", "1", "--smart_eps", "1e-5"])
    make_run(tmp_path / "x-s2", ["--seed", "2"], sst_wrong=3)
    make_run(tmp_path / "s-s1", ["--seed", "1", "--smart", "--smart_eps", "1e-5"], sst_wrong=1)
    make_run(tmp_path / "t-s2", ["--seed", "2", "--smart"], sst_wrong=2)
    rows = compare.compare([tmp_path / n for n in ("x-s1", "x-s2", "s-s1", "t-s2")], resamples=5000)
    assert [(r["name"], r["seeds"]) for r in rows] == [("x", [1, 2]), ("s-s1", [1]), ("t-s2", [2])]
