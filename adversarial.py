"""Adversarial training on the embedding output: FGSM and SMART.

Both perturb x, the output of BERT's embedding layer (after LayerNorm and dropout), via the
`hook` that `MultitaskBERT.forward` applies to it.

- FGSM (Goodfellow et al., 2015): δ = ε·sign(∇_x L(x)); the loss on x + δ is added to the
  clean loss. δ is a constant (no gradient flows through the sign).
- SMART (Jiang et al., 2020), smoothness-inducing regulariser: start from small Gaussian noise,
  take a few projected gradient-ascent steps on the divergence between the outputs at x + δ and
  the (fixed) clean outputs, then penalise that divergence. Divergence: symmetric KL for the
  classifiers (softmax for SST, Bernoulli for PARA), squared error for STS scores.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


class Capture:
    """Hook that records the embedding output of a forward pass, unchanged."""

    def __init__(self):
        self.x = None

    def __call__(self, x):
        self.x = x
        return x


def fgsm_delta(loss: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    (grad,) = torch.autograd.grad(loss, x, retain_graph=True)
    return eps * grad.sign()


def fgsm_loss(model, task, batch, clean_loss, captured: Capture, eps: float, loss_fn):
    delta = fgsm_delta(clean_loss, captured.x, eps)
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
                      eps: float = 1e-5, noise: float = 1e-5, steps: int = 1,
                      step_size: float = 1e-3) -> torch.Tensor:
    """max over ||δ||∞ ≤ eps of divergence(f(x + δ), f(x)), approximated by projected ascent."""
    target = clean_out.detach()
    delta = (torch.randn_like(x) * noise).detach()
    for _ in range(steps):
        delta.requires_grad_(True)
        adv = model(task, batch, hook=lambda h: h + delta)["out"]
        (g,) = torch.autograd.grad(divergence(task, adv, target), delta)
        # Normalised ascent step, then projection back into the ε-ball.
        delta = (delta + step_size * g / (g.abs().amax(-1, keepdim=True) + 1e-12)).clamp(-eps, eps).detach()
    adv = model(task, batch, hook=lambda h: h + delta)["out"]
    return divergence(task, adv, clean_out)
