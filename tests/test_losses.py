"""losses: the ordinal log loss and R-Drop's symmetric KL against hand-computed values, and the
multiple-negatives ranking loss (Henderson et al., 2017) against hand-computed values: pairs (anchors u_i of the positive pairs, candidates all v_j, target v_i) and SST labels
(supervised-contrastive form: every other sentence is a candidate, averaged over positives)."""
from __future__ import annotations

import math

import pytest
import torch

from losses import (SCALE, cosent_loss, mnrl_labels, mnrl_loss, mnrl_pairs, ordinal_log_loss, rdrop_term,
                    symmetric_kl)

pytestmark = pytest.mark.usefixtures("one_thread")

U = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
V = [[1.0, 1.0], [0.0, 2.0], [-1.0, 0.5]]


def cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def logsumexp(xs):
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))


def hand_pairs(u, v, positive, scale):
    """Mean over anchors i with positive[i] of -log softmax_j(scale·cos(u_i, v_j))[i]."""
    losses = []
    for i, pos in enumerate(positive):
        if pos:
            s = [scale * cos(u[i], vj) for vj in v]
            losses.append(logsumexp(s) - s[i])
    return sum(losses) / len(losses)


def hand_labels(e, labels, scale):
    """Mean over anchors with a positive of the mean over its positives j of
    -log( exp(s_ij) / Σ_{k≠i} exp(s_ik) )."""
    per_anchor = []
    for i in range(len(e)):
        others = [k for k in range(len(e)) if k != i]
        pos = [j for j in others if labels[j] == labels[i]]
        if not pos:
            continue
        s = {k: scale * cos(e[i], e[k]) for k in others}
        z = logsumexp([s[k] for k in others])
        per_anchor.append(sum(z - s[j] for j in pos) / len(pos))
    return sum(per_anchor) / len(per_anchor)


@pytest.mark.parametrize("scale", [1.0, SCALE])
def test_pairs_hand_computed(scale):
    u, v = torch.tensor(U), torch.tensor(V)
    positive = torch.tensor([1, 0, 1])
    got = mnrl_pairs(u, v, positive.bool(), scale=scale)
    want = hand_pairs(U, V, [1, 0, 1], scale)
    assert got.item() == pytest.approx(want, rel=1e-5, abs=1e-6)
    # The non-positive pair still serves as a negative: dropping it changes the value.
    if scale == 1.0:
        assert hand_pairs(U[::2], V[::2], [1, 1], scale) != pytest.approx(want, rel=1e-3)


def test_pairs_default_scale_is_20_and_only_positives_are_anchors():
    u, v = torch.tensor(U), torch.tensor(V)
    assert mnrl_pairs(u, v, torch.tensor([True, False, True])).item() == pytest.approx(
        hand_pairs(U, V, [1, 0, 1], 20.0), rel=1e-5)
    all_pos = mnrl_pairs(u, v, torch.tensor([True, True, True]), scale=1.0).item()
    assert all_pos == pytest.approx(hand_pairs(U, V, [1, 1, 1], 1.0), rel=1e-5)
    assert all_pos != pytest.approx(hand_pairs(U, V, [1, 0, 1], 1.0), rel=1e-3)


def test_pairs_invariant_to_vector_norms():
    """Similarity is cosine: rescaling embeddings changes nothing."""
    u, v = torch.tensor(U), torch.tensor(V)
    pos = torch.tensor([True, True, False])
    a = mnrl_pairs(u, v, pos, scale=1.0)
    b = mnrl_pairs(3.0 * u, 0.5 * v, pos, scale=1.0)
    assert a.item() == pytest.approx(b.item(), rel=1e-6)


E3 = [[1.0, 0.0], [0.6, 0.8], [0.8, 0.6]]  # close enough that scale 20 does not saturate


