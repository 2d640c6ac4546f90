"""trainer.py: the learning-rate schedule, optimizer groups, run length and evaluation points,
early stopping, and the loop's outputs (curves, TensorBoard events, per-example dev scores) on
tiny end-to-end runs."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

import trainer

pytestmark = pytest.mark.usefixtures("one_thread")


# -- schedule and optimizer ----------------------------------------------------------------------
def test_lr_factor_warmup_then_linear_decay():
    total, warmup = 10, 3
    got = [trainer.lr_factor(s, total, warmup) for s in range(total + 1)]
    want = [1 / 3, 2 / 3, 1.0] + [(10 - s) / 7 for s in range(3, 11)]
    assert got == pytest.approx(want)
    assert got[warmup] == 1.0 and got[-1] == 0.0
    assert all(a < b for a, b in zip(got[:warmup - 1], got[1:warmup]))  # rising to the peak
    assert all(a > b for a, b in zip(got[warmup:], got[warmup + 1:]))  # falling to 0
    # no warm-up: start at the peak
    assert [trainer.lr_factor(s, 4, 0) for s in range(5)] == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])
    assert trainer.lr_factor(20, 10, 3) == 0.0  # never negative


def test_build_optimizer_groups(tiny_mtbert):
    model, args = tiny_mtbert("--lr", "1e-4", "--head_lr", "1e-3", "--weight_decay", "0.05")
    opt = trainer.build_optimizer(model, args)
    where = {}
    for g in opt.param_groups:
        for p in g["params"]:
            assert id(p) not in where  # each parameter in one group
            where[id(p)] = (g["lr"], g["weight_decay"])
    names = dict(model.named_parameters())
    assert len(where) == len(names)
    n_no_decay = 0
    for name, p in names.items():
        lr, wd = where[id(p)]
        no_decay = name.endswith(".bias") or "norm" in name.lower() or name == "sts_affine"
        n_no_decay += no_decay
        assert wd == (0.0 if no_decay else 0.05), name
        assert lr == (1e-4 if name.startswith("bert.") else 1e-3), name
    assert n_no_decay > 0
    assert "bert.embeddings.LayerNorm.weight" in names and where[id(names["bert.embeddings.LayerNorm.weight"])][1] == 0.0
    # with --head_lr 0 the heads use --lr
    model, args = tiny_mtbert("--lr", "3e-5", "--head_lr", "0")
    assert {g["lr"] for g in trainer.build_optimizer(model, args).param_groups} == {3e-5}


def test_layer_decay_scales_lr_by_depth(tiny_mtbert):
    model, args = tiny_mtbert("--lr", "1e-4", "--head_lr", "1e-3", "--layer_decay", "0.5")
    L = model.bert.config.num_hidden_layers
    lr_of = {id(p): g["lr"] for g in trainer.build_optimizer(model, args).param_groups for p in g["params"]}
    names = dict(model.named_parameters())
    assert lr_of[id(names["bert.pooler.dense.weight"])] == pytest.approx(1e-4)  # the top: no decay
    for i in range(L):  # layer i is L - i levels below the top
        assert lr_of[id(names[f"bert.layers.{i}.intermediate.weight"])] == pytest.approx(1e-4 * 0.5 ** (L - i))
    assert lr_of[id(names["bert.embeddings.LayerNorm.weight"])] == pytest.approx(1e-4 * 0.5 ** (L + 1))
    assert lr_of[id(names["sst_head.1.weight"])] == 1e-3  # heads keep --head_lr
    assert trainer.encoder_depth("bert.layers.11.output.bias", 12) == 12
    # the default 1.0 is the plain optimizer: one encoder learning rate
    model, args = tiny_mtbert("--lr", "1e-4", "--head_lr", "0")
    assert {g["lr"] for g in trainer.build_optimizer(model, args).param_groups} == {1e-4}


# -- run length and evaluation points -----------------------------------------------------------
def _args(**kw):
    base = dict(update="local", steps_per_epoch=0, epochs=1.0, warmup_ratio=0.1, eval_every=0)
    return SimpleNamespace(**{**base, **kw})


def test_an_epoch_is_one_pass_over_the_training_data():
    sizes, bs = {"sst": 8544, "para": 16172, "sts": 6040}, {"sst": 32, "para": 32, "sts": 32}
    plan = trainer.schedule(_args(epochs=2.5), sizes, bs)
    assert plan.steps_per_epoch == 267 + 506 + 189 == 962  # the batches of one pass
    assert plan.total == 2405 and plan.warmup == 240
    # a global step takes a batch of every task: a pass is a third as many steps
    assert trainer.schedule(_args(update="global"), sizes, bs).steps_per_epoch == 321
    # 64 examples per task: 2 batches each, 6 steps (the smoke run)
    assert trainer.schedule(_args(), {t: 64 for t in sizes}, bs).total == 6
    assert trainer.schedule(_args(steps_per_epoch=100, epochs=3), sizes, bs).total == 300


def test_evaluation_points_every_epoch_or_every_n_steps_and_always_at_the_end():
    plan = trainer.schedule(_args(epochs=2.5, steps_per_epoch=10), {"sst": 1}, {"sst": 1})
    assert [s for s in range(1, plan.total + 1) if plan.evaluates_at(s)] == [10, 20, 25]
    plan = trainer.schedule(_args(epochs=2, steps_per_epoch=10, eval_every=7), {"sst": 1}, {"sst": 1})
    assert [s for s in range(1, plan.total + 1) if plan.evaluates_at(s)] == [7, 14, 20]
    assert plan.epoch(15) == 1.5


# -- the loop's outputs on tiny runs ------------------------------------------------------------
def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_run_logs_losses_evaluates_on_schedule_and_keeps_per_example_dev_scores(run_argv, tmp_path):
    import multitask_classifier as mc
    from evaluation import load_dev_scores
    argv = run_argv("r", "--epochs", "1", "--steps_per_epoch", "12", "--eval_every", "5", "--log_every", "2")
    assert mc.main(argv) == 0
    run = tmp_path / "r" / "run"
    history = _jsonl(run / "metrics.jsonl")
    assert [h["step"] for h in history] == [5, 10, 12]
    log = _jsonl(run / "train_log.jsonl")
    assert [r["step"] for r in log] == [2, 4, 6, 8, 10, 12]
    assert all(any(k.startswith("loss_") for k in r) for r in log)
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    # dev_scores.npz holds the best evaluation's scores: the dev prediction files are their decisions
    best = json.loads((run / "summary.json").read_text())["best"]
    saved = load_dev_scores(run / "dev_scores.npz")
    sst_file = (tmp_path / "r" / "predictions" / "sst-dev-output.csv").read_text().splitlines()[1:]
    assert [int(line.split(",")[1]) for line in sst_file] == list(saved["sst"]["scores"].argmax(1))
    assert np.mean(saved["sst"]["scores"].argmax(1) == saved["sst"]["labels"]) == pytest.approx(best["sst_acc"])
    assert len(saved["para"]["sent2"]) == len(saved["para"]["ids"]) and saved["para"]["sent2"][0]
    assert "Confusion" in (run / "analysis.md").read_text() or "confusion" in (run / "analysis.md").read_text()
    assert (run / "analysis.png").is_file()


def test_tensorboard_events_read_back_with_tensorboards_reader(run_argv, tmp_path):
    import multitask_classifier as mc
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    argv = run_argv("tb", "--epochs", "2", "--steps_per_epoch", "6", "--log_every", "3",
                    "--report_to", "tensorboard")
    assert mc.main(argv) == 0
    run = tmp_path / "tb" / "run"
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"dev/overall", "dev/sst_acc", "dev/para_acc", "dev/sts_r"} <= set(tags)
    assert [e.step for e in events.Scalars("dev/overall")] == [6, 12]
    history = _jsonl(run / "metrics.jsonl")
    assert [e.value for e in events.Scalars("dev/overall")] == pytest.approx([h["overall"] for h in history])
    loss_tags = [t for t in tags if t.startswith("train/loss_")]
    assert loss_tags and [e.step for e in events.Scalars(loss_tags[0])][-1] <= 12


def test_early_stopping_stops_after_patience_and_keeps_the_best_weights(run_argv, tmp_path, monkeypatch):
    import multitask_classifier as mc
    import trainer as tr
    # dev overall rises once, then falls: with patience 2 the run stops at the 4th evaluation of 10
    overalls = iter([0.5, 0.6, 0.55, 0.58, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7])
    real = tr.dev_metrics

    def scripted(preds, dev):
        m = real(preds, dev)
        return {**m, "overall": next(overalls)}
    monkeypatch.setattr(tr, "dev_metrics", scripted)
    argv = run_argv("es", "--epochs", "10", "--steps_per_epoch", "2", "--patience", "2", "--no_predictions")
    assert mc.main(argv) == 0
    run = tmp_path / "es" / "run"
    history = _jsonl(run / "metrics.jsonl")
    assert [h["overall"] for h in history] == [0.5, 0.6, 0.55, 0.58]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best"]["step"] == 4 and summary["steps"] == 8
    state = json.loads((run / "state" / "trainer.json").read_text())["progress"]
    assert state["best"]["step"] == 4


def test_option_pretrain_trains_the_heads_only(run_argv, tmp_path):
    """The starter's --option pretrain: the encoder leaves the run exactly as it came in."""
    import multitask_classifier as mc
    from safetensors.torch import load_file
    from bert import BertModel
    argv = run_argv("p", "--option", "pretrain", "--epochs", "1", "--steps_per_epoch", "4", "--no_predictions")
    assert mc.main(argv) == 0
    args = mc.parse_args(argv)
    assert args.lr == 1e-3 and args.head_lr == 0.0  # the starter's pretrain lr, for everything that trains
    best = load_file(str(tmp_path / "p" / "run" / "best" / "model.safetensors"))
    start = BertModel.from_pretrained(args.bert_model).state_dict()
    assert all(np.array_equal(best[f"bert.{k}"].numpy(), v.numpy()) for k, v in start.items())
    assert not np.allclose(best["sst_head.1.weight"].numpy(), 0)


