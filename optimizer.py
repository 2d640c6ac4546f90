"""AdamW (Loshchilov & Hutter, 2019): Adam with weight decay decoupled from the gradient."""
from __future__ import annotations

import math

import torch
from torch.optim import Optimizer


class AdamW(Optimizer):
    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, correct_bias: bool = True):
        if lr < 0.0:
            raise ValueError(f"invalid learning rate {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"invalid betas {betas}")
        if eps < 0.0:
            raise ValueError(f"invalid eps {eps}")
        if weight_decay < 0.0:
            raise ValueError(f"invalid weight_decay {weight_decay}")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        correct_bias=correct_bias)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if grad.is_sparse:
                    raise RuntimeError("AdamW does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                m, v = state["exp_avg"], state["exp_avg_sq"]
                # Running averages of the gradient and its square.
                m.mul_(beta1).add_(grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                step_size, denom = lr, v.sqrt()
                if group["correct_bias"]:
                    # Both averages start at zero; rescale so early steps are not biased small.
                    step_size = lr / (1 - beta1 ** state["step"])
                    denom = denom.div_(math.sqrt(1 - beta2 ** state["step"]))
                denom.add_(eps)
                # Decoupled decay: shrink the weights directly, not through the gradient.
                if group["weight_decay"]:
                    p.mul_(1 - lr * group["weight_decay"])
                p.addcdiv_(m, denom, value=-step_size)
        return loss
