"""--branches K: the run forks into K branches late in its schedule and keeps their mean weights.

The run trains as usual for the first --branch_at of its steps (the trunk). There it copies its
whole training state in memory and forks: each branch finishes the schedule from that state.
Branch 0 takes the run's own batches and dropout draws, so it is, step for step, the run without
--branches; branch b > 0 takes a batch order and dropout draws of its own. The run's final weights
are the plain mean of the branches' (a "model soup", Wortsman et al. 2022): one model, evaluated
and predicted like any other.

Why it might help: the predictions of four default models, averaged, score +0.006 dev overall
above one model (results/quality-mlm-4seeds.md), but they are four runs and four models at
inference. Models trained from different seeds cannot be averaged in weights (their heads start
apart); branches that share most of their path stay in one basin of the loss, where the mean of
the weights behaves like the mean of the predictions (linear mode connectivity, Frankle et al.
2020). The cost: F + K·(1 − F) runs' worth of training steps (1.4 for K = 2, F = 0.6).

Each branch's end is evaluated as well (its record's "branch"), so that every run shows its mean
against its own branches; only the mean can become the run's best. The state for --resume is
saved up to the fork and not after it: a run stopped in a branch resumes from its last save before
the fork and trains the branches again.
"""
from __future__ import annotations

import copy
import random

import numpy as np
import torch

from ema import WeightAverage

SEED_STRIDE = 104_729  # branch b draws from seed + b·stride: far from the small seeds runs use


class Branches:
    def __init__(self, count: int, fork_step: int, seed: int):
        if count < 2:
            raise ValueError(f"--branches {count}: a fork needs at least 2 branches")
        self.count, self.fork_step, self.seed = count, fork_step, seed
        self.branch = None  # the branch in training: None before the fork
        self.trunk = None   # the training state at the fork
        self.mean = None    # the finished branches' mean weights: --swa's running mean (ema.py)

    @property
    def forked(self) -> bool:
        return self.branch is not None

    def steps(self, total: int) -> int:
        """Optimizer steps the whole run takes: the trunk, then every branch to `total`."""
        return self.fork_step + self.count * (total - self.fork_step)

    def fork(self, model, optimizer, streams: dict, prog: dict, scaler):
        """Keep the training state of the trunk's end; branch 0 goes on from it as it is."""
        self.trunk = {"model": {k: v.detach().clone() for k, v in model.state_dict().items()},
                      "optimizer": copy.deepcopy(optimizer.state_dict()),
                      "streams": {t: s.state_dict() for t, s in streams.items()},
                      "step": prog["step"], "scaler_skipped": prog["scaler_skipped"],
                      "scaler": copy.deepcopy(scaler.state_dict())}
        self.mean = WeightAverage(model)  # a plain mean of the weights it is given, from the first
        self.branch = 0

    @torch.no_grad()
    def end_branch(self, model, optimizer, streams: dict, prog: dict, scaler) -> bool:
        """At a branch's end: add its weights to the mean. Then either start the next branch from
        the trunk's state (True) or, after the last, put the mean in the model (False)."""
        self.mean.update(self.branch + 1)  # (frozen weights are the trunk's in every branch)
        if self.mean.count == self.count:
            self.mean.copy_to_model()
            self.trunk = self.mean = None  # free the copies: the run is over
            return False
        self.branch += 1
        model.load_state_dict(self.trunk["model"])
        optimizer.load_state_dict(copy.deepcopy(self.trunk["optimizer"]))  # the copy is kept for the next
        scaler.load_state_dict(copy.deepcopy(self.trunk["scaler"]))
        prog.update(step=self.trunk["step"], scaler_skipped=self.trunk["scaler_skipped"])
        seed = self.seed + SEED_STRIDE * self.branch
        for t, s in streams.items():  # the same place in each pass, a pass order of the branch's own
            s.seed = seed
            s.load_state_dict(self.trunk["streams"][t])
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)  # dropout draws
        return True
