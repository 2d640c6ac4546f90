"""Projected Attention Layers (Stickland & Murray, 2019): a small task-specific attention run in
parallel to every BERT layer's self-attention.

For task t and layer l:  PAL(h) = V_t^D · MH_{t,l}(V_t^E · h), added to the self-attention
output before the residual and LayerNorm. V^E (H -> d) and V^D (d -> H) are shared by all
layers of a task; each layer has its own multi-head attention in the d-dimensional space (fused
QKV, no output projection: V^D plays that part). V^D starts at zero, so a fresh PAL leaves the
pretrained model's outputs unchanged.
"""
from __future__ import annotations

import torch
from torch import nn

from bert import BertSelfAttention, Layout


class ProjectedAttention(nn.Module):
    """The side branch of one layer for one task; the projections are the task's shared ones."""

    def __init__(self, encoder: nn.Linear, decoder: nn.Linear, attention: BertSelfAttention):
        super().__init__()
        self.encoder, self.decoder, self.attention = [encoder], [decoder], attention  # not re-registered

    def forward(self, x: torch.Tensor, layout: Layout) -> torch.Tensor:
        return self.decoder[0](self.attention(self.encoder[0](x), layout))


class PAL(nn.Module):
    def __init__(self, tasks, hidden: int, layers: int, dim: int = 64, heads: int = 4,
                 dropout: float = 0.1):
        super().__init__()
        self.tasks = list(tasks)
        self.encoders = nn.ModuleDict({t: nn.Linear(hidden, dim) for t in self.tasks})
        self.decoders = nn.ModuleDict({t: nn.Linear(dim, hidden) for t in self.tasks})
        self.attentions = nn.ModuleDict({t: nn.ModuleList(BertSelfAttention(dim, heads, dropout)
                                                          for _ in range(layers)) for t in self.tasks})
        for t in self.tasks:
            nn.init.normal_(self.encoders[t].weight, std=0.02)
            nn.init.zeros_(self.encoders[t].bias)
            nn.init.zeros_(self.decoders[t].weight)
            nn.init.zeros_(self.decoders[t].bias)
            for att in self.attentions[t]:
                nn.init.normal_(att.qkv.weight, std=0.02)
                nn.init.zeros_(att.qkv.bias)

    def sides(self, task: str) -> list[ProjectedAttention]:
        """One side module per encoder layer, for `BertModel.encode(..., sides=...)`."""
        return [ProjectedAttention(self.encoders[task], self.decoders[task], att)
                for att in self.attentions[task]]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