@pytest.mark.parametrize("scale", [1.0, SCALE])
def test_labels_hand_computed(scale):
    e = torch.tensor(E3)
    got = mnrl_labels(e, torch.tensor([2, 2, 4]), scale=scale)  # anchor 2 has no positive
    want = hand_labels(E3, [2, 2, 4], scale)
    assert got.item() == pytest.approx(want, rel=1e-5, abs=1e-6)
    # explicit form for the first anchor, written out: -log(e^{s01} / (e^{s01} + e^{s02}))
    s01, s02 = scale * cos(E3[0], E3[1]), scale * cos(E3[0], E3[2])
    s10, s12 = scale * cos(E3[1], E3[0]), scale * cos(E3[1], E3[2])
    explicit = 0.5 * ((math.log(math.exp(s01) + math.exp(s02)) - s01)
                      + (math.log(math.exp(s10) + math.exp(s12)) - s10))
    assert got.item() == pytest.approx(explicit, rel=1e-5, abs=1e-6)


def test_labels_several_positives_are_averaged():
    e4 = E3 + [[0.3, -0.9]]
    labels = [1, 1, 1, 0]
    got = mnrl_labels(torch.tensor(e4), torch.tensor(labels), scale=1.0)
    assert got.item() == pytest.approx(hand_labels(e4, labels, 1.0), rel=1e-5)


def test_zero_without_positives():
    u, v = torch.tensor(U, requires_grad=True), torch.tensor(V)
    z = mnrl_pairs(u, v, torch.zeros(3, dtype=torch.bool))
    assert z.item() == 0.0
    z.backward()  # still part of the graph
    e = torch.tensor(E3, requires_grad=True)
    z = mnrl_labels(e, torch.tensor([0, 1, 2]))
    assert z.item() == 0.0
    z.backward()
    assert torch.equal(e.grad, torch.zeros_like(e))


def test_gradient_flows_and_is_finite():
    u = torch.tensor(U, requires_grad=True)
    v = torch.tensor(V, requires_grad=True)
    mnrl_pairs(u, v, torch.tensor([True, False, True]), scale=1.0).backward()
    assert torch.isfinite(u.grad).all() and u.grad.abs().sum() > 0
    assert torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0
    e = torch.tensor(E3, requires_grad=True)
    labels = torch.tensor([2, 2, 4])
    mnrl_labels(e, labels, scale=1.0).backward()  # the -inf self-mask must not leak NaN
    assert torch.isfinite(e.grad).all() and e.grad.abs().sum() > 0
    # one gradient-descent step on the embeddings lowers the loss
    e2 = (e - 0.01 * e.grad).detach()
    assert mnrl_labels(e2, labels, scale=1.0) < mnrl_labels(e.detach(), labels, scale=1.0)


def test_mnrl_loss_dispatch():
    u, v = torch.tensor(U), torch.tensor(V)
    sst = mnrl_loss("sst", {"u": torch.tensor(E3)}, torch.tensor([2, 2, 4]))
    assert sst.item() == pytest.approx(hand_labels(E3, [2, 2, 4], SCALE), rel=1e-5)
    para = mnrl_loss("para", {"u": u, "v": v}, torch.tensor([1, 0, 1]))
    assert para.item() == pytest.approx(hand_pairs(U, V, [1, 0, 1], SCALE), rel=1e-5)
    assert mnrl_loss("para", {"u": u}, torch.tensor([1, 0, 1])) is None  # cross-encoded: no pairs
    assert mnrl_loss("sts", {"u": u, "v": v}, torch.tensor([1.0, 2.0, 3.0])) is None


# -- ordinal log loss and R-Drop's symmetric KL ---------------------------------------------------
def test_ordinal_log_loss_hand_computed():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, 0.5], [0.0, 0.0, 3.0, 0.0, 0.0]])
    y = torch.tensor([1, 4])
    want = 0.0
    for row, label in zip(logits.tolist(), y.tolist()):
        z = sum(math.exp(x) for x in row)
        want += -sum(abs(k - label) * math.log(1 - math.exp(x) / z) for k, x in enumerate(row))
    assert ordinal_log_loss(logits, y).item() == pytest.approx(want / 2, rel=1e-5)


