"""The training loop: schedule, optimizer groups, evaluation and checkpoint cadence, stopping.

multitask_classifier.py builds the model and data and calls `train`; this file is the algorithm.
"""
from __future__ import annotations

import signal

from torch import nn
from tqdm import tqdm

from optimizer import AdamW


def encoder_depth(name: str, num_layers: int) -> int:
    """How far above the input a parameter sits: embeddings 0, layer i at i + 1, the rest
    (pooler, PAL, heads) at num_layers + 1."""
    if name.startswith("bert.embeddings."):
        return 0
    if name.startswith("bert.layers."):
        return int(name.split(".")[2]) + 1
    return num_layers + 1


def build_optimizer(model: nn.Module, args) -> AdamW:
    """No weight decay on biases and LayerNorm; heads may learn faster than the encoder.
    With --layer_decay d < 1 (layer-wise learning-rate decay, Howard & Ruder 2018) a parameter
    k levels below the top learns at lr·d^k: the lower layers, which hold the most general
    features, move least."""
    groups = {}
    top = model.bert.config.num_hidden_layers + 1
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = p.ndim >= 2
        head = not name.startswith("bert.")
        depth = encoder_depth(name, top - 1)
        lr = args.head_lr if (head and args.head_lr) else args.lr * args.layer_decay ** (top - depth)
        groups.setdefault((decay, head, depth), {
            "params": [], "weight_decay": args.weight_decay if decay else 0.0, "lr": lr})
        groups[decay, head, depth]["params"].append(p)
    return AdamW(list(groups.values()), lr=args.lr)


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then linear decay to zero."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


class StopRequest:
    """While active, SIGINT/SIGTERM ask the loop to finish the current step, save and exit."""

    def __init__(self):
        self.signal, self._previous = None, {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        if self.signal is not None:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name
        tqdm.write(f"{self.signal}: finishing this step, then saving and exiting")


