"""Task heads on the shared encoder's sentence embeddings."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dropout import Dropout


def mlp(d_in: int, d_hidden: int, d_out: int, dropout: float) -> nn.Sequential:
    """Linear-ReLU-Linear, the seed's head shape."""
    return nn.Sequential(Dropout(dropout), nn.Linear(d_in, d_hidden), nn.ReLU(),
                         Dropout(dropout), nn.Linear(d_hidden, d_out))


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooler_output: torch.Tensor, how: str):
    """Sentence embedding: SBERT mean over real tokens, the [CLS] vector, or the BERT pooler."""
    if how == "mean":
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
    if how == "cls":
        return hidden[:, 0]
    if how == "pooler":
        return pooler_output
    raise ValueError(f"unknown pooling {how!r}")


def pair_features(u: torch.Tensor, v: torch.Tensor, kind: str) -> torch.Tensor:
    """[u; v] (the seed) or the SBERT classifier input [u; v; |u - v|; u * v]."""
    if kind == "concat":
        return torch.cat([u, v], -1)
    return torch.cat([u, v, (u - v).abs(), u * v], -1)


def cosine_similarity_score(u: torch.Tensor, v: torch.Tensor, scale=2.5, shift=2.5) -> torch.Tensor:
    """STS score from cosine similarity: scale * cos + shift; the default 2.5 * (1 + cos) spans [0, 5]."""
    return scale * F.cosine_similarity(u, v, dim=-1) + shift
