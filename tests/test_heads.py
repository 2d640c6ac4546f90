"""heads: SBERT mean pooling over real tokens, [CLS] / pooler choices, the pair features
[u; v] and [u; v; |u−v|; u*v], and the cosine STS score 2.5·(1 + cos)."""
from __future__ import annotations

import math

import pytest
import torch

from heads import cosine_similarity_score, mlp, pair_features, pool

pytestmark = pytest.mark.usefixtures("one_thread")


def test_mean_pooling_ignores_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, -100.0]],
                           [[2.0, 0.0], [-7.0, 7.0], [5.0, 1.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    got = pool(hidden, mask, torch.zeros(2, 2), "mean")
    # hand: (1+3)/2, (2+4)/2 ; (2-7+5)/3, (0+7+1)/3
    assert torch.allclose(got, torch.tensor([[2.0, 3.0], [0.0, 8.0 / 3.0]]))
    # changing the values at padded positions changes nothing
    hidden2 = hidden.clone()
    hidden2[0, 2] = torch.tensor([-1e4, 1e4])
    assert torch.equal(pool(hidden2, mask, None, "mean"), got)


def test_mean_pooling_single_token_and_dtype():
    hidden = torch.arange(12.0).view(2, 3, 2)
    mask = torch.tensor([[1, 0, 0], [0, 1, 1]])
    got = pool(hidden, mask, None, "mean")
    assert torch.allclose(got, torch.tensor([[0.0, 1.0], [(8.0 + 10.0) / 2, (9.0 + 11.0) / 2]]))
    assert got.dtype == hidden.dtype


def test_cls_and_pooler_choices():
    hidden = torch.randn(3, 4, 5)
    mask = torch.ones(3, 4, dtype=torch.long)
    pooled = torch.randn(3, 5)
    assert torch.equal(pool(hidden, mask, pooled, "cls"), hidden[:, 0])
    assert torch.equal(pool(hidden, mask, pooled, "pooler"), pooled)
    with pytest.raises(ValueError, match="unknown pooling"):
        pool(hidden, mask, pooled, "max")


def test_pair_features_shapes_and_content():
    u = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    v = torch.tensor([[4.0, 1.0], [0.5, -1.0]])
    cat = pair_features(u, v, "concat")
    assert cat.shape == (2, 4)
    assert torch.equal(cat, torch.tensor([[1.0, -2.0, 4.0, 1.0], [0.5, 3.0, 0.5, -1.0]]))
    full = pair_features(u, v, "full")
    assert full.shape == (2, 8)
    assert torch.equal(full, torch.tensor([
        [1.0, -2.0, 4.0, 1.0, 3.0, 3.0, 4.0, -2.0],
        [0.5, 3.0, 0.5, -1.0, 0.0, 4.0, 0.25, -3.0]]))
    # |u − v| and u*v are symmetric in u, v
    full_swapped = pair_features(v, u, "full")
    assert torch.equal(full[:, 4:], full_swapped[:, 4:])


def test_cosine_score_anchor_points():
    u = torch.tensor([[1.0, 2.0, 3.0], [1.0, 0.0, 0.0], [0.0, 3.0, 0.0], [2.0, -1.0, 0.0]])
    v = torch.tensor([[2.0, 4.0, 6.0], [-5.0, 0.0, 0.0], [0.0, 0.0, 0.1], [1.0, 2.0, 7.0]])
    got = cosine_similarity_score(u, v)
    assert torch.allclose(got, torch.tensor([5.0, 0.0, 2.5, 2.5]), atol=1e-6)
    # a general angle: 2.5·(1 + cos 60°) = 3.75
    a = torch.tensor([[1.0, 0.0]])
    b = torch.tensor([[math.cos(math.pi / 3), math.sin(math.pi / 3)]])
    assert cosine_similarity_score(a, b).item() == pytest.approx(3.75, abs=1e-6)
    rand = cosine_similarity_score(torch.randn(50, 8), torch.randn(50, 8))
    assert (rand >= 0).all() and (rand <= 5).all()


def test_mlp_shape():
    head = mlp(6, 10, 3, dropout=0.5).eval()
    assert head(torch.randn(4, 6)).shape == (4, 3)
    linears = [m for m in head if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(6, 10), (10, 3)]
