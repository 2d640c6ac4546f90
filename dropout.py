"""Dropout with masks that are cheap to draw on CPU.

torch's CPU dropout draws each mask element with its own Bernoulli sample: about 6 ns an element
on a 2-core x86 machine, 18% of a training step on benchmarks/bench_speed.py's batches. One 64-bit
draw of the same generator makes four 16-bit words, and an element is kept when its word (read
as a signed integer) is at least round(p * 2^16) - 2^15. So the drop rate is p rounded to a
multiple of 2^-16 (0.1 becomes 0.100006), and kept elements are scaled by 1 / (1 - that rate),
which keeps the expectation exact. A mask costs about 40% of torch's, forward and backward.

On CUDA, torch's fused dropout is already fast and runs unchanged. `--no-fast_dropout` runs
torch's dropout on CPU as well, reproducing, bit for bit, runs made before this file existed.

`sampled` turns dropout on in an evaluation (`--mc_dropout`): a prediction as the mean of passes.
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

WORDS = 2 ** 16  # values of one 16-bit word


def drop_rate(p: float) -> float:
    """The drop rate the mask really has: p rounded to a multiple of 2^-16."""
    return round(p * WORDS) / WORDS


def keep_mask(shape, p: float) -> torch.Tensor:
    """Bool mask of `shape` on the CPU, each element True with probability 1 - drop_rate(p),
    independently."""
    n = math.prod(shape)
    # Every bit uniform (random_() alone leaves an int64's sign bit 0), so every word is too.
    bits = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-2 ** 63, 2 ** 63 - 1)
    return bits.view(torch.int16)[:n].ge(round(p * WORDS) - WORDS // 2).view(shape)


def cheap(x: torch.Tensor, p: float, fast: bool = True) -> bool:
    """Whether dropout of `x` at rate p, in training, takes this file's masks (else torch's)."""
    return fast and x.device.type == "cpu" and 0 < drop_rate(p) < 1


def dropout(x: torch.Tensor, p: float, training: bool = True, fast: bool = True) -> torch.Tensor:
    """F.dropout(x, p, training), with the cheap mask on CPU when `fast`."""
    if not training or p == 0:
        return x
    if not cheap(x, p, fast):
        return F.dropout(x, p, training)
    # A float mask already scaled: the forward and the backward are then one multiply each.
    return x * keep_mask(x.shape, p).to(x.dtype).mul_(1 / (1 - drop_rate(p)))


class Dropout(nn.Module):
    """nn.Dropout drawing its masks with `dropout` (state_dict-free, like nn.Dropout)."""

    def __init__(self, p: float):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"dropout probability {p} is not between 0 and 1")
        self.p, self.fast_dropout = p, True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training, self.fast_dropout)

    def extra_repr(self) -> str:
        return f"p={self.p}, fast_dropout={self.fast_dropout}"


def use_fast(model: nn.Module, on: bool) -> None:
    """Set every dropout of `model` (Dropout modules, and attention that drops with them) to the
    cheap CPU masks or to torch's own."""
    for m in model.modules():
        if hasattr(m, "fast_dropout"):
            m.fast_dropout = on


@contextmanager
def sampled(model: nn.Module, seed: int = 0):
    """Dropout on in an evaluation (Monte Carlo dropout): every module that drops (Dropout, and
    attention) as in training, the rest of `model` as it is (a model in training mode would also,
    e.g., draw PARA's pair order at random). The masks come from torch's generator seeded with
    `seed` in a fork of it, so the same evaluation draws the same masks, and a training run that
    evaluates this way draws what it would have drawn without it."""
    drops = [m for m in model.modules() if hasattr(m, "fast_dropout")]
    was = [m.training for m in drops]
    with torch.random.fork_rng(devices=[torch.cuda.current_device()] if torch.cuda.is_available() else []):
        torch.manual_seed(seed)
        for m in drops:
            m.train()
        try:
            yield
        finally:
            for m, w in zip(drops, was):
                m.train(w)
