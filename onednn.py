"""Linear layers whose matrix products run in oneDNN on the CPU, forward and backward.

Why: torch's CPU `F.linear` and `mm` call MKL's sgemm, and MKL takes its AVX2 code path on
CPUs that are not Intel's, even when they have AVX-512 (this project's AMD EPYC machines do).
oneDNN, which torch ships as well, picks its AVX-512 kernels there. On such a machine the same
fp32 products (same inputs, same precision: IEEE fp32 with fp32 sums) run about 2.2x as fast:
`torch.ops.mkldnn._linear_pointwise` on 900 tokens x 384 -> 1536, 450 against 205 GFLOP/s on two
cores. That op has no backward, so `_OneDNNLinear` writes out the two products of the backward
with it as well: grad_x = grad_y W and grad_W = grad_y^T x (it takes transposed views directly).

`Linear` is an `nn.Linear` (same parameters, same state-dict keys) that takes this path for fp32
tensors on the CPU while its `onednn` is True (`use(model, False)`: the main job's --no-onednn),
and `F.linear` otherwise: on a GPU, under autocast, under torch.compile, off x86, or where torch
was built without oneDNN. The function is the same; only the rounding of the sums differs (~1e-6 relative).
"""
from __future__ import annotations

import os
import platform

import torch
import torch.nn.functional as F
from torch import nn

# x86 only: the measured gain is AVX-512 against MKL's AVX2 code; ARM builds are untested here.
AVAILABLE = (platform.machine().lower() in ("x86_64", "amd64") and torch.backends.mkldnn.is_available()
             and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


# oneDNN compiles a primitive for every product shape it meets and keeps up to 1,024 of them, each
# of several MB. The unpadded batches give nearly every step new row counts, so that cache alone
# took the main job from 3.8-4.0 to 5.5-5.7 GiB. A step needs 12 shapes per row count (4 layer
# shapes, 3 products each, shared by the layers); below that, building primitives dominates the
# step. 128 holds a step's shapes with room and was faster than 1,024 (the measured capacities:
# README, Speed, "Memory"). oneDNN reads the variable at its first primitive, so this must run
# before any oneDNN product (bert.py imports this module); a value the user set is left alone.
CACHE_CAPACITY = 128
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(CACHE_CAPACITY))


def _mm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """x [N, K] @ w[M, K]^T (+ b): oneDNN's fp32 product; x and w may be transposed views."""
    return torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")


class _OneDNNLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        x2 = x.reshape(-1, x.shape[-1])
        ctx.save_for_backward(x2, weight)
        ctx.has_bias = bias is not None
        return _mm(x2, weight, bias).view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad):
        x2, weight = ctx.saved_tensors
        g = grad.reshape(-1, weight.shape[0])
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = _mm(g, weight.t(), None).view(*grad.shape[:-1], weight.shape[1])  # grad_y W
        if ctx.needs_input_grad[1]:
            gw = _mm(g.t(), x2.t(), None)  # grad_y^T x
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = g.sum(0)
        return gx, gw, gb


def usable(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (AVAILABLE and x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32
            and x.numel() > 0 and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling())


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear(x, weight, bias)`, through oneDNN where `usable`."""
    if usable(x, weight):
        return _OneDNNLinear.apply(x, weight, bias)
    return F.linear(x, weight, bias)


class Linear(nn.Linear):
    onednn = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.onednn:
            return linear(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)


def use(model: nn.Module, on: bool) -> None:
    """Every `Linear` of `model` through oneDNN (on) or torch's own `F.linear` (off)."""
    for m in model.modules():
        if isinstance(m, Linear):
            m.onednn = on


def convert(model: nn.Module) -> int:
    """Make every plain `nn.Linear` of `model` a `Linear` in place (same parameters): for putting
    another encoder (benchmarks/bench_speed.py: transformers') on the same products. Returns how many."""
    plain = [m for m in model.modules() if type(m) is nn.Linear]
    for m in plain:
        m.__class__ = Linear
    return len(plain)
