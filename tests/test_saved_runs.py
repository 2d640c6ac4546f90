"""saved_runs.py: --eval_only's run folders (--scores_out) and its prediction-time settings."""
from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import pytest
import torch

import compare
import multitask_classifier as mc
import saved_runs
from conftest import DATA_FILES, no_mlm
from checkpoint import read_tensors
from ema import FILE as AVERAGE
from evaluation import load_dev_scores

TINY_RUN = ("--max_train_examples", "16", "--epochs", "1")
ONE = ("--pair_orders", "one")  # the run trains (and predicts) on one order


@pytest.fixture(scope="module")
def trained(tiny_bert_dir, tiny_data_dir, tmp_path_factory):
    """A tiny run trained on one pair order (the default), and a factory of --eval_only argvs."""
    root = tmp_path_factory.mktemp("saved")

    def argv(out, *extra):
        a = ["--bert_model", str(tiny_bert_dir), "--out_dir", str(root / out), *no_mlm(root), "--batch_size", "8",
             "--threads", "1", "--eval_batch_size", "16", "--no_predictions"]
        for flag, (name, _) in DATA_FILES.items():
            a += [f"--{flag}", str(tiny_data_dir / name)]
        return a + [str(x) for x in extra]
    assert mc.main(argv("run", *TINY_RUN, *ONE)) == 0
    return argparse.Namespace(run=root / "run", root=root, argv=argv)


def test_scores_out_of_the_runs_own_settings_is_the_run_itself(trained):
    out = trained.root / "same"
    assert mc.main(trained.argv("unused", "--eval_only", "--checkpoint", trained.run, "--scores_out", out)) == 0
    mine, theirs = load_dev_scores(out / "dev_scores.npz"), load_dev_scores(trained.run / "dev_scores.npz")
    assert set(mine) == set(theirs) == {"sst", "para", "sts"}
    for t in mine:
        np.testing.assert_allclose(mine[t]["scores"], theirs[t]["scores"], atol=1e-5)
        assert (mine[t]["ids"] == theirs[t]["ids"]).all()
    # compare.py takes it for a run of the same configuration, and its wall time for the run's
    run_cfg, cfg = compare.run_config(trained.run), compare.run_config(out)
    assert compare.model_key(cfg) == compare.model_key(run_cfg) and cfg["checkpoint"] == [str(trained.run)]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["wall_s"] == json.loads((trained.run / "summary.json").read_text())["wall_s"]
    assert summary["best"]["overall"] == pytest.approx(
        json.loads((trained.run / "summary.json").read_text())["best"]["overall"], abs=1e-4)
    assert not (trained.root / "unused").exists()  # --out_dir is training's: evaluation writes none


def test_pair_orders_predict_scores_a_one_order_run_from_both_orders(trained):
    out = trained.root / "predict"
    assert mc.main(trained.argv("unused", "--eval_only", "--checkpoint", trained.run, "--pair_orders", "predict",
                                "--scores_out", out)) == 0
    cfg = compare.run_config(out)
    assert cfg["pair_orders"] == "predict"
    assert compare.model_key(cfg) != compare.model_key(compare.run_config(trained.run))  # a row of its own
    one = load_dev_scores(trained.run / "dev_scores.npz")
    both = load_dev_scores(out / "dev_scores.npz")
    assert not np.allclose(both["para"]["scores"], one["para"]["scores"], atol=1e-4)  # PARA changed
    for t in ("sst", "sts"):  # the bi-encoded and single-sentence tasks did not
        np.testing.assert_allclose(both[t]["scores"], one[t]["scores"], atol=1e-5)
    # P(paraphrase) is the sigmoid of the mean of the two orders' logits: with the one-order logits
    # known from the run itself, the swapped order's logit follows, and must lie where a model puts
    # it (finite, not the one-order logit again for every pair)
    logit_one = torch.logit(torch.from_numpy(one["para"]["scores"]).double(), eps=1e-7)
    logit_mean = torch.logit(torch.from_numpy(both["para"]["scores"]).double(), eps=1e-7)
    swapped = 2 * logit_mean - logit_one
    assert torch.isfinite(swapped).all() and not torch.allclose(swapped, logit_one, atol=1e-3)
    # and compare.py pairs it with the run example by example: Δ SST and STS exactly 0
    rows = compare.compare([trained.run, out], resamples=5000)
    assert rows[1]["delta"]["sst_acc"][0] == 0 and rows[1]["delta"]["sts_r"][0] == pytest.approx(0, abs=1e-6)


