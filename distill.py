"""--distill FILE: train one model on an ensemble's soft targets (knowledge distillation, Hinton et
al. 2015; for multitask language understanding, MT-DNN distilled from ensembles, Liu et al. 2019).

An ensemble of three default runs scores about 0.772 dev overall, one run about 0.766
(results/ensemble.md). Distillation asks how much of that one model of the same size can learn:
each training target becomes (1 − w)·label + w·teacher, the teacher being the ensemble's score of
that training example (w = --distill_wt):

- SST-5: the class distribution (1 − w)·one-hot(y) + w·p_teacher, under the cross-entropy;
- PARA: the probability (1 − w)·y + w·p_teacher, under the BCE;
- STS: the score (1 − w)·y + w·s_teacher, under the MSE (the same gradient as (1 − w)·MSE to
  the label plus w·MSE to the teacher).

    python multitask_classifier.py --eval_only --checkpoint runs/ensemble/seed-* \\
        --teacher_out runs/teacher.npz --no_predictions    # the ensemble scores the training sets
    python multitask_classifier.py --distill runs/teacher.npz

The file holds, per task, the training examples' ids and the teacher's scores. A run looks each of
its training examples up by id, so a file scored from other training data is refused, not misread.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from batching import TASKS


class TeacherError(ValueError):
    """A teacher file that does not fit the run: the message says which file and why."""


def save_teacher(path, scores: dict, ids: dict):
    """Write the teacher's training-set scores (task -> array, rows in `ids[task]`'s order) to
    `path` as named (np.savez given a name would add .npz to one without it)."""
    with open(path, "wb") as f:
        np.savez(f, **{f"{t}_scores": np.asarray(s, dtype=np.float32) for t, s in scores.items()},
                 **{f"{t}_ids": np.asarray(ids[t], dtype=str) for t in scores})


def teacher_scores(path, task: str, ids: list[str]) -> torch.Tensor:
    """The teacher's scores of the examples `ids`, in that order."""
    try:
        with np.load(path) as f:
            if f"{task}_scores" not in f:
                raise TeacherError(f"{path}: no {task} scores (the file has "
                                   f"{', '.join(t for t in TASKS if f'{t}_scores' in f) or 'none'})")
            row = {i: k for k, i in enumerate(f[f"{task}_ids"].tolist())}
            s = f[f"{task}_scores"]
    except OSError as e:
        raise TeacherError(f"{path}: cannot read the teacher file ({e})") from e
    missing = [i for i in ids if i not in row]
    if missing:
        raise TeacherError(f"{path}: {len(missing)} of the {len(ids)} {task} training examples have no teacher "
                           f"score (first: id {missing[0]}); score this training data with --teacher_out")
    return torch.from_numpy(s[[row[i] for i in ids]].copy())


def attach_teacher(path, data: dict, tasks):
    """Give each task's training data its examples' teacher scores (served as batch['teacher'])."""
    for t in tasks:
        data[t, "train"].teacher = teacher_scores(path, t, data[t, "train"].ids)


def soft_target(task: str, labels: torch.Tensor, teacher: torch.Tensor | None, weight: float) -> torch.Tensor:
    """The target a task's loss trains towards: the labels themselves without a teacher, else their
    mix with the teacher's scores (SST-5: class distributions [B, 5])."""
    if teacher is None:
        return labels
    if task == "sst":
        labels = F.one_hot(labels, teacher.shape[-1])
    return (1 - weight) * labels.float() + weight * teacher.float()
