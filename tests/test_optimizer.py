"""optimizer.AdamW against torch.optim.AdamW (groups, missing grads, dtypes, lr schedule), its
bias-correction switch, its batching, and its state through state_dict and checkpoint.py."""
from __future__ import annotations

import copy
import io
import json
import math

import pytest
import torch
from torch import nn

import optimizer
from checkpoint import (
    optimizer_from_parts,
    optimizer_to_parts,
    read_json,
    read_tensors,
    write_folder,
)
from optimizer import AdamW, _batches


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))


def _groups(model, **extra):
    """Weights and biases as two groups with their own lr and weight decay."""
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    return [{"params": weights, "lr": 1e-2, "weight_decay": 0.1, **extra},
            {"params": biases, "lr": 3e-3, "weight_decay": 0.0, **extra}]


def _data(steps, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(32, 8, generator=g), torch.randn(32, 3, generator=g)) for _ in range(steps)]


def _train(model, opt, data):
    for x, y in data:
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()


def _max_diff(a, b):
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))


def test_matches_torch_adamw():
    ours, ref = _mlp(), _mlp()
    start = copy.deepcopy(ours)
    data = _data(100)
    _train(ours, AdamW(_groups(ours), betas=(0.9, 0.98), eps=1e-6), data)
    _train(ref, torch.optim.AdamW(_groups(ref), betas=(0.9, 0.98), eps=1e-6), data)
    assert _max_diff(ours, ref) <= 1e-6
    assert _max_diff(ours, start) > 1e-2  # the parameters did move


