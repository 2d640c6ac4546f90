"""AdamW (Loshchilov & Hutter, 2019): Adam with weight decay decoupled from the gradient.

The update is written with torch._foreach_* ops: each line below updates a whole batch of a
group's parameters, so a step makes a few calls per group instead of about ten per tensor. On a
GPU that saves most kernel launches; on a CPU the step is bound by memory traffic and the gain
is small (the per-tensor loop's own overhead was ~1 ms of a ~40-60 ms MiniLM optimizer step)."""
from __future__ import annotations

import math

import torch
from torch.optim import Optimizer

# At most this many values per fused call. One call over all of MiniLM's 11M trainable values
# allocates ~45 MB of √v temporaries at once, which the CPU allocator returns to the system and
# page-faults back in on every step (measured on one core: 1.7x the per-tensor loop's time).
# Batches of ~1M values (4 MB in float32) reuse the same few MB; on a GPU they add few launches.
BATCH_VALUES = 1 << 20


def _undecorated(name: str):
    """torch.optim.Optimizer's method `name` without the wrapper torch puts around it so that
    torch.compile skips it. That wrapper imports all of torch._dynamo (about 1.5 s) on its first
    call, in every process that builds an optimizer; this one is never compiled, so it calls the
    method underneath (the method itself where a torch version has no wrapper)."""
    method = getattr(Optimizer, name)
    return getattr(method, "__wrapped__", method)


class AdamW(Optimizer):
    add_param_group = _undecorated("add_param_group")
    zero_grad = _undecorated("zero_grad")
    state_dict = _undecorated("state_dict")
    load_state_dict = _undecorated("load_state_dict")

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
            # A fused call takes tensors of one device and dtype: split the group accordingly.
            parts: dict = {}
            for p in group["params"]:
                if p.grad is None:  # frozen, or unused this step: no update and no state
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("AdamW does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                # A plain int per parameter (as before): checkpoints keep it as a JSON scalar.
                state["step"] += 1
                parts.setdefault((p.device, p.dtype), []).append(p)
            for same_kind in parts.values():
                for params in _batches(same_kind, BATCH_VALUES):
                    self._update(group, params)
        return loss

    def _update(self, group, params):
        """One AdamW step on parameters of one device and dtype. Each parameter keeps its own
        step count (one that had no gradient on some steps is behind), so the bias corrections
        are per-parameter lists of scalars."""
        grads = [p.grad for p in params]
        ms = [self.state[p]["exp_avg"] for p in params]
        vs = [self.state[p]["exp_avg_sq"] for p in params]
        steps = [self.state[p]["step"] for p in params]
        lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        # Running averages of the gradient, m ← β1·m + (1−β1)·g, and of its square,
        # v ← β2·v + (1−β2)·g².
        torch._foreach_mul_(ms, beta1)
        torch._foreach_add_(ms, grads, alpha=1 - beta1)
        torch._foreach_mul_(vs, beta2)
        torch._foreach_addcmul_(vs, grads, grads, value=1 - beta2)
        denoms = torch._foreach_sqrt(vs)  # √v, a fresh tensor per parameter
        if group["correct_bias"]:
            # Both averages start at zero; rescale so early steps are not biased small:
            # step size lr / (1−β1^t), denominator √v / √(1−β2^t).
            step_sizes = [-lr / (1 - beta1 ** t) for t in steps]
            torch._foreach_div_(denoms, [math.sqrt(1 - beta2 ** t) for t in steps])
        else:
            step_sizes = [-lr] * len(params)
        torch._foreach_add_(denoms, eps)  # eps outside the square root, after the correction
        # Decoupled decay: shrink the weights directly, p ← p·(1 − lr·wd), not via the gradient.
        if wd:
            torch._foreach_mul_(params, 1 - lr * wd)
        # p ← p − step_size · m / denom
        torch._foreach_addcdiv_(params, ms, denoms, step_sizes)


def _batches(params: list, limit: int):
    """Consecutive runs of `params` with at most `limit` values in all (a larger tensor alone)."""
    batch, size = [], 0
    for p in params:
        if batch and size + p.numel() > limit:
            yield batch
            batch, size = [], 0
        batch.append(p)
        size += p.numel()
    if batch:
        yield batch
