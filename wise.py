"""WiSE-FT (Wortsman et al., 2022): weight-space ensembling of the fine-tuned and pretrained encoder.

Fine-tuning on a few thousand labelled sentences moves the encoder away from what pretraining
taught it (here most visibly: STS correlation falls as SST and PARA training goes on). Mixing
weights, θ(α) = θ_pretrained + α·(θ_finetuned − θ_pretrained), keeps part of both; α = 1 is the
fine-tuned model. The task heads keep their fine-tuned weights. α is chosen on dev.
"""
from __future__ import annotations

import torch
from torch import nn


def snapshot(module: nn.Module) -> dict:
    """A CPU copy of a module's weights."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


@torch.no_grad()
def mix(module: nn.Module, pretrained: dict, finetuned: dict, alpha: float):
    """Load θ_pretrained + α·(θ_finetuned − θ_pretrained) into `module`."""
    for k, v in module.state_dict().items():
        if v.is_floating_point():
            v.copy_(torch.lerp(pretrained[k].to(v), finetuned[k].to(v), alpha))


def choose_alpha(module: nn.Module, pretrained: dict, alphas, score,
                 rank=lambda metrics: metrics["overall"]) -> tuple[float, dict, dict]:
    """Try each α (1.0 = the fine-tuned weights, scored too); leave `module` at the best one.
    `score()` evaluates the current weights and returns a metrics dict; `rank(metrics)` orders
    them (the dev overall; a run on fewer tasks passes the overall of those tasks).
    Returns (best α, its metrics, {α: rank})."""
    finetuned = snapshot(module)
    results, best = {}, None
    for alpha in sorted(set(alphas) | {1.0}):
        mix(module, pretrained, finetuned, alpha)
        metrics = score()
        results[alpha] = rank(metrics)
        if best is None or results[alpha] > results[best[0]]:
            best = (alpha, metrics)
    mix(module, pretrained, finetuned, best[0])
    return best[0], best[1], results
