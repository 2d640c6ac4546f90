"""Data parallelism: `torchrun --nproc_per_node=2` with the gloo backend on CPU.

The ranks must stay bitwise equal (the loop checks this every epoch and fails otherwise), and a
2-process run must match a 1-process run with the same global batch: without dropout both compute
the same mean gradient, up to the order of floating-point sums. Each way of averaging gradients is
run: DDP on the plain path (local updates: unused parameters found every step; global updates: a
static graph) and the hand-written all-reduce (--fgsm runs two forwards per step)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from conftest import ROOT


@pytest.fixture
def no_dropout_bert(tiny_bert_dir, tmp_path):
    folder = tmp_path / "bert"
    shutil.copytree(tiny_bert_dir, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def _run(cmd, timeout=300):
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


@pytest.mark.parametrize("extra, how", [
    ([], "DDP over 2 processes"),
    (["--update", "global"], "DDP over 2 processes"),
    (["--fgsm"], "hand-written all-reduce over 2 processes (--fgsm)"),
], ids=["ddp-local", "ddp-global", "fgsm"])
def test_two_gloo_ranks_match_one_process(run_argv, no_dropout_bert, tmp_path, extra, how):
    common = ["--bert_model", str(no_dropout_bert), "--hidden_dropout_prob", "0", "--epochs", "2",
              "--steps_per_epoch", "6", "--batch_size", "8", "--wise_alphas", *extra]
    single = run_argv("single", *common)
    double = run_argv("double", *common)
    res1 = _run([sys.executable, "multitask_classifier.py", *single])
    res = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                "multitask_classifier.py", *double])
    assert "different weights" not in res.stderr
    # the way the gradients were averaged (no newline asserted: both ranks write to one pipe, and
    # rank 1's lines can land in the middle of rank 0's)
    assert f"data parallel: {how}" in res.stdout
    assert "data parallel" not in res1.stdout

    one = [json.loads(x) for x in (tmp_path / "single/run/metrics.jsonl").read_text().splitlines()]
    two = [json.loads(x) for x in (tmp_path / "double/run/metrics.jsonl").read_text().splitlines()]
    assert len(one) == len(two) == 2
    for a, b in zip(one, two):
        assert abs(a["sts_r"] - b["sts_r"]) < 1e-3
        for k in ("loss_sst", "loss_para", "loss_sts"):
            assert abs(a[k] - b[k]) < 1e-4 * max(1.0, abs(a[k])), k
        for k in ("sst_acc", "para_acc"):  # 24 dev examples: allow one prediction to flip
            assert abs(a[k] - b[k]) <= 1 / 24 + 1e-9, k
    w1 = load_file(str(tmp_path / "single/run/state/model.safetensors"))
    w2 = load_file(str(tmp_path / "double/run/state/model.safetensors"))
    assert w1.keys() == w2.keys()
    worst = max((w1[k] - w2[k]).abs().max().item() for k in w1)
    assert worst < 1e-4, worst
    # and training did move the weights: the comparison is not between two untouched models
    start = load_file(str(no_dropout_bert / "model.safetensors"))
    moved = (w1["bert.embeddings.LayerNorm.weight"] - start["embeddings.LayerNorm.weight"]).abs().max()
    assert moved > 1e-4
    # only rank 0 wrote the prediction files, once, with one row per example
    preds = (tmp_path / "double/predictions/sst-dev-output.csv").read_text().splitlines()
    assert len(preds) == 1 + 24
