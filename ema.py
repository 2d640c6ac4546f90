"""--ema: an exponential moving average of the weights along the run (Polyak averaging).

After every optimizer step, average <- average + (1 - decay) * (weights - average), for the
parameters that train. Evaluation, the best checkpoint and the predictions use the average:
late in a run the weights wander around a minimum with the noise of small batches, and their
average usually sits nearer its centre (for compact fine-tuned models, Lu et al. 2022). Training
itself continues from the raw weights. A decay of 0.998 averages over roughly the last 500 steps.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

FILE = "ema.safetensors"  # in RUN_DIR/state/, for --resume


class WeightAverage:
    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"--ema {decay}: the decay must lie strictly between 0 and 1")
        self.decay = decay
        self.params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        self.average = {n: p.detach().clone() for n, p in self.params.items()}

    @torch.no_grad()
    def update(self):
        torch._foreach_lerp_(list(self.average.values()),
                             [p.detach() for p in self.params.values()], 1.0 - self.decay)

    @contextmanager
    @torch.no_grad()
    def swapped_in(self):
        """The averaged weights in the model while the block runs; the raw ones after it."""
        params = list(self.params.values())
        raw = [p.detach().clone() for p in params]
        torch._foreach_copy_(params, list(self.average.values()))
        try:
            yield
        finally:
            torch._foreach_copy_(params, raw)

    def state_dict(self) -> dict:
        return dict(self.average)

    @torch.no_grad()
    def load_state_dict(self, state: dict):
        if set(state) != set(self.average):
            raise ValueError("the saved weight average does not match the model's trainable parameters")
        for n, t in state.items():
            self.average[n].copy_(t)