def test_weight_decay_is_decoupled_and_per_group():
    model = _mlp()
    opt = AdamW(_groups(model))
    before = [p.detach().clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # zero gradient: only the decay moves weights
    opt.step()
    for (name, p), b in zip(model.named_parameters(), before):
        want = b * (1 - 1e-2 * 0.1) if name.endswith("weight") else b
        assert torch.allclose(p, want, atol=1e-7, rtol=0), name


def _manual(p0, grads, lr, beta1, beta2, eps, correct_bias):
    """Adam written out with python floats, one scalar parameter."""
    p, m, v = p0, 0.0, 0.0
    for t, g in enumerate(grads, 1):
        m, v = beta1 * m + (1 - beta1) * g, beta2 * v + (1 - beta2) * g * g
        if correct_bias:
            p -= lr / (1 - beta1 ** t) * m / (math.sqrt(v) / math.sqrt(1 - beta2 ** t) + eps)
        else:
            p -= lr * m / (math.sqrt(v) + eps)
    return p


@pytest.mark.parametrize("correct_bias", [True, False])
def test_correct_bias(correct_bias):
    grads = [0.5, -0.2, 0.3, 0.1, -0.7]
    p = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = AdamW([p], lr=0.1, betas=(0.9, 0.999), eps=1e-8, correct_bias=correct_bias)
    for i, g in enumerate(grads):
        p.grad = torch.tensor([g], dtype=torch.float64)
        opt.step()
        if i == 0:
            first = 1.0 - p.item()
    assert p.item() == pytest.approx(_manual(1.0, grads, 0.1, 0.9, 0.999, 1e-8, correct_bias), abs=1e-12)
    # First step: corrected Adam moves by lr; uncorrected by lr * (1-b1) / sqrt(1-b2) = 0.316 lr.
    assert first == pytest.approx(0.1 if correct_bias else 0.1 * 0.1 / math.sqrt(0.001), rel=1e-6)


@pytest.mark.parametrize("kwargs", [dict(lr=-1e-3), dict(betas=(1.0, 0.999)), dict(betas=(0.9, -0.1)),
                                    dict(betas=(-0.1, 0.999)), dict(eps=-1e-8),
                                    dict(weight_decay=-0.01)])
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        AdamW(_mlp().parameters(), **kwargs)


def test_state_dict_round_trip():
    data = _data(40)
    straight = _mlp()
    _train(straight, AdamW(_groups(straight)), data)

    first = _mlp()
    opt = AdamW(_groups(first))
    _train(first, opt, data[:20])
    buf = io.BytesIO()
    torch.save({"model": first.state_dict(), "opt": opt.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)  # a resume-safe checkpoint

    resumed = _mlp(seed=123)  # different init: everything must come from the checkpoint
    resumed.load_state_dict(saved["model"])
    opt2 = AdamW(_groups(resumed))
    opt2.load_state_dict(saved["opt"])
    assert opt2.state_dict()["state"][0]["step"] == 20
    _train(resumed, opt2, data[20:])
    assert _max_diff(resumed, straight) == 0


def test_skips_params_without_grad_and_returns_closure_loss():
    model = _mlp()
    frozen = model[0].weight.detach().clone()
    opt = AdamW(model.parameters(), lr=0.1)
    x, y = _data(1)[0]

    def closure():
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        model[0].weight.grad = None  # as if frozen
        return loss

    loss = opt.step(closure)
    assert isinstance(loss, torch.Tensor) and loss.item() > 0
    assert torch.equal(model[0].weight, frozen)
    assert model[0].weight not in opt.state
    assert not torch.equal(model[2].weight, _mlp()[2].weight)


# -- the foreach update against torch, over groups, missing grads, dtypes and lr changes ----------
def _net(seed=0):
    """Three layers plus an `unused` parameter that never gets a gradient."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3))
    net.unused = nn.Parameter(torch.randn(4, 4))
    return net


def _three_groups(net):
    return [{"params": [net[0].weight, net[2].weight, net.unused], "lr": 1e-2, "weight_decay": 0.1},
            {"params": [net[0].bias, net[2].bias], "lr": 3e-3, "weight_decay": 0.0},
            {"params": [net[4].weight, net[4].bias], "lr": 2e-2, "weight_decay": 0.01}]


def _train_sometimes(net, opt, data, lrs=None, start=0):
    """Like _train, but the first layer's bias gets no gradient on every third step (its step
    count falls behind the others'), and group lrs are optionally rescaled each step.
    `start` is the index of data[0] in the whole run."""
    base = [g["lr"] for g in opt.param_groups]
    for i, (x, y) in enumerate(data, start):
        if lrs is not None:  # what trainer.Trainer.step does with the schedule
            for g, lr in zip(opt.param_groups, base):
                g["lr"] = lr * lrs[i - start]
        opt.zero_grad(set_to_none=True)
        out = net[4](net[:4](x).to(net[4].weight.dtype))  # the last layer may be float64
        nn.functional.mse_loss(out, y.to(out.dtype)).backward()
        if i % 3 == 2:
            net[0].bias.grad = None
        opt.step()


def _assert_close_to(ours, ref, rel=1e-5):
    # fp32 over many steps: both sides round in another order (a few dozen ulps apart on some
    # CPUs: 1.5e-6 of the largest weight measured); a wrong term (bias correction, decay) at
    # these learning rates moves weights by orders of magnitude more
    for (name, p), q in zip(ours.named_parameters(), ref.parameters()):
        assert (p - q).abs().max() <= rel * q.abs().max(), name


def test_matches_torch_adamw_single_tensor_over_groups_and_missing_grads():
    ours, ref = _net(), _net()
    start = copy.deepcopy(ours)
    data = _data(150)
    opt = AdamW(_three_groups(ours), betas=(0.9, 0.98), eps=1e-6)
    ref_opt = torch.optim.AdamW(_three_groups(ref), betas=(0.9, 0.98), eps=1e-6, foreach=False)
    _train_sometimes(ours, opt, data)
    _train_sometimes(ref, ref_opt, data)
    _assert_close_to(ours, ref)
    assert _max_diff(ours, start) > 1e-2
    assert torch.equal(ours.unused, start.unused) and ours.unused not in opt.state
    assert opt.state[ours[0].bias]["step"] == 100 and opt.state[ours[0].weight]["step"] == 150
    for p, q in zip(ours.parameters(), ref.parameters()):
        if p in opt.state:
            assert opt.state[p]["step"] == ref_opt.state[q]["step"].item()
            # torch averages with lerp_, we with mul_ + add_ (as this file always has): same
            # maths, roundings a few float32 ulps apart after 150 steps.
            ref_m = ref_opt.state[q]["exp_avg"]
            assert (opt.state[p]["exp_avg"] - ref_m).abs().max() <= 1e-5 * ref_m.abs().max()


def test_mixed_dtypes_in_one_group():
    """float64 and float32 tensors of one group are updated in separate fused calls, each in
    its own precision."""
    ours, ref = _net(), _net()
    for net in (ours, ref):
        net[4].double()
    data = _data(30)
    _train_sometimes(ours, AdamW(ours.parameters(), lr=1e-2, weight_decay=0.05), data)
    _train_sometimes(ref, torch.optim.AdamW(ref.parameters(), lr=1e-2, weight_decay=0.05, foreach=False), data)
    assert ours[4].weight.dtype == torch.float64 and ours[0].weight.dtype == torch.float32
    _assert_close_to(ours, ref)


def test_lr_changes_between_steps_are_honoured():
    ours, ref, fixed = _net(), _net(), _net()
    data = _data(40)
    lrs = [(i + 1) / 10 if i < 10 else (40 - i) / 30 for i in range(40)]  # warm-up, then decay
    _train_sometimes(ours, AdamW(_three_groups(ours)), data, lrs)
    _train_sometimes(ref, torch.optim.AdamW(_three_groups(ref), foreach=False), data, lrs)
    _train_sometimes(fixed, AdamW(_three_groups(fixed)), data)
    _assert_close_to(ours, ref)
    assert _max_diff(ours, fixed) > 1e-3  # the schedule did change the result

    # lr 0: neither the Adam step nor the weight decay moves anything, but the moments advance.
    opt = AdamW(_three_groups(ours))
    _train_sometimes(ours, opt, data[:2])
    before = copy.deepcopy(ours)
    m = opt.state[ours[0].weight]["exp_avg"].clone()
    _train_sometimes(ours, opt, data[2:4], lrs=[0.0, 0.0])
    assert _max_diff(ours, before) == 0
    assert opt.state[ours[0].weight]["step"] == 4
    assert not torch.equal(opt.state[ours[0].weight]["exp_avg"], m)


def test_checkpoint_parts_round_trip_gives_the_same_next_steps(tmp_path):
    """The state as a resume saves it (safetensors + JSON, via checkpoint.py), loaded into a
    fresh optimizer over differently initialised weights, continues bit for bit."""
    data = _data(20)
    straight = _net()
    _train_sometimes(straight, AdamW(_three_groups(straight), betas=(0.9, 0.98)), data)

    first = _net()
    opt = AdamW(_three_groups(first), betas=(0.9, 0.98))
    _train_sometimes(first, opt, data[:10])
    tensors, meta = optimizer_to_parts(opt)
    assert all(isinstance(v, int) for v in meta["scalars"].values())  # step counts stay JSON ints
    write_folder(tmp_path / "state", {"model.safetensors": first.state_dict(), "opt.safetensors": tensors},
                 {"opt.json": json.dumps(meta)})

    resumed = _net(seed=123)
    resumed.load_state_dict(read_tensors(tmp_path / "state" / "model.safetensors"))
    opt2 = AdamW(_three_groups(resumed), betas=(0.9, 0.98))
    optimizer_from_parts(opt2, read_tensors(tmp_path / "state" / "opt.safetensors"),
                         read_json(tmp_path / "state" / "opt.json"))
    assert opt2.state[resumed[0].bias]["step"] == 7 and resumed.unused not in opt2.state
    assert opt2.param_groups[0]["betas"] == (0.9, 0.98)
    _train_sometimes(resumed, opt2, data[10:], start=10)
    assert _max_diff(resumed, straight) == 0


def test_batches_split_by_size_without_changing_the_result(monkeypatch):
    sizes = [[p.numel() for p in b] for b in _batches([torch.zeros(n) for n in (3, 4, 10, 2, 2, 1)], 6)]
    assert sizes == [[3], [4], [10], [2, 2, 1]]  # a tensor over the limit goes alone

    data = _data(20)
    whole = _net()
    _train_sometimes(whole, AdamW(_three_groups(whole)), data)
    calls = []
    update = AdamW._update
    monkeypatch.setattr(AdamW, "_update", lambda self, group, params: (calls.append(len(params)),
                                                                       update(self, group, params)))
    monkeypatch.setattr(optimizer, "BATCH_VALUES", 40)
    split = _net()
    _train_sometimes(split, AdamW(_three_groups(split)), data)
    assert len(calls) > 3 * len(data)  # more fused calls than groups: the groups were split
    assert _max_diff(split, whole) == 0


def test_a_process_that_builds_steps_saves_and_loads_the_optimizer_never_imports_dynamo():
    # torch wraps four Optimizer methods for torch.compile; their first call imports torch._dynamo
    # (about 1.5 s of every run's start). A fresh process, since this one may have imported it.
    import subprocess
    import sys
    from pathlib import Path
    code = ("import sys, torch\n"
            "from optimizer import AdamW\n"
            "m = torch.nn.Linear(3, 2)\n"
            "o = AdamW([{'params': [m.weight]}, {'params': [m.bias], 'lr': 0.1}], lr=1e-3, weight_decay=0.01)\n"
            "m(torch.randn(4, 3)).sum().backward(); o.step(); o.zero_grad()\n"
            "o.load_state_dict(o.state_dict()); o.add_param_group({'params': [torch.nn.Parameter(torch.zeros(2))]})\n"
            "assert m.weight.grad is None and len(o.param_groups) == 3 and o.param_groups[1]['lr'] == 0.1\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