def test_ordinal_log_loss_charges_far_classes_more():
    """Mass on the label costs nothing; the same mass one class away costs less than four away."""
    y = torch.tensor([0])
    on, near, far = (torch.full((1, 5), -20.0).index_fill_(1, torch.tensor([k]), 20.0) for k in (0, 1, 4))
    assert ordinal_log_loss(on, y).item() == pytest.approx(0.0, abs=1e-5)
    assert 0 < ordinal_log_loss(near, y).item() < ordinal_log_loss(far, y).item()


def test_symmetric_kl_hand_computed_and_zero_for_equal_passes():
    a, b = torch.tensor([[1.0, 0.0, -1.0]]), torch.tensor([[0.0, 0.5, 0.0]])
    p = [math.exp(x) / sum(math.exp(t) for t in row) for row in (a[0].tolist(), b[0].tolist()) for x in row]
    pa, pb = p[:3], p[3:]
    kl = lambda x, y: sum(xi * math.log(xi / yi) for xi, yi in zip(x, y))
    assert symmetric_kl(a, b).item() == pytest.approx(0.5 * (kl(pa, pb) + kl(pb, pa)), rel=1e-5)
    assert symmetric_kl(a, a).item() == pytest.approx(0.0, abs=1e-7)


def test_rdrop_term_of_each_task():
    a, b = torch.tensor([[1.0, 0.0, -1.0, 0.2, 0.1]]), torch.tensor([[0.0, 0.5, 0.0, 0.0, 0.3]])
    assert rdrop_term("sst", a, b).item() == symmetric_kl(a, b).item()
    # PARA: one logit z is the two-class distribution (1 - sigmoid(z), sigmoid(z))
    za, zb = torch.tensor([1.5, -0.3]), torch.tensor([0.5, 0.2])
    pa, pb = torch.sigmoid(za), torch.sigmoid(zb)
    kl = lambda p, q: p * torch.log(p / q) + (1 - p) * torch.log((1 - p) / (1 - q))
    assert rdrop_term("para", za, zb).item() == pytest.approx((0.5 * (kl(pa, pb) + kl(pb, pa))).mean().item(), rel=1e-5)
    assert rdrop_term("para", za, za).item() == pytest.approx(0.0, abs=1e-7)
    # STS: a regression, the mean squared difference of the scores
    assert rdrop_term("sts", torch.tensor([1.0, 4.0]), torch.tensor([2.0, 2.0])).item() == pytest.approx(2.5)


# -- CoSENT ----------------------------------------------------------------------------------------
def test_cosent_hand_computed():
    """Labels 3 > 1 > 0 rank the pairs (0, 1), (0, 2), (1, 2); each adds exp(s·(cos_j − cos_i))."""
    cos, labels, s = torch.tensor([0.2, 0.5, -0.1]), torch.tensor([3.0, 1.0, 0.0]), 2.0
    terms = [s * (0.5 - 0.2), s * (-0.1 - 0.2), s * (-0.1 - 0.5)]
    want = math.log(1 + sum(math.exp(t) for t in terms))
    assert cosent_loss(cos, labels, s).item() == pytest.approx(want, rel=1e-6)


def test_cosent_rewards_the_labels_order_and_ignores_ties():
    labels = torch.tensor([4.0, 2.5, 2.5, 0.0])
    right, wrong = torch.tensor([0.9, 0.5, 0.4, 0.1]), torch.tensor([0.1, 0.5, 0.4, 0.9])
    assert cosent_loss(right, labels).item() < 0.01 < 10 < cosent_loss(wrong, labels).item()
    assert cosent_loss(right, torch.full((4,), 2.0)).item() == 0.0  # no ranked pair: log(1)
    # the tied pair (1, 2) is not ranked: swapping its cosines changes nothing
    assert cosent_loss(torch.tensor([0.9, 0.4, 0.5, 0.1]), labels).item() == pytest.approx(
        cosent_loss(right, labels).item(), rel=1e-6)