def test_eval_only_refuses_what_it_cannot_do(trained, capsys):
    run = trained.run
    both = trained.argv("u", "--eval_only", "--checkpoint", run, "--pair_orders", "both")
    two = trained.argv("u", "--eval_only", "--checkpoint", run, run, "--scores_out", trained.root / "x")
    for argv, message in ((both, "--pair_orders both changes training"), (two, "--scores_out scores one run")):
        assert mc.main(argv) == 2
        assert message in capsys.readouterr().err


def test_scores_out_needs_eval_only(trained, capsys):
    assert mc.main(trained.argv("x", *TINY_RUN, "--scores_out", trained.root / "y")) == 2
    assert "add --eval_only --checkpoint RUN" in capsys.readouterr().err


def test_a_run_predicting_both_orders_scores_one_when_asked(trained):
    # the default trains on one order and predicts from both: `--pair_orders one` scores it as a
    # one-order run (the run trained with --pair_orders one at the same seed is the same model)
    both = trained.root / "both-run"
    assert mc.main(trained.argv("both-run", *TINY_RUN)) == 0
    assert compare.run_config(both)["pair_orders"] == "predict"
    out = trained.root / "both-as-one"
    assert mc.main(trained.argv("unused", "--eval_only", "--checkpoint", both, *ONE, "--scores_out", out)) == 0
    np.testing.assert_allclose(load_dev_scores(out / "dev_scores.npz")["para"]["scores"],
                               load_dev_scores(trained.run / "dev_scores.npz")["para"]["scores"], atol=1e-5)


def test_raw_weights_of_an_swa_run_are_the_same_run_without_the_average(trained):
    swa = trained.root / "swa-run"
    assert mc.main(trained.argv("swa-run", *TINY_RUN, *ONE, "--swa", "0.5")) == 0
    raw, plain = read_tensors(swa / "state" / "model.safetensors"), read_tensors(trained.run / "state" / "model.safetensors")
    assert all(torch.equal(raw[n], plain[n]) for n in plain)  # the average changed no training step
    average = read_tensors(swa / "state" / AVERAGE)
    assert any(not torch.equal(raw[n], t) for n, t in average.items() if n in raw)  # and is not them
    out = trained.root / "swa-raw"
    assert mc.main(trained.argv("unused", "--eval_only", "--checkpoint", swa, "--raw_weights", "--scores_out", out)) == 0
    mine, theirs = load_dev_scores(out / "dev_scores.npz"), load_dev_scores(trained.run / "dev_scores.npz")
    for t in mine:  # the run without --swa, whose one evaluation was its last step
        np.testing.assert_allclose(mine[t]["scores"], theirs[t]["scores"], atol=1e-5)
    averaged = load_dev_scores(swa / "dev_scores.npz")
    assert any(not np.allclose(averaged[t]["scores"], mine[t]["scores"], atol=1e-5) for t in mine)
    cfg = compare.run_config(out)
    assert cfg["raw_weights"] is True and cfg["swa"] == 0.5  # a row of its own in compare.py
    keys = {compare.model_key(c) for c in (cfg, compare.run_config(swa), compare.run_config(trained.run))}
    assert len(keys) == 3


def test_int8_scores_the_same_weights_in_int8_as_a_row_of_its_own(trained, capsys):
    out = trained.root / "int8"
    assert mc.main(trained.argv("unused", "--eval_only", "--checkpoint", trained.run, "--int8", "--scores_out", out)) == 0
    mine, theirs = load_dev_scores(out / "dev_scores.npz"), load_dev_scores(trained.run / "dev_scores.npz")
    for t in mine:  # close to the run's own scores, but computed otherwise
        np.testing.assert_allclose(mine[t]["scores"], theirs[t]["scores"], atol=0.1)
    assert any(not np.allclose(mine[t]["scores"], theirs[t]["scores"], atol=1e-6) for t in mine)
    cfg, run_cfg = compare.run_config(out), compare.run_config(trained.run)
    # a row of its own, paired with the run it scored: the same training
    assert cfg["int8"] is True and compare.model_key(cfg) != compare.model_key(run_cfg)
    assert compare.training_key(cfg) == compare.training_key(run_cfg)
    assert mc.main(trained.argv("x", *TINY_RUN, "--int8")) == 2  # training: refused
    assert "--int8 is for an evaluation of a saved run" in capsys.readouterr().err