def test_wise_ft_keeps_the_chosen_alphas_weights_and_their_dev_scores(run_argv, tmp_path):
    import multitask_classifier as mc
    from evaluation import decide, dev_metrics, load_dev_scores
    argv = run_argv("w", "--epochs", "1", "--steps_per_epoch", "6", "--lr", "3e-3",
                    "--wise_alphas", "0.0", "0.3", "0.6", "--no_predictions")
    assert mc.main(argv) == 0
    run = tmp_path / "w" / "run"
    summary = json.loads((run / "summary.json").read_text())
    saved = load_dev_scores(run / "dev_scores.npz")
    labels = {t: SimpleNamespace(labels=__import__("torch").tensor(saved[t]["labels"])) for t in saved}
    metrics = dev_metrics({t: decide(t, saved[t]["scores"]) for t in saved}, labels)
    # whichever α won, the saved per-example scores are the ones its reported metrics came from
    assert metrics["overall"] == pytest.approx(summary["best"]["overall"])
    assert max(summary["wise_ft"].values()) == pytest.approx(summary["best"]["overall"])


def test_a_run_on_some_tasks_picks_its_best_by_those_tasks_alone(run_argv, tmp_path, monkeypatch):
    import multitask_classifier as mc
    import trainer as tr
    from evaluation import overall
    # --tasks sst: SST peaks at the 2nd evaluation; the untrained PARA head scores high at the
    # 1st and 3rd, so the three tasks' overall would pick the 3rd and not stop at the 4th
    sst, para = iter([0.5, 0.6, 0.55, 0.4, 0.4, 0.4]), iter([0.9, 0.1, 0.9, 0.9, 0.9, 0.9])
    real = tr.dev_metrics

    def scripted(preds, dev):
        m = {**real(preds, dev), "sst_acc": next(sst), "para_acc": next(para)}
        return {**m, "overall": overall(m)}
    monkeypatch.setattr(tr, "dev_metrics", scripted)
    argv = run_argv("one", "--tasks", "sst", "--epochs", "6", "--steps_per_epoch", "2", "--patience", "2",
                    "--no_predictions")
    assert mc.main(argv) == 0
    history = _jsonl(tmp_path / "one" / "run" / "metrics.jsonl")
    assert [h["sst_acc"] for h in history] == [0.5, 0.6, 0.55, 0.4]  # stopped 2 after SST's best
    assert history[2]["overall"] > history[1]["overall"]
    summary = json.loads((tmp_path / "one" / "run" / "summary.json").read_text())
    assert summary["best"]["step"] == 4 and summary["best"]["sst_acc"] == 0.6


