"""pcgrad: gradient surgery (Yu et al., 2020). A task gradient g_i that conflicts with another
task's original gradient g_j (g_i·g_j < 0) loses its component along g_j:
g_i ← g_i − (g_i·g_j / ||g_j||²) g_j; the projected gradients are summed."""
from __future__ import annotations

import itertools
import random

import pytest
import torch

from multitask_classifier import task_loss
from pcgrad import pcgrad_backward, pcgrad_sum, project

pytestmark = pytest.mark.usefixtures("one_thread")


def test_two_conflicting_gradients_hand_computed():
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])  # g1·g2 = -1
    p1, p2 = project(g1, [g2]), project(g2, [g1])
    # g1' = g1 - (-1/2) g2 = (0.5, 0.5);  g2' = g2 - (-1/1) g1 = (0, 1)
    assert torch.allclose(p1, torch.tensor([0.5, 0.5]))
    assert torch.allclose(p2, torch.tensor([0.0, 1.0]))
    assert torch.dot(p1, g2).abs() < 1e-7 and torch.dot(p2, g1).abs() < 1e-7
    total = pcgrad_sum([g1, g2], random.Random(0))
    assert torch.allclose(total, p1 + p2)
    assert torch.allclose(total, torch.tensor([0.5, 1.5]))
    assert not torch.allclose(total, g1 + g2)  # surgery changed the update
    assert torch.equal(g1, torch.tensor([1.0, 0.0]))  # the inputs are not modified


def test_random_conflicting_gradients_become_orthogonal():
    gen = torch.Generator().manual_seed(3)
    for _ in range(20):
        g1, g2 = torch.randn(50, generator=gen, dtype=torch.float64), torch.randn(50, generator=gen, dtype=torch.float64)
        if torch.dot(g1, g2) >= 0:
            g2 = -g2
        p1, p2 = project(g1, [g2]), project(g2, [g1])
        assert abs(torch.dot(p1, g2).item()) < 1e-10 * g1.norm().item() * g2.norm().item()
        assert abs(torch.dot(p2, g1).item()) < 1e-10 * g1.norm().item() * g2.norm().item()
        # explicit formula
        want1 = g1 - torch.dot(g1, g2) / torch.dot(g2, g2) * g2
        assert torch.allclose(p1, want1)
        assert torch.allclose(pcgrad_sum([g1, g2], random.Random(1)), p1 + p2)


def test_agreeing_gradients_left_alone():
    g1, g2 = torch.tensor([1.0, 2.0]), torch.tensor([3.0, -1.0])  # g1·g2 = 1 > 0
    assert torch.equal(project(g1, [g2]), g1)
    assert torch.equal(project(g2, [g1]), g2)
    assert torch.equal(pcgrad_sum([g1, g2], random.Random(0)), g1 + g2)
    # orthogonal gradients (dot 0) do not conflict either
    assert torch.equal(pcgrad_sum([torch.tensor([1.0, 0.0]), torch.tensor([0.0, 5.0])], random.Random(0)),
                       torch.tensor([1.0, 5.0]))


def test_three_tasks_project_against_originals_in_some_order():
    """Each g_i is projected against the *original* g_j (j ≠ i), one after another in a random
    order; the result is one of the orderings' sums, and a fixed rng makes it reproducible."""
    g = [torch.tensor([1.0, 0.0, 0.0]), torch.tensor([-1.0, 1.0, 0.2]), torch.tensor([-0.5, -1.0, 1.0])]

    def hand_project(gi, order):
        gi = gi.clone()
        for gj in order:
            d = float(torch.dot(gi, gj))
            if d < 0:
                gi = gi - d / float(torch.dot(gj, gj)) * gj
        return gi

    candidates = []
    for orders in itertools.product(*[list(itertools.permutations([g[j] for j in range(3) if j != i]))
                                      for i in range(3)]):
        candidates.append(sum(hand_project(g[i], orders[i]) for i in range(3)))
    for seed in range(5):
        total = pcgrad_sum(g, random.Random(seed))
        assert any(torch.allclose(total, c, atol=1e-6) for c in candidates)
        assert torch.equal(total, pcgrad_sum(g, random.Random(seed)))
    # the orderings do differ here, so the check above is not vacuous
    assert not all(torch.allclose(candidates[0], c) for c in candidates)


def _grads(params):
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params])


def _losses(model, batches):
    """L1 = SST loss on batch A; L2 = PARA loss − 0.5·(SST loss on A): separate graphs, and a
    gradient on the shared encoder that partly opposes L1's."""
    l1, _ = task_loss(model, "sst", batches["sst"])
    l_para, _ = task_loss(model, "para", batches["para"])
    l_sst2, _ = task_loss(model, "sst", batches["sst"])
    return [l1, l_para - 0.5 * l_sst2]


def test_pcgrad_backward_on_tiny_model(tiny_mtbert, tiny_batch):
    model, _ = tiny_mtbert()  # eval mode: the passes below are the same function
    batches = {"sst": tiny_batch("sst", seed=1), "para": tiny_batch("para", seed=2)}
    shared = [p for p in model.bert.parameters() if p.requires_grad]
    heads = [p for n, p in model.named_parameters() if not n.startswith("bert.")]

    # plain per-task gradients, computed separately
    per_task, head_plain = [], torch.zeros(sum(p.numel() for p in heads))
    for k in range(2):
        model.zero_grad(set_to_none=True)
        _losses(model, batches)[k].backward()
        per_task.append(_grads(shared).clone())
        head_plain += _grads(heads)
    g1, g2 = per_task
    dot = torch.dot(g1, g2)
    assert dot < 0  # the case under test: conflicting gradients
    want = (g1 - dot / g2.square().sum() * g2) + (g2 - dot / g1.square().sum() * g1)

    model.zero_grad(set_to_none=True)
    pcgrad_backward(_losses(model, batches), shared, random.Random(0))
    got = _grads(shared)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-7)
    assert not torch.allclose(got, g1 + g2, rtol=1e-3, atol=1e-6)  # not the plain sum
    # heads (touched by one task each) keep their plain gradients
    assert torch.allclose(_grads(heads), head_plain, rtol=1e-5, atol=1e-8)
    assert model.para_head[-1].weight.grad.abs().sum() > 0


def test_pcgrad_backward_without_conflict_is_plain_sum(tiny_mtbert, tiny_batch):
    model, _ = tiny_mtbert()
    batches = [tiny_batch("sst", seed=1), tiny_batch("sst", seed=1)]
    shared = [p for p in model.bert.parameters() if p.requires_grad]
    model.zero_grad(set_to_none=True)
    (task_loss(model, "sst", batches[0])[0] + task_loss(model, "sst", batches[1])[0]).backward()
    plain = _grads(shared).clone()
    model.zero_grad(set_to_none=True)
    pcgrad_backward([task_loss(model, "sst", b)[0] for b in batches], shared, random.Random(0))
    assert torch.allclose(_grads(shared), plain, rtol=1e-5, atol=1e-8)
