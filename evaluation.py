"""Dev metrics and leaderboard prediction files.

SST: accuracy of the argmax class. PARA: accuracy of sigmoid(logit) > 0.5. STS: Pearson r of
the predicted similarity. Overall = (SST acc + PARA acc + (STS r + 1) / 2) / 3, the CS224N formula.
"""
from __future__ import annotations

import os
import re
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from batching import TASKS, eval_order
from dropout import sampled
from precision import FP32, Precision

# Column names exactly as the leaderboard reads them ("Similiary" is the leaderboard's spelling).
HEADERS = {"sst": "Predicted_Sentiment", "para": "Predicted_Is_Paraphrase",
           "sts": "Predicted_Similiary"}
METRIC_NAMES = {"sst": "sst_acc", "para": "para_acc", "sts": "sts_r"}
NUM_SENTIMENTS = 5  # SST-5 classes


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    denom = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denom) if denom > 0 else 0.0


def task_metric(task: str, preds: np.ndarray, labels: np.ndarray) -> float:
    if task == "sts":
        return pearson(preds.astype(np.float64), labels.astype(np.float64))
    return float((preds == labels).mean())


def overall(metrics: dict) -> float:
    """The leaderboard score; tasks not evaluated count as 0 (STS as r = -1)."""
    return (metrics.get("sst_acc", 0.0) + metrics.get("para_acc", 0.0)
            + (metrics.get("sts_r", -1.0) + 1) / 2) / 3


@torch.no_grad()
def scores(model, data, batch_size: int = 128, device="cpu", desc=None,
           precision: Precision = FP32, passes: int | None = 1) -> np.ndarray:
    """Scores of every example of `data`, in file order: SST class probabilities [N, 5], PARA
    P(paraphrase) [N], STS similarity [N]. Scores, not decisions, so that an ensemble can average them.
    The forward runs in `precision`'s autocast (the run's, so dev sees the model as it trained);
    the scores come back as fp32. `passes` > 1 (--mc_dropout): each score is the mean of that many
    passes with dropout on (dropout.sampled), as an ensemble's are over its models; None (a run's
    --mc_dropout when off) is one plain pass."""
    passes = passes or 1
    was_training = model.training
    model.eval()
    out = np.zeros((len(data), NUM_SENTIMENTS) if data.task == "sst" else len(data), dtype=np.float32)
    # desc=False: no bar at all; otherwise tqdm's disable=None shows it only on a terminal.
    quiet = True if desc is False else None
    with sampled(model) if passes > 1 else nullcontext():
        for index in tqdm(eval_order(data.lengths(), batch_size), desc=desc or f"predict {data.task}",
                          leave=False, disable=quiet):
            batch = model.to_device(data.batch(index), device)
            with precision.autocast():
                out[index] = sum(model.scores(data.task, batch).float() for _ in range(passes)).cpu().numpy() / passes
    model.train(was_training)
    return out


def decide(task: str, s: np.ndarray) -> np.ndarray:
    """Scores to leaderboard values: the argmax class (SST), P > 0.5 (PARA), the score itself (STS)."""
    if task == "sst":
        return s.argmax(-1)
    if task == "para":
        return (s > 0.5).astype(np.int64)
    return s


def predict(model, data, batch_size: int = 128, device="cpu", desc=None,
            precision: Precision = FP32, passes: int | None = 1) -> np.ndarray:
    """Predictions for every example of `data`, in file order: SST classes, PARA 0/1, STS floats."""
    return decide(data.task, scores(model, data, batch_size, device, desc, precision, passes))


def dev_metrics(preds: dict, dev: dict) -> dict:
    """Metrics of the predictions `preds` (task -> array) against the labels of `dev` (task -> TaskData)."""
    metrics = {METRIC_NAMES[t]: task_metric(t, p, dev[t].labels.numpy()) for t, p in preds.items()}
    metrics["overall"] = overall(metrics)
    return metrics


def metrics_line(metrics: dict) -> str:
    """`sst_acc 0.4796, para_acc 0.8530, ...`: how runs print metrics (parse_metrics reads it back)."""
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())


def parse_metrics(line: str) -> dict:
    """The metrics of a line printed with metrics_line (any prefix before them is ignored)."""
    return {k: float(v) for k, v in re.findall(r"(\w+) (-?\d+\.\d+)", line)}


def evaluate(model, dev: dict, batch_size: int = 128, device="cpu") -> tuple[dict, dict]:
    """Metrics over the dev sets in `dev` (task -> TaskData), and the predictions."""
    preds = {task: predict(model, data, batch_size, device, desc=f"dev {task}") for task, data in dev.items()}
    return dev_metrics(preds, dev), preds


def write_prediction_files(preds: dict, data: dict, args):
    """The leaderboard files of `preds` ((task, split) -> predictions in file order), at the
    paths of --{task}_{split}_out."""
    for (task, split), p in preds.items():
        write_predictions(getattr(args, f"{task}_{split}_out"), task, data[task, split].ids, p)


def write_predictions(path, task: str, ids: list[str], preds: np.ndarray):
    """One leaderboard file: a header line, then `id , value ` per example. Written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(f"id \t {HEADERS[task]} \n")
        for i, p in zip(ids, preds):
            f.write(f"{i} , {round(float(p), 4) if task == 'sts' else int(p)} \n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# -- per-example dev scores: what compare.py and analysis.py read, with no new inference --------
def save_dev_scores(path, scores: dict, dev: dict, examples: dict):
    """Write `RUN_DIR/dev_scores.npz`: for each task t in `scores`, `t_scores` (SST class
    probabilities [N, 5], PARA P(paraphrase) [N], STS score [N]), `t_labels`, `t_ids` and the
    sentences `t_sent1`, `t_sent2` ("" for SST), in dev-file order. The sentences make the run
    folder self-contained for error analysis."""
    write_dev_scores(path, {t: {"scores": np.asarray(s, dtype=np.float32), "labels": dev[t].labels.numpy(),
                                "ids": np.array(dev[t].ids, dtype=str),
                                "sent1": np.array([e.sent1 for e in examples[t]], dtype=str),
                                "sent2": np.array([e.sent2 or "" for e in examples[t]], dtype=str)}
                            for t, s in scores.items()})


def write_dev_scores(path, loaded: dict):
    """load_dev_scores's inverse: {task: {"scores", "labels", "ids", "sent1", "sent2"}} written
    atomically as `dev_scores.npz` (sweeps/specialists.py joins several runs' with it)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **{f"{t}_{k}": v for t, arrays in loaded.items() for k, v in arrays.items()})
    os.replace(tmp, path)


def load_dev_scores(path) -> dict:
    """`dev_scores.npz` back as {task: {"scores", "labels", "ids", "sent1", "sent2"}}."""
    with np.load(path, allow_pickle=False) as z:
        tasks = [k[:-len("_scores")] for k in z.files if k.endswith("_scores")]
        return {t: {f: z[f"{t}_{f}"] for f in ("scores", "labels", "ids", "sent1", "sent2")}
                for t in TASKS if t in tasks}
