"""onednn.py: linear layers through oneDNN compute F.linear's function, forward and backward, and
step aside (to F.linear) wherever oneDNN is not the right tool."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import onednn

pytestmark = pytest.mark.skipif(not onednn.AVAILABLE, reason="torch built without oneDNN")


def grads(layer: nn.Linear, x: torch.Tensor, g: torch.Tensor, through) -> tuple:
    x = x.detach().requires_grad_(x.requires_grad)
    layer.zero_grad(set_to_none=True)
    y = through(x)
    y.backward(g)
    return y.detach(), x.grad, layer.weight.grad, None if layer.bias is None else layer.bias.grad


@pytest.mark.parametrize("shape", [(37, 24), (3, 5, 24), (1, 24)])
@pytest.mark.parametrize("bias", [True, False])
def test_forward_and_backward_match_f_linear(shape, bias):
    torch.manual_seed(0)
    layer = onednn.Linear(24, 40, bias=bias)
    x = torch.randn(*shape, requires_grad=True)
    g = torch.randn(*shape[:-1], 40)
    ours = grads(layer, x, g, layer)
    theirs = grads(layer, x, g, lambda t: F.linear(t, layer.weight, layer.bias))
    assert ours[0].shape == theirs[0].shape == (*shape[:-1], 40)
    for a, b in zip(ours, theirs):
        if b is None:
            assert a is None
        else:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_frozen_weight_and_input_get_no_gradient():
    layer = onednn.Linear(8, 4)
    layer.weight.requires_grad_(False)
    x = torch.randn(6, 8)  # no grad wanted for the input either
    layer(x).sum().backward()
    assert layer.weight.grad is None and x.grad is None and layer.bias.grad is not None
    torch.testing.assert_close(layer.bias.grad, torch.full((4,), 6.0))


def test_the_products_run_in_onednn_and_step_aside_elsewhere(monkeypatch):
    calls = []
    real = onednn._mm
    monkeypatch.setattr(onednn, "_mm", lambda *a: calls.append(1) or real(*a))
    layer = onednn.Linear(8, 4)
    x = torch.randn(3, 8)
    layer(x)
    assert len(calls) == 1  # fp32 on the CPU: oneDNN
    layer.to(torch.bfloat16)(x.to(torch.bfloat16))  # bf16 weights and input: F.linear
    layer.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(x).dtype == torch.bfloat16  # autocast applies as it does to F.linear
    onednn.use(layer, False)
    layer(x)
    assert len(calls) == 1


def test_use_and_convert_switch_every_linear_of_a_model():
    model = nn.Sequential(onednn.Linear(4, 4), nn.ReLU(), nn.Sequential(onednn.Linear(4, 2)))
    onednn.use(model, False)
    assert [m.onednn for m in model.modules() if isinstance(m, onednn.Linear)] == [False, False]
    plain = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.Linear(4, 2)), nn.ReLU())
    before = {k: v.clone() for k, v in plain.state_dict().items()}
    assert onednn.convert(plain) == 2
    assert all(type(m) is onednn.Linear for m in plain.modules() if isinstance(m, nn.Linear))
    assert plain.state_dict().keys() == before.keys()  # same parameters, same checkpoint keys
    x = torch.randn(5, 4)
    torch.testing.assert_close(plain(x), F.linear(F.linear(x, before["0.weight"], before["0.bias"]),
                                                  before["1.0.weight"], before["1.0.bias"]).relu())


def test_the_main_job_multiplies_in_onednn_unless_told_not_to(tiny_mtbert, tiny_batch):
    import multitask_classifier as mc
    losses = {}
    for flags in ((), ("--no-onednn",)):
        model, args = tiny_mtbert(*flags, "--tasks", "sst", "para", "sts")
        linears = [m for m in model.bert.modules() if isinstance(m, nn.Linear)]
        assert linears and all(type(m) is onednn.Linear and m.onednn == args.onednn for m in linears)
        batch = tiny_batch("para", cross=True)
        loss = mc.task_loss(model, "para", batch)[0]
        loss.backward()
        losses[args.onednn] = (loss.item(), model.bert.layers[0].intermediate.weight.grad.clone())
    assert losses[True][0] == pytest.approx(losses[False][0], rel=1e-5)  # the same function
    torch.testing.assert_close(losses[True][1], losses[False][1], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("preset", [None, "7"])
def test_the_primitive_cache_is_capped_unless_the_user_set_it(preset):
    # oneDNN reads the variable at its first primitive: importing the module must set it (the
    # 1,024 default cached a primitive per row count and took ~2 GiB more in the main job)
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}
    if preset:
        env["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = preset
    out = subprocess.run([sys.executable, "-c", "import os, onednn; print(os.environ['ONEDNN_PRIMITIVE_CACHE_CAPACITY'])"],
                         env=env, capture_output=True, text=True, check=True, cwd=os.path.dirname(onednn.__file__))
    assert out.stdout.strip() == (preset or str(onednn.CACHE_CAPACITY)) and onednn.CACHE_CAPACITY == 128
