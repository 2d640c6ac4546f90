from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import bert
from bert import BertModel, BertSelfAttention, Layout
from dropout import Dropout, drop_rate, dropout, keep_mask, use_fast


def test_drop_rate_is_p_on_a_grid_of_2_to_the_minus_16():
    assert drop_rate(0.1) == 6554 / 65536
    assert abs(drop_rate(0.1) - 0.1) < 2 ** -17
    assert drop_rate(0.5) == 0.5 and drop_rate(0.0) == 0.0


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_every_position_of_a_64_bit_draw_keeps_at_the_stated_rate(p):
    # The four 16-bit words of one draw each decide one element: a word with a bit stuck (an
    # int64's sign bit, were random_() called without a range) would show at positions 4k + 3.
    torch.manual_seed(0)
    n = 4 * 250_000
    keep = keep_mask((n // 4, 4), p).double()
    q = 1 - drop_rate(p)
    sd = (q * (1 - q) / (n // 4)) ** 0.5
    for position, rate in enumerate(keep.mean(0).tolist()):
        assert abs(rate - q) < 5 * sd, (position, rate, q)
    # Neighbours are independent: both kept as often as q².
    both = (keep[:, :-1] * keep[:, 1:]).mean().item()
    assert abs(both - q * q) < 5 * (q * q * (1 - q * q) / (3 * n // 4)) ** 0.5


def test_dropout_keeps_the_expectation_and_scales_kept_values():
    torch.manual_seed(0)
    x = torch.ones(200_000)
    y = dropout(x, 0.1)
    scale = 1 / (1 - drop_rate(0.1))
    assert torch.equal(y.unique(), torch.tensor([0.0, scale]))  # zeros, and kept ones scaled
    assert abs(y.mean().item() - 1) < 5 * (0.1 / 0.9 / x.numel()) ** 0.5


def test_gradient_is_the_same_mask():
    torch.manual_seed(0)
    x = torch.randn(64, 48, requires_grad=True)
    y = dropout(x, 0.3)
    y.backward(torch.ones_like(y))
    kept = y != 0
    assert torch.equal(x.grad, kept.float() / (1 - drop_rate(0.3)))
    assert 0.6 < kept.float().mean() < 0.8


def test_reproducible_under_the_seed_and_different_from_call_to_call():
    x = torch.randn(1000)
    torch.manual_seed(3)
    a, b = dropout(x, 0.5), dropout(x, 0.5)
    torch.manual_seed(3)
    assert torch.equal(dropout(x, 0.5), a)
    assert not torch.equal(a, b)


def test_identity_in_eval_and_at_0_and_torch_elsewhere():
    x = torch.randn(50, 7)
    assert dropout(x, 0.5, training=False) is x and dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    # fast=False is torch's dropout, draw for draw: the runs of earlier versions replay exactly.
    torch.manual_seed(5)
    slow = dropout(x, 0.2, fast=False)
    torch.manual_seed(5)
    assert torch.equal(slow, F.dropout(x, 0.2, True))


def test_keeps_the_dtype():
    y = dropout(torch.ones(100, dtype=torch.bfloat16), 0.5)
    assert y.dtype == torch.bfloat16


def test_module_follows_train_eval_and_use_fast():
    d = Dropout(0.5)
    x = torch.randn(1000)
    assert torch.equal(d.eval()(x), x)
    model = torch.nn.Sequential(d, torch.nn.Linear(3, 3), BertSelfAttention(8, 2, 0.1))
    use_fast(model, False)
    assert not d.fast_dropout and not model[2].fast_dropout
    torch.manual_seed(1)
    a = d.train()(x)
    torch.manual_seed(1)
    assert torch.equal(a, F.dropout(x, 0.5, True))
    with pytest.raises(ValueError, match="between 0 and 1"):
        Dropout(1.5)


def test_written_out_attention_is_sdpa_with_the_mask(monkeypatch):
    # The fast path computes attention itself to put its own dropout on the weights: with the
    # dropout made the identity, it must be SDPA with the padding mask, as in evaluation.
    torch.manual_seed(0)
    att = BertSelfAttention(32, 4, 0.1)
    mask = torch.tensor([[1] * 6 + [0] * 3, [1] * 9, [1] * 2 + [0] * 7]).bool()
    x = torch.randn(int(mask.sum()), 32)
    for group_cost in (bert.GROUP_COST, 0):  # one grid; then a grid per group of rows
        monkeypatch.setattr(bert, "GROUP_COST", group_cost)
        layout = Layout.of(mask)
        assert (layout.groups is None) == (group_cost > 0)
        expected = att.eval()(x, layout)
        with monkeypatch.context() as m:
            m.setattr(bert, "apply_dropout", lambda t, p: t)
            got = att.train()(x, layout)
        assert (got - expected).abs().max() < 1e-5


def test_encoder_trains_with_either_dropout(tiny_config):
    torch.manual_seed(0)
    model = BertModel(tiny_config(attention_probs_dropout_prob=0.2)).train()
    ids = torch.randint(1, 100, (3, 10))
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[1, 6:] = 0
    for fast in (True, False):
        use_fast(model, fast)
        out = model(ids, mask)["last_hidden_state"]
        out.sum().backward()
        assert torch.isfinite(out).all() and out[1, 6:].abs().max() == 0
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_sampled_turns_on_the_dropouts_alone_with_repeatable_masks_and_leaves_the_generator_be(tiny_mtbert, tiny_batch):
    from dropout import sampled
    model, _ = tiny_mtbert("--hidden_dropout_prob", "0.3")
    drops = [m for m in model.modules() if hasattr(m, "fast_dropout")]
    assert drops and not any(m.training for m in model.modules())
    batch = tiny_batch("sst", B=6)
    with torch.no_grad():
        plain = model.scores("sst", batch)
        before = torch.random.get_rng_state()
        with sampled(model):
            assert all(m.training for m in drops) and not model.training  # the pair order stays fixed
            first = model.scores("sst", batch)
        with sampled(model):
            again = model.scores("sst", batch)
        with sampled(model, seed=1):
            other = model.scores("sst", batch)
    assert torch.equal(torch.random.get_rng_state(), before)  # training draws what it would have drawn
    assert not any(m.training for m in model.modules())
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert not torch.allclose(first, plain, atol=1e-4)  # dropout really on