def test_int8_on_a_gpu_is_refused_in_one_line_before_any_work(trained):
    args = mc.parse_args(trained.argv("u", "--eval_only", "--checkpoint", trained.run, "--int8"))
    with pytest.raises(saved_runs.RunError, match="--int8 is CPU inference"):
        saved_runs.eval_only(args, torch.device("cuda"), None)


def test_raw_weights_needs_a_run_folder_with_its_state(trained, capsys):
    bare = trained.root / "no-state"
    shutil.copytree(trained.run, bare, ignore=shutil.ignore_patterns("state"))
    cases = ((trained.argv("x", *TINY_RUN, "--raw_weights"), "--raw_weights is for an evaluation of a saved run"),
             (trained.argv("u", "--eval_only", "--checkpoint", trained.run / "best", "--raw_weights"),
              "reads a run folder"),
             (trained.argv("u", "--eval_only", "--checkpoint", bare, "--raw_weights"), "no state/"))
    for argv, message in cases:
        assert mc.main(argv) == 2
        assert message in capsys.readouterr().err


def test_at_prediction_changes_only_a_one_order_run():
    ns = lambda **k: argparse.Namespace(**{"raw_weights": False, **k})
    assert saved_runs.at_prediction(ns(pair_orders="one"), ns(pair_orders="predict")).pair_orders == "predict"
    assert saved_runs.at_prediction(ns(pair_orders="predict"), ns(pair_orders="one")).pair_orders == "one"
    assert saved_runs.at_prediction(ns(pair_orders="both"), ns(pair_orders="predict")).pair_orders == "both"
    for own in ("one", "predict", "both"):  # not asked: the run's own
        assert saved_runs.at_prediction(ns(pair_orders=own), ns(pair_orders=None)).pair_orders == own
    # --mc_dropout given: it applies to any run; not given, the run's own
    assert saved_runs.at_prediction(ns(pair_orders="both", mc_dropout=None), ns(pair_orders=None, mc_dropout=4)).mc_dropout == 4
    assert saved_runs.at_prediction(ns(pair_orders="one", mc_dropout=4), ns(pair_orders=None, mc_dropout=None)).mc_dropout == 4


def test_mc_dropout_scores_the_same_weights_as_the_mean_of_passes_paired_with_the_run(trained, capsys):
    outs = [trained.root / f"mc-{i}" for i in range(2)]
    for out in outs:
        assert mc.main(trained.argv("unused", "--eval_only", "--checkpoint", trained.run, "--mc_dropout", "4",
                                    "--scores_out", out)) == 0
    mine, again = (load_dev_scores(o / "dev_scores.npz") for o in outs)
    theirs = load_dev_scores(trained.run / "dev_scores.npz")
    for t in mine:
        np.testing.assert_array_equal(mine[t]["scores"], again[t]["scores"])  # fixed masks: repeatable
    # means of the passes' scores: SST probabilities summing to 1, P(paraphrase), a score in [0, 5]
    np.testing.assert_allclose(mine["sst"]["scores"].sum(1), 1.0, atol=1e-5)
    assert 0 <= mine["para"]["scores"].min() and mine["para"]["scores"].max() <= 1
    assert 0 <= mine["sts"]["scores"].min() and mine["sts"]["scores"].max() <= 5
    assert any(not np.allclose(mine[t]["scores"], theirs[t]["scores"], atol=1e-5) for t in mine)
    cfg, run_cfg = compare.run_config(outs[0]), compare.run_config(trained.run)
    assert cfg["mc_dropout"] == 4 and run_cfg["mc_dropout"] is None  # one plain pass: recorded as before the flag
    assert compare.model_key(cfg) != compare.model_key(run_cfg)  # a row of its own,
    assert compare.training_key(cfg) == compare.training_key(run_cfg)  # paired with the run it scored
    with pytest.raises(SystemExit) as exit_:  # the parser's one line, before any file is read
        mc.main(trained.argv("x", "--mc_dropout", "0"))
    assert exit_.value.code == 2
    assert "--mc_dropout 0: the passes averaged are at least 1" in capsys.readouterr().err
