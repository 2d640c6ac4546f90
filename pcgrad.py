"""PCGrad gradient surgery (Yu et al., 2020) for global multitask updates.

Each task's gradient of the shared (encoder) parameters is taken separately. For each task i,
in random order over the other tasks j, the component of g_i that conflicts with the original
g_j (negative dot product) is projected away: g_i ← g_i − (g_i·g_j / ||g_j||²) g_j. The
projected gradients are summed. Task heads are touched by one task only and keep their own
gradients. Memory: one flat gradient per task.
"""
from __future__ import annotations

import random

import torch


def project(g: torch.Tensor, others: list[torch.Tensor]) -> torch.Tensor:
    """g with its conflicting component along each of `others` removed, in the order given."""
    g = g.clone()
    for o in others:
        dot = torch.dot(g, o)
        if dot < 0:
            g -= dot / o.square().sum().clamp(min=1e-20) * o
    return g


def pcgrad_sum(grads: list[torch.Tensor], rng: random.Random) -> torch.Tensor:
    """Sum of the projected flat per-task gradients (one working copy at a time)."""
    total = torch.zeros_like(grads[0])
    for i, g in enumerate(grads):
        others = [grads[j] for j in range(len(grads)) if j != i]
        rng.shuffle(others)
        total += project(g, others)
    return total


def pcgrad_backward(losses: list[torch.Tensor], shared: list[torch.nn.Parameter], rng: random.Random):
    """Backward every loss, replacing the shared parameters' summed gradient by PCGrad's."""
    flat = []
    for loss in losses:
        loss.backward()
        flat.append(torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten()
                               for p in shared]))
        for p in shared:
            p.grad = None
    total = pcgrad_sum(flat, rng)
    offset = 0
    for p in shared:
        p.grad = total[offset:offset + p.numel()].view_as(p).clone()
        offset += p.numel()
