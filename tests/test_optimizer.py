"""optimizer.AdamW against torch.optim.AdamW, its bias-correction switch, and its state_dict."""
from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from torch import nn

from optimizer import AdamW


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
