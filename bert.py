"""A BERT encoder written out in full: embeddings, self-attention layers, pooler.

Read top to bottom: `BertEmbeddings` -> `BertLayer` (x num_hidden_layers) -> `BertPooler`.

One speed idea shapes the code: padding is wasted work. Hidden states travel *unpadded*,
as a [N, H] matrix of the N real tokens of the batch, so every projection, feed-forward and
LayerNorm touches real tokens only. Only attention needs the [B, T] grid (each token attends
to the tokens of its own sentence); there the tokens are scattered into a zero grid, run
through `scaled_dot_product_attention` with the padding mask, and gathered back. Attention's
cost grows with the square of the grid's length, so a batch of very unequal lengths is split
into groups of rows of similar length, each on a grid of its own (`attention_groups`).
Numerically this is the same function as the padded model (tested against `transformers`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from base_bert import BertPreTrainedModel
from config import BertConfig
from dropout import Dropout, cheap, dropout as apply_dropout
from onednn import Linear  # nn.Linear whose products run in oneDNN on the CPU (onednn.py: why)

ACTIVATIONS = {
    "gelu": F.gelu,  # the exact erf form, as in the original BERT
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
}


# Cost model of attention on a grid of n rows padded to length T, in units of one query-key
# pair: n*T*(T + ROW_COST) + GROUP_COST. ROW_COST stands for the work linear in the grid's size
# (scatter, gather, zero fill), GROUP_COST for the fixed cost of one more set of kernel calls.
ROW_COST, GROUP_COST = 32, 20_000


def attention_groups(lengths: list[int]) -> list[list[int]] | None:
    """Rows of a batch cut into groups of similar length, each attended on its own grid, at the
    least cost under the model above; None when one grid for the whole batch is cheapest.

    Rows are sorted by length, longest first; a group is a run of that order, padded to its first
    row's length. best[j] is the cheapest cost of the first j rows, found over the start of their
    last group (the classic partition of a sorted list: O(B^2), about 0.1 ms for B = 32)."""
    # Cut grids cost at least each row's own n*T*(T + ROW_COST) plus two GROUP_COSTs. When one
    # grid wastes no more than one GROUP_COST on padding, it is cheapest: skip the search (so a
    # length-bucketed batch, nearly all of the main job's, costs a few list operations).
    T = max(lengths, default=0)
    if len(lengths) * T * (T + ROW_COST) - sum(n * (n + ROW_COST) for n in lengths) <= GROUP_COST:
        return None
    order = sorted(range(len(lengths)), key=lambda b: -lengths[b])
    L = np.array([lengths[b] for b in order], dtype=np.float64)
    head = L * (L + ROW_COST)  # cost per row of a group that starts at each row
    best, start = np.zeros(len(L) + 1), np.zeros(len(L) + 1, dtype=np.int64)
    for j in range(1, len(L) + 1):
        costs = best[:j] + (j - np.arange(j)) * head[:j] + GROUP_COST
        start[j] = costs.argmin()
        best[j] = costs[start[j]]
    cuts, j = [], len(L)
    while j:
        cuts.append((int(start[j]), j))
        j = int(start[j])
    return None if len(cuts) == 1 else [order[i:j] for i, j in reversed(cuts)]


@dataclass
class Layout:
    """Where the N real tokens sit in the [B, T] grid of the padded batch, and, when attention
    runs on groups of rows (`attention_groups`), in the groups' grids."""
    batch: int
    length: int
    index: torch.Tensor | None  # [N] flat positions b*T + t of the real tokens; None = kept padded
    mask: torch.Tensor | None   # [B, T] bool, True on real tokens; None when nothing is padded
    groups: list[tuple[int, int, torch.Tensor | None]] | None = None  # (rows, length, mask) each
    slots: torch.Tensor | None = None  # [N] positions in the groups' grids laid end to end

    @classmethod
    def of(cls, attention_mask: torch.Tensor, unpad: bool = True, group: bool = True) -> "Layout":
        """`unpad` False keeps every layer on the padded grid; `group` False attends on one grid."""
        mask = attention_mask.bool()
        B, T = mask.shape
        if bool(mask.all()):
            return cls(B, T, None, None)
        if not unpad:
            return cls(B, T, None, mask)
        index = mask.flatten().nonzero().squeeze(1)
        lengths = mask.sum(1).tolist()
        rows = attention_groups(lengths) if group else None
        if rows is None:
            return cls(B, T, index, mask)
        # Row b's first slot in the groups' grids laid end to end; a token's slot adds its position.
        groups, base, offset = [], [0] * B, 0
        for members in rows:
            n, t = len(members), lengths[members[0]]
            m = mask[members, :t]
            groups.append((n, t, None if bool(m.all()) else m))
            for k, b in enumerate(members):
                base[b] = offset + k * t
            offset += n * t
        slots = torch.tensor(base, device=mask.device)[index // T] + index % T
        return cls(B, T, index, mask, groups, slots)

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, ...] -> [N, ...] (flattened when nothing is padded)."""
        x = x.reshape(self.batch * self.length, *x.shape[2:])
        return x if self.index is None else x.index_select(0, self.index)

    def scatter(self, x: torch.Tensor) -> torch.Tensor:
        """[N, ...] -> [B, T, ...], zeros at padded positions."""
        if self.index is not None:
            grid = x.new_zeros(self.batch * self.length, *x.shape[1:])
            x = grid.index_copy_(0, self.index, x)
        return x.view(self.batch, self.length, *x.shape[1:])

    def grouped(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """[N, F] -> one ([rows, length, F] grid, its mask) per attention group, zeros at padding."""
        sizes = [n * t for n, t, _ in self.groups]
        grid = x.new_zeros(sum(sizes), x.shape[1]).index_copy_(0, self.slots, x)
        return [(g.view(n, t, -1), m) for g, (n, t, m) in zip(grid.split(sizes), self.groups)]


class BertEmbeddings(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size,
                                            padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids, layout: Layout) -> torch.Tensor:
        B, T = input_ids.shape
        positions = torch.arange(T, device=input_ids.device).expand(B, T)
        x = (self.word_embeddings(layout.gather(input_ids))
             + self.position_embeddings(layout.gather(positions))
             + self.token_type_embeddings(layout.gather(token_type_ids)))
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    """Multi-head self-attention with one fused projection for queries, keys and values."""

    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        self.num_heads, self.head_dim = heads, hidden // heads
        self.qkv = Linear(hidden, 3 * hidden)
        self.dropout_p = dropout
        self.fast_dropout = True  # dropout.py's masks on CPU (dropout.use_fast switches it)

    def forward(self, x: torch.Tensor, layout: Layout) -> torch.Tensor:
        qkv = self.qkv(x)                                       # [N, 3H]
        if layout.groups is None:
            return layout.gather(self.attend(layout.scatter(qkv), layout.mask))
        out = torch.cat([self.attend(grid, mask).flatten(0, 1) for grid, mask in layout.grouped(qkv)])
        return out.index_select(0, layout.slots)               # [N, H]

    def attend(self, qkv: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Attention on one grid: qkv [B, T, 3H], mask [B, T] (True on real tokens) -> [B, T, H]."""
        B, T = qkv.shape[:2]
        nh, d = self.num_heads, self.head_dim
        q, k, v = qkv.view(B, T, 3, nh, d).permute(2, 0, 3, 1, 4).unbind(0)  # each [B, nh, T, d]
        # Keys at padded positions are masked out; padded query rows are discarded by the caller.
        mask = None if mask is None else mask[:, None, None, :]
        p = self.dropout_p if self.training else 0.0
        if p and cheap(qkv, p, self.fast_dropout):
            # With dropout, CPU SDPA leaves its fused kernel for this same computation, written
            # out so that the attention weights take dropout.py's cheaper masks.
            scores = (q * d ** -0.5) @ k.transpose(-2, -1)     # [B, nh, T, T]
            if mask is not None:
                scores = scores + torch.zeros(mask.shape, dtype=scores.dtype).masked_fill_(~mask, -torch.inf)
            out = apply_dropout(scores.softmax(-1), p) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return out.transpose(1, 2).reshape(B, T, nh * d)


