"""adversarial: FGSM (δ = ε·sign(∇_x L), Goodfellow et al., 2015) and the SMART smoothness
regulariser (Jiang et al., 2020) on the embedding output of a tiny MultitaskBERT."""
from __future__ import annotations

import math

import pytest
import torch

from adversarial import (Capture, divergence, fgsm_delta, fgsm_loss, generator_state, same_masks,
                         smart_regularizer)
from multitask_classifier import task_loss

pytestmark = pytest.mark.usefixtures("one_thread")

TASKS = ("sst", "para", "sts")


def test_fgsm_delta_is_eps_sign_of_gradient():
    """loss = Σ w·x has gradient w, so δ = ε·sign(w) exactly (0 where w is 0)."""
    w = torch.tensor([[0.5, -2.0, 0.0], [-1e-3, 3.0, -0.25]])
    x = torch.randn(2, 3, requires_grad=True)
    loss = (w * x).sum()
    eps = 0.125
    delta = fgsm_delta(loss, x, eps)
    assert torch.equal(delta, torch.tensor([[eps, -eps, 0.0], [-eps, eps, -eps]]))
    assert not delta.requires_grad  # a constant: no gradient through the sign
    loss.backward()  # the graph was retained for the clean loss's own backward
    assert torch.equal(x.grad, w)


def test_fgsm_delta_nonlinear_gradient():
    """loss = Σ x³ has gradient 3x², so δ = ε everywhere x ≠ 0."""
    x = torch.tensor([1.0, -2.0, 0.0, 0.5], requires_grad=True)
    delta = fgsm_delta((x ** 3).sum(), x, 0.01)
    assert torch.equal(delta, torch.tensor([0.01, 0.01, 0.0, 0.01]))


@pytest.mark.parametrize("task", TASKS)
def test_fgsm_loss_is_task_loss_at_perturbed_embeddings(task, tiny_mtbert, tiny_batch):
    model, _ = tiny_mtbert()  # eval mode: no dropout, so every pass is the same function
    batch = tiny_batch(task)
    eps = 0.05
    captured = Capture()
    clean, _ = task_loss(model, task, batch, captured)
    adv = fgsm_loss(model, task, batch, clean, captured, eps, task_loss)

    # Independently: make the embedding output a leaf, take its gradient, step ε·sign.
    leaf = {}

    def as_leaf(x):
        leaf["x"] = x.detach().clone().requires_grad_(True)
        return leaf["x"]

    loss0, _ = task_loss(model, task, batch, as_leaf)
    assert loss0.item() == pytest.approx(clean.item(), rel=1e-6)
    loss0.backward()
    x_adv = (leaf["x"] + eps * leaf["x"].grad.sign()).detach()
    want, _ = task_loss(model, task, batch, lambda x: x_adv)

    assert adv.item() == pytest.approx(want.item(), rel=1e-5, abs=1e-7)
    assert adv.item() != pytest.approx(clean.item(), rel=1e-6)  # the perturbation matters
    assert adv.item() > clean.item()  # an ascent direction raises the loss (first order)
    # the adversarial loss trains the encoder
    model.zero_grad()
    adv.backward()
    g = model.bert.embeddings.word_embeddings.weight.grad
    assert g is not None and g.abs().sum() > 0


def test_divergence_definitions():
    torch.manual_seed(0)
    p, q = torch.randn(3, 5), torch.randn(3, 5)
    # SST: KL(P||Q) + KL(Q||P) of the softmaxes, averaged over the batch
    P, Q = p.softmax(-1), q.softmax(-1)
    want = ((P * (P / Q).log()).sum() + (Q * (Q / P).log()).sum()).item() / 3
    assert divergence("sst", p, q).item() == pytest.approx(want, rel=1e-5)
    # PARA: Bernoulli distributions with probability sigmoid(logit)
    a, b = [0.3, -1.2, 2.0], [-0.4, 0.1, 2.5]
    total = 0.0
    for x, y in zip(a, b):
        s, t = 1 / (1 + math.exp(-x)), 1 / (1 + math.exp(-y))
        total += (s * math.log(s / t) + (1 - s) * math.log((1 - s) / (1 - t))
                  + t * math.log(t / s) + (1 - t) * math.log((1 - t) / (1 - s)))
    assert divergence("para", torch.tensor(a), torch.tensor(b)).item() == pytest.approx(total / 3, rel=1e-5)
    # STS: mean squared error of the scores
    assert divergence("sts", torch.tensor([1.0, 4.0]), torch.tensor([2.0, 1.0])).item() == pytest.approx(5.0)


@pytest.mark.parametrize("task,shape", [("sst", (4, 5)), ("para", (4,)), ("sts", (4,))])
def test_divergence_symmetric_and_zero_on_equal(task, shape):
    torch.manual_seed(1)
    p, q = torch.randn(shape), torch.randn(shape)
    assert divergence(task, p, q).item() == pytest.approx(divergence(task, q, p).item(), rel=1e-6)
    assert divergence(task, p, q).item() > 0
    assert abs(divergence(task, p, p.clone()).item()) <= 1e-7


