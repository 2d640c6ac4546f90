"""When a run stops before its last step: a signal from the user, or early stopping on dev.

- StopRequest: Ctrl-C / SIGTERM finish the current step, save the state and exit (resumable).
- Early stopping (--patience K, --min_delta d): stop after K evaluations in a row without a dev
  overall better than the best so far by more than d. The best weights are kept either way
  (the run folder's best/ always holds the best evaluation), so stopping loses nothing.
"""
from __future__ import annotations

import signal

from tqdm import tqdm

from batching import TASKS
from evaluation import METRIC_NAMES, overall


def selection_score(record: dict, tasks=TASKS) -> float:
    """What ranks evaluations (the best weights, early stopping): the overall score of the tasks
    the run trains. That is the record's own overall for a multitask run. A run trained on fewer
    tasks still evaluates every task, but its untrained heads' scores move with the encoder, and
    would otherwise pick its best evaluation; so they count as absent (0), like tasks not evaluated."""
    if set(tasks) == set(TASKS):
        return record["overall"]
    return overall({METRIC_NAMES[t]: record[METRIC_NAMES[t]] for t in tasks})


def is_improvement(overall: float, best: float | None, min_delta: float = 0.0) -> bool:
    """Whether a dev overall beats the best so far by more than min_delta (the first always does)."""
    return best is None or overall > best + min_delta


def stale_evaluations(history: list[dict], min_delta: float = 0.0, tasks=TASKS) -> int:
    """Evaluations since the last improvement of selection_score. Derived from the history
    alone, so a resumed run needs no extra state to continue counting."""
    best, stale = None, 0
    for record in history:
        score = selection_score(record, tasks)
        if is_improvement(score, best, min_delta):
            best, stale = score, 0
        else:
            stale += 1
    return stale


def should_stop_early(history: list[dict], patience: int, min_delta: float = 0.0, tasks=TASKS) -> bool:
    return patience > 0 and stale_evaluations(history, min_delta, tasks) >= patience


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


