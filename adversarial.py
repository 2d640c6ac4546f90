"""Adversarial training on the embedding output: FGSM and SMART.

Both perturb x, the output of BERT's embedding layer (after LayerNorm and dropout), via the
`hook` that `MultitaskBERT.forward` applies to it.

- FGSM (Goodfellow et al., 2015): δ = ε·sign(∇_x L(x)); the loss on x + δ is added to the
  clean loss. δ is a constant (no gradient flows through the sign).
- SMART (Jiang et al., 2020), smoothness-inducing regulariser: start from small Gaussian noise,
  take a few projected gradient-ascent steps on the divergence between the outputs at x + δ and
  the (fixed) clean outputs, then penalise that divergence. Divergence: symmetric KL for the
  classifiers (softmax for SST, Bernoulli for PARA), squared error for STS scores.

In training, every perturbed pass replays the clean pass's dropout masks (`same_masks`), so that
it differs from the clean pass by δ alone. With fresh masks, the divergence measured dropout noise
instead: on a trained model's SST batches it was 0.06 at every ε from 1e-5 to 1e-2, where with
the same masks it is 1e-8 at ε = 1e-5 and 0.03 at ε = 1e-2 (it grows as ε²).
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F


class Capture:
    """Hook that records the embedding output of a forward pass, unchanged."""

    def __init__(self):
        self.x = None

    def __call__(self, x):
        self.x = x
        return x


def generator_state():
    """The state of the generators dropout draws its masks from: take it before a clean pass."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    return torch.get_rng_state(), cuda


@contextmanager
def same_masks(state):
    """A forward pass inside draws the dropout masks that the pass begun at `state` drew (same
    batch, same shapes, so the same draws in the same order). Afterwards the generators go on from
    where they were, so later passes draw fresh masks. `state` None: nothing is replayed."""
    if state is None:
        yield
        return
    after = generator_state()
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state_all(state[1])
    try:
        yield
    finally:
        torch.set_rng_state(after[0])
        if after[1] is not None:
            torch.cuda.set_rng_state_all(after[1])


def fgsm_delta(loss: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    (grad,) = torch.autograd.grad(loss, x, retain_graph=True)
    return eps * grad.sign()


def fgsm_loss(model, task, batch, clean_loss, captured: Capture, eps: float, loss_fn, masks=None):
    """The loss at x + δ; `masks`: generator_state() taken before the clean pass."""
    delta = fgsm_delta(clean_loss, captured.x, eps)
    with same_masks(masks):
        adv_loss, _ = loss_fn(model, task, batch, hook=lambda x: x + delta)
    return adv_loss


def divergence(task: str, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Symmetric KL between output distributions (SST, PARA); squared error for STS scores."""
    p, q = p.float(), q.float()
    if task == "sts":
        return F.mse_loss(p, q)
    if task == "para":  # Bernoulli outputs as two-class logits
        p, q = torch.stack([torch.zeros_like(p), p], -1), torch.stack([torch.zeros_like(q), q], -1)
    lp, lq = p.log_softmax(-1), q.log_softmax(-1)
    return (F.kl_div(lp, lq, log_target=True, reduction="batchmean")
            + F.kl_div(lq, lp, log_target=True, reduction="batchmean"))


def smart_regularizer(model, task, batch, clean_out: torch.Tensor, x: torch.Tensor,
                      eps: float = 1e-2, noise: float = 1e-5, steps: int = 1,
                      step_size: float | None = None, masks=None) -> torch.Tensor:
    """max over ||δ||∞ ≤ eps of divergence(f(x + δ), f(x)), approximated by projected ascent.
    step_size None: eps, so that one step reaches the ball's edge on the gradient's largest
    coordinate of each token. `masks`: generator_state() taken before the clean pass."""
    step_size = eps if step_size is None else step_size
    target = clean_out.detach()
    delta = (torch.randn_like(x) * noise).detach()
    for _ in range(steps):
        delta.requires_grad_(True)
        with same_masks(masks):
            adv = model(task, batch, hook=lambda h: h + delta)["out"]
        (g,) = torch.autograd.grad(divergence(task, adv, target), delta)
        # Normalised ascent step, then projection back into the ε-ball.
        delta = (delta + step_size * g / (g.abs().amax(-1, keepdim=True) + 1e-12)).clamp(-eps, eps).detach()
    with same_masks(masks):
        adv = model(task, batch, hook=lambda h: h + delta)["out"]
    return divergence(task, adv, clean_out)
