"""Loss terms added to the task losses by flags: MNRL (--mnrl), the ordinal log loss of SST-5
(--sst_ordinal), R-Drop's consistency term (--rdrop) and CoSENT for STS (--sts_cosent).

Multiple-negatives ranking loss (Henderson et al., 2017; the SBERT MNRL) over sentence embeddings.

Similarity: cosine, multiplied by a scale of 20 (the SBERT default), so the softmax over
candidates is sharp enough to learn from.

- PARA: every duplicate pair (u_i, v_i) of the batch is an (anchor, positive); the candidates
  for anchor u_i are all second sentences v_j of the batch, so the other pairs' sentences are
  in-batch negatives. Loss = mean over duplicate pairs of cross-entropy(scale·cos(u_i, v_·), i).
- SST: sentences sharing a label are positives, the rest negatives. For anchor i, every other
  sentence k of the batch is a candidate; the loss averages −log softmax_k(scale·cos(e_i, e_k))[j]
  over the positives j of i, then over anchors that have a positive (supervised contrastive form).
A batch without any positive contributes zero.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

SCALE = 20.0


def cos_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T


def mnrl_pairs(u: torch.Tensor, v: torch.Tensor, positive: torch.Tensor, scale: float = SCALE):
    """Anchors u[positive] against candidates v (all of the batch); targets are the own partners."""
    idx = positive.nonzero().squeeze(1)
    if idx.numel() == 0:
        return u.sum() * 0.0
    scores = scale * cos_matrix(u[idx], v)
    return F.cross_entropy(scores, idx)


def mnrl_labels(e: torch.Tensor, labels: torch.Tensor, scale: float = SCALE):
    """Every sentence is an anchor; same-label sentences are its positives, others negatives."""
    n = len(labels)
    scores = scale * cos_matrix(e, e)
    eye = torch.eye(n, dtype=torch.bool, device=e.device)
    log_p = scores.masked_fill(eye, float("-inf")).log_softmax(-1)  # never a candidate to itself
    pos = (labels[:, None] == labels[None, :]) & ~eye
    has_pos = pos.any(1)
    if not has_pos.any():
        return e.sum() * 0.0
    per_anchor = -(log_p.masked_fill(~pos, 0.0).sum(1)) / pos.sum(1).clamp(min=1)
    return per_anchor[has_pos].mean()


def mnrl_loss(task: str, out: dict, labels: torch.Tensor) -> torch.Tensor | None:
    """The MNRL term for `task` given the model outputs (embeddings), or None where undefined."""
    if task == "sst":
        return mnrl_labels(out["u"], labels)
    if task == "para" and "v" in out:
        return mnrl_pairs(out["u"], out["v"], labels.bool())
    return None


def ordinal_log_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """OLL-1 (Castagnos et al., 2022): -sum_k |k - y| log(1 - p_k), averaged over the batch.
    Cross-entropy treats "very negative" for "negative" as wrong as for "very positive"; this
    term charges the probability put on each class by its distance from the label."""
    p = logits.float().softmax(-1)
    distance = (torch.arange(p.shape[-1], device=p.device) - y[:, None]).abs().to(p.dtype)
    return -(distance * torch.log1p(-p.clamp(max=1 - 1e-6))).sum(-1).mean()


def symmetric_kl(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """R-Drop's term (Liang et al., 2021): (KL(p_a || p_b) + KL(p_b || p_a)) / 2 of the class
    distributions of two forward passes that differ only in their dropout masks, batch mean."""
    la, lb = logits_a.float().log_softmax(-1), logits_b.float().log_softmax(-1)
    return 0.5 * ((la.exp() * (la - lb)).sum(-1) + (lb.exp() * (lb - la)).sum(-1)).mean()


def rdrop_term(task: str, out_a: torch.Tensor, out_b: torch.Tensor) -> torch.Tensor:
    """R-Drop's consistency of one task's outputs in two passes: the symmetric KL of the class
    distributions (SST-5's five; PARA's two, duplicate or not, from its one logit), and for STS,
    a regression, the mean squared difference of the two scores."""
    if task == "sts":
        return (out_a.float() - out_b.float()).pow(2).mean()
    if task == "para":
        out_a, out_b = (torch.stack([torch.zeros_like(z), z], -1) for z in (out_a, out_b))
    return symmetric_kl(out_a, out_b)


def cosent_loss(cos: torch.Tensor, labels: torch.Tensor, scale: float = SCALE) -> torch.Tensor:
    """CoSENT (Su, 2022), a ranking loss on the batch's cosines: log(1 + Σ exp(scale·(cos_j − cos_i)))
    over the pairs of examples with label_i > label_j. The STS metric (Pearson r) reads only how
    the scores order and spread, which MSE on each score pursues only indirectly. A batch whose
    labels are all equal contributes 0."""
    gap = scale * (cos.float()[None, :] - cos.float()[:, None])  # [i, j]: scale·(cos_j − cos_i)
    ranked = gap[labels[:, None] > labels[None, :]]
    return torch.logsumexp(torch.cat([ranked.new_zeros(1), ranked]), 0)
