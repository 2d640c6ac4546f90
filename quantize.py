"""int8 inference: the encoder's linear layers as int8 matrix products (--int8, prediction only).

Nearly all of an encoder's inference time on CPU is its four linear layers per block (QKV, the
attention output, the two feed-forward layers), and on this project's CPUs an int8 matrix product
with int32 accumulation runs several times faster than fp32 (torch._int_mm). Each layer becomes:

    W ≈ s_w · W8   per output channel: s_w = max|W_row| / 127, W8 = round(W / s_w), once
    x ≈ s_x · x8   per row (token), at each call: s_x = max|x_row| / 127
    y = (x8 @ W8ᵀ) · s_x · s_wᵀ + b          int32 product, rescaled and biased in fp32

Symmetric scales per token and per channel keep the rounding error of each product relative to
its own row's largest value, not the batch's. Attention's softmax product, GELU, LayerNorm and
the task heads stay in fp32. The scores move a little, so it is for prediction only (training
needs gradients through fp32 weights) and its dev effect is measured, not assumed: README,
"int8 inference".
"""
from __future__ import annotations

import torch
from torch import nn


class Int8Linear(nn.Module):
    """A frozen nn.Linear computed in int8 (module docstring)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        w = linear.weight.detach().float()
        scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127
        # stored as [in, out]: torch._int_mm multiplies [N, in] by [in, out]
        self.register_buffer("weight_t", (w / scale[:, None]).round().clamp(-127, 127).to(torch.int8).t())
        self.register_buffer("scale", scale)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float())
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).float()
        s = rows.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127
        x8 = (rows / s).round_().clamp_(-127, 127).to(torch.int8)
        y = torch._int_mm(x8, self.weight_t).float().mul_(s).mul_(self.scale)
        if self.bias is not None:
            y.add_(self.bias)
        return y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)


def quantize_encoder(model: nn.Module) -> int:
    """Replace, in place, every nn.Linear of `model.bert` (the encoder; the heads stay fp32) by an
    Int8Linear. Returns how many were replaced."""
    targets = [(parent, name, child) for parent in model.bert.modules()
               for name, child in parent.named_children() if isinstance(child, nn.Linear)]
    for parent, name, child in targets:
        setattr(parent, name, Int8Linear(child))
    return len(targets)
