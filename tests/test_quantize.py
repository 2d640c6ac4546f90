"""quantize.py: int8 linear layers for inference."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from quantize import Int8Linear, quantize_encoder

pytestmark = pytest.mark.usefixtures("one_thread")


def test_an_int8_linear_is_the_linear_up_to_rounding():
    torch.manual_seed(0)
    linear = nn.Linear(48, 24)
    q = Int8Linear(linear)
    x = torch.randn(3, 5, 48)  # any leading shape
    want, got = linear(x), q(x)
    assert got.shape == want.shape and got.dtype == want.dtype
    # each product's error is relative to its row's and its channel's largest value: ~1% of the output here
    assert (got - want).norm() / want.norm() < 0.02
    assert not torch.equal(got, want)  # it does compute in int8
    # the int8 weights at their scales are the weights to within half a step each
    w = q.weight_t.t().float() * q.scale[:, None]
    assert ((w - linear.weight).abs() <= q.scale[:, None] / 2 + 1e-7).all()


def test_an_int8_linear_without_bias_and_with_a_zero_row():
    linear = nn.Linear(8, 4, bias=False)
    q = Int8Linear(linear)
    x = torch.zeros(2, 8)
    x[1] = torch.randn(8)
    y = q(x)
    assert torch.equal(y[0], torch.zeros(4)) and torch.isfinite(y).all()  # a zero row: no 0/0


def test_quantize_encoder_replaces_the_encoders_linear_layers_only(tiny_mtbert, tiny_batch):
    model, _ = tiny_mtbert()
    batch = tiny_batch("sst", B=6, T=9)
    with torch.inference_mode():
        want = model("sst", batch)["u"]
    heads = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear) and not n.startswith("bert.")}
    linears = sum(isinstance(m, nn.Linear) for m in model.bert.modules())
    assert quantize_encoder(model) == linears > 0
    assert not any(isinstance(m, nn.Linear) for m in model.bert.modules())
    assert heads and all(dict(model.named_modules())[n] is m for n, m in heads.items())  # heads in fp32
    with torch.inference_mode():
        got = model("sst", batch)["u"]
    assert torch.nn.functional.cosine_similarity(got, want).min() > 0.99
