"""Which task each training step works on.

- round_robin: the tasks in turn.
- proportional / sqrt / any exponent: each step draws task i with p_i ∝ N_i^α, where N_i is the
  task's training set size and α = --sample_wt (proportional forces α = 1; sqrt means α = 0.5).
- annealed (Stickland & Murray, 2019): α = 1 − 0.8·(e − 1)/(E − 1) at epoch e of E, so sampling
  moves from proportional towards uniform as training goes on.

The draw for epoch e depends only on (seed, e): a resumed run replays the same task sequence,
and every data-parallel rank draws the same sequence.
"""
from __future__ import annotations

import numpy as np

KINDS = ("round_robin", "proportional", "sqrt", "annealed")


def annealed_alpha(epoch: int, epochs: int) -> float:
    """α at 0-based `epoch` of `epochs`: 1.0 at the first epoch, 0.2 at the last."""
    if epochs <= 1:
        return 1.0
    return 1.0 - 0.8 * epoch / (epochs - 1)


def task_probs(sizes: dict[str, int], alpha: float) -> dict[str, float]:
    weights = {t: float(n) ** alpha for t, n in sizes.items()}
    total = sum(weights.values())
    return {t: w / total for t, w in weights.items()}


class TaskSampler:
    def __init__(self, sizes: dict[str, int], kind: str = "sqrt", alpha: float = 0.5,
                 epochs: int = 1, seed: int = 0):
        if kind not in KINDS:
            raise ValueError(f"unknown sampling {kind!r}; choose from {', '.join(KINDS)}")
        self.tasks, self.sizes = list(sizes), sizes
        self.kind, self.alpha, self.epochs, self.seed = kind, alpha, epochs, seed

    def alpha_at(self, epoch: int) -> float:
        return {"proportional": 1.0, "sqrt": self.alpha,
                "annealed": annealed_alpha(epoch, self.epochs)}[self.kind]

    def probs(self, epoch: int) -> dict[str, float]:
        if self.kind == "round_robin":
            return {t: 1.0 / len(self.tasks) for t in self.tasks}
        return task_probs(self.sizes, self.alpha_at(epoch))

    def epoch_tasks(self, epoch: int, steps: int) -> list[str]:
        """The task of every step of `epoch`."""
        if self.kind == "round_robin":
            return [self.tasks[i % len(self.tasks)] for i in range(steps)]
        rng = np.random.default_rng([self.seed, 7919, epoch])
        p = self.probs(epoch)
        draws = rng.choice(len(self.tasks), size=steps, p=[p[t] for t in self.tasks])
        return [self.tasks[i] for i in draws]
