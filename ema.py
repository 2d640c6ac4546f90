"""--ema and --swa: an average of the weights along the run (Polyak averaging).

After every optimizer step, average <- average + w * (weights - average), for the parameters
that train. --ema: w = 1 - decay, an exponential moving average (0.998 weighs roughly the last
500 steps). --swa F: w = 1/n on the n-th step of the last fraction F of the run, so the average
is the plain mean of the weights after each of those steps (stochastic weight averaging, Izmailov
et al. 2018), and the raw weights before it starts. Evaluation, the best checkpoint and the
predictions use the average: late in a run the weights wander around a minimum with the noise
of small batches, and their average usually sits nearer its centre (for compact fine-tuned
models, Lu et al. 2022). Training itself continues from the raw weights.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

FILE = "ema.safetensors"  # in RUN_DIR/state/, for --resume


COUNT = "swa_count"  # the state's entry for the number of steps averaged (not a parameter name)


class WeightAverage:
    """decay: --ema's. Without one, --swa's mean over the steps after step `start`."""

    def __init__(self, model: nn.Module, decay: float | None = None, start: int = 0):
        if decay is not None and not 0.0 < decay < 1.0:
            raise ValueError(f"--ema {decay}: the decay must lie strictly between 0 and 1")
        self.decay, self.start, self.count = decay, start, 0
        self.params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        self.average = {n: p.detach().clone() for n, p in self.params.items()}

    @torch.no_grad()
    def update(self, step: int):
        """After optimizer step `step` (1 for the first)."""
        if self.decay is None and step <= self.start:
            return  # the mean has not begun: evaluation uses the raw weights
        self.count += 1
        w = 1.0 - self.decay if self.decay is not None else 1.0 / self.count  # 1: the first copies
        torch._foreach_lerp_(list(self.average.values()), [p.detach() for p in self.params.values()], w)

    @contextmanager
    @torch.no_grad()
    def swapped_in(self):
        """The averaged weights in the model while the block runs; the raw ones after it."""
        if self.decay is None and self.count == 0:  # SWA before its start: the raw weights
            yield
            return
        params = list(self.params.values())
        raw = [p.detach().clone() for p in params]
        self.copy_to_model()
        try:
            yield
        finally:
            torch._foreach_copy_(params, raw)

    @torch.no_grad()
    def copy_to_model(self):
        """Put the average in the model's trainable parameters, for good."""
        torch._foreach_copy_(list(self.params.values()), list(self.average.values()))

    def state_dict(self) -> dict:
        return {**self.average, COUNT: torch.tensor(self.count)}

    @torch.no_grad()
    def load_state_dict(self, state: dict):
        state = dict(state)
        count = state.pop(COUNT, None)  # (an --ema state saved before SWA has none; EMA needs none)
        if set(state) != set(self.average):
            raise ValueError("the saved weight average does not match the model's trainable parameters")
        for n, t in state.items():
            self.average[n].copy_(t)
        self.count = 0 if count is None else int(count)