@pytest.fixture
def clean_pass(tiny_mtbert, tiny_batch):
    """A tiny model, a batch of `task`, and its clean forward pass with the embedding captured."""
    def make(task):
        model, _ = tiny_mtbert()
        batch = tiny_batch(task)
        captured = Capture()
        return model, batch, captured, model(task, batch, captured)["out"]
    return make


class Spy:
    """Wraps the model and records the perturbation δ = hook(x) − x of every forward pass."""

    def __init__(self, model):
        self.model, self.deltas = model, []

    def __call__(self, task, batch, hook=None):
        def spy(x):
            y = hook(x)
            self.deltas.append((y - x).detach())
            return y
        return self.model(task, batch, hook=spy)


@pytest.mark.parametrize("task", TASKS)
def test_smart_zero_without_perturbation(task, clean_pass):
    model, batch, captured, out = clean_pass(task)
    reg = smart_regularizer(model, task, batch, out, captured.x, eps=0.0, noise=0.0)
    assert abs(reg.item()) <= 1e-7


@pytest.mark.parametrize("task", TASKS)
def test_smart_positive_and_within_eps_ball(task, clean_pass):
    model, batch, captured, out = clean_pass(task)
    eps = 1e-2
    spy = Spy(model)
    torch.manual_seed(0)
    reg = smart_regularizer(spy, task, batch, out, captured.x, eps=eps, noise=1e-3, steps=2,
                            step_size=5e-3)
    assert reg.item() > 0 and math.isfinite(reg.item())
    assert len(spy.deltas) == 3  # two ascent steps, then the penalised pass
    assert spy.deltas[-1].abs().max().item() <= eps * (1 + 1e-5)  # projected into the ε-ball
    # the ascent steps raise the divergence above that of the initial noise alone
    torch.manual_seed(0)
    noise_only = smart_regularizer(model, task, batch, out, captured.x, eps=eps, noise=1e-3, steps=0)
    assert reg.item() > noise_only.item()
    # the regulariser is differentiable w.r.t. the encoder
    model.zero_grad()
    reg.backward()
    g = model.bert.layers[0].intermediate.weight.grad
    assert g is not None and g.abs().sum() > 0


# -- in training: the perturbed passes replay the clean pass's dropout masks ------------------------
def test_same_masks_replays_a_pass_then_draws_fresh_ones(tiny_mtbert, tiny_batch):
    model, _ = tiny_mtbert(train=True)
    batch = tiny_batch("sst")
    state = generator_state()
    first = model("sst", batch)["out"]
    with same_masks(state):
        replayed = model("sst", batch)["out"]
    after = generator_state()
    fresh = model("sst", batch)["out"]
    assert torch.equal(replayed, first)
    assert not torch.allclose(fresh, first)  # dropout is on: other masks, other outputs
    torch.set_rng_state(after[0])  # the replay left the generator where the first pass had
    assert torch.equal(model("sst", batch)["out"], fresh)
    with same_masks(None):  # nothing to replay: fresh masks again
        assert not torch.allclose(model("sst", batch)["out"], first)


@pytest.mark.parametrize("task", TASKS)
def test_smart_in_training_measures_the_perturbation_alone(task, tiny_mtbert, tiny_batch):
    """With the clean pass's masks, δ = 0 gives a divergence of 0 in training too; with fresh masks
    (no `masks`) the same call measures dropout noise, whatever ε is."""
    model, _ = tiny_mtbert(train=True)
    batch = tiny_batch(task, cross=task == "para")  # PARA as the default trains it: one order, cross-encoded
    masks = generator_state()
    captured = Capture()
    out = model(task, batch, captured)["out"]
    still = smart_regularizer(model, task, batch, out, captured.x, eps=0.0, noise=0.0, masks=masks)
    assert still.item() == 0.0
    moved = smart_regularizer(model, task, batch, out, captured.x, eps=1e-1, masks=masks)
    assert moved.item() > 0
    noise = smart_regularizer(model, task, batch, out, captured.x, eps=0.0, noise=0.0)
    assert noise.item() > 1e3 * max(still.item(), 1e-12)


def test_fgsm_in_training_replays_the_masks(tiny_mtbert, tiny_batch):
    """At ε = 0 the adversarial loss is the clean loss itself when the masks are replayed."""
    model, _ = tiny_mtbert(train=True)
    batch = tiny_batch("sst")
    masks = generator_state()
    captured = Capture()
    clean, _ = task_loss(model, "sst", batch, captured)
    assert fgsm_loss(model, "sst", batch, clean, captured, 0.0, task_loss, masks).item() == clean.item()
    assert fgsm_loss(model, "sst", batch, clean, captured, 0.0, task_loss).item() != clean.item()
