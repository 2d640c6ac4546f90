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