class BertLayer(nn.Module):
    """Post-LayerNorm transformer layer: attention, then feed-forward, each with a residual."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = BertSelfAttention(config.hidden_size, config.num_attention_heads,
                                           config.attention_probs_dropout_prob)
        self.attention_out = Linear(config.hidden_size, config.hidden_size)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.intermediate = Linear(config.hidden_size, config.intermediate_size)
        self.output = Linear(config.intermediate_size, config.hidden_size)
        self.output_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.act = ACTIVATIONS[config.hidden_act]

    def forward(self, x: torch.Tensor, layout: Layout, side=None) -> torch.Tensor:
        """`side`, if given, is a module run in parallel to self-attention (e.g. a PAL)."""
        h = self.attention_out(self.attention(x, layout))
        if side is not None:
            h = h + side(x, layout)
        x = self.attention_norm(x + self.dropout(h))
        h = self.output(self.act(self.intermediate(x)))
        return self.output_norm(x + self.dropout(h))


class BertPooler(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = Linear(config.hidden_size, config.hidden_size)

    def forward(self, first_token: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(first_token))


class BertModel(BertPreTrainedModel):
    def __init__(self, config: BertConfig, unpad: bool = True):
        super().__init__(config)
        self.embeddings = BertEmbeddings(config)
        self.layers = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))
        self.pooler = BertPooler(config)
        self.unpad = unpad  # False runs every layer on the padded grid (for benchmarks)
        self.attention_groups = True  # False attends on the batch's one grid, as before groups
        self.init_weights()

    def embed(self, input_ids, attention_mask, token_type_ids=None):
        """Embedding output [N, H] of the real tokens, and their layout.

        Split from `encode` so adversarial training (FGSM, SMART) can perturb this output."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        layout = Layout.of(attention_mask, self.unpad, self.attention_groups)
        return self.embeddings(input_ids, token_type_ids, layout), layout

    def encode(self, x: torch.Tensor, layout: Layout, sides=None) -> dict:
        """Run the layers on embedding output `x`. `sides` is one side module per layer, or None."""
        for i, layer in enumerate(self.layers):
            x = layer(x, layout, None if sides is None else sides[i])
        hidden = layout.scatter(x)  # [B, T, H], zeros at padding
        if layout.index is None and layout.mask is not None:
            # unpad=False computed the padded positions too: zero them, as the unpadded path does.
            hidden = hidden.masked_fill(~layout.mask[..., None], 0.0)
        return {"last_hidden_state": hidden, "pooler_output": self.pooler(hidden[:, 0])}

    def forward(self, input_ids, attention_mask, token_type_ids=None, sides=None) -> dict:
        x, layout = self.embed(input_ids, attention_mask, token_type_ids)
        return self.encode(x, layout, sides)