def test_wise_ft_on_some_tasks_picks_its_alpha_by_those_tasks_alone(run_argv, tmp_path, monkeypatch):
    import multitask_classifier as mc
    import trainer as tr
    from evaluation import overall
    # --tasks sst, one evaluation, then WiSE-FT at α = 0, 0.5 and 1 (in that order): SST is best at
    # α = 0.5, the untrained PARA head at α = 0, which the three tasks' overall would pick
    sst, para = iter([0.5, 0.4, 0.7, 0.5]), iter([0.5, 0.95, 0.1, 0.5])
    real = tr.dev_metrics

    def scripted(preds, dev):
        m = {**real(preds, dev), "sst_acc": next(sst), "para_acc": next(para)}
        return {**m, "overall": overall(m)}
    monkeypatch.setattr(tr, "dev_metrics", scripted)
    argv = run_argv("one", "--tasks", "sst", "--epochs", "1", "--steps_per_epoch", "2", "--no_predictions",
                    "--wise_alphas", "0", "0.5")
    assert mc.main(argv) == 0
    summary = json.loads((tmp_path / "one" / "run" / "summary.json").read_text())
    assert summary["best"]["wise_alpha"] == 0.5 and summary["best"]["sst_acc"] == 0.7
    assert max(summary["wise_ft"], key=summary["wise_ft"].get) == "0.5"


def test_mc_dropout_evaluations_change_no_training_step(run_argv, tmp_path):
    import multitask_classifier as mc
    logs, history = [], []
    for name, extra in (("plain", ()), ("mc", ("--mc_dropout", "3"))):
        argv = run_argv(name, "--epochs", "1", "--steps_per_epoch", "8", "--eval_every", "3", "--log_every", "1",
                        "--no_predictions", *extra)
        assert mc.main(argv) == 0
        logs.append(_jsonl(tmp_path / name / "run" / "train_log.jsonl"))
        history.append(_jsonl(tmp_path / name / "run" / "metrics.jsonl"))
    # the passes' masks come from a fork of the generator: every step after an evaluation is the same
    assert [r for r in logs[0] if "step" in r] == [r for r in logs[1] if "step" in r]
    assert [h["step"] for h in history[0]] == [h["step"] for h in history[1]] == [3, 6, 8]
    assert [h["overall"] for h in history[0]] != [h["overall"] for h in history[1]]  # scored otherwise
