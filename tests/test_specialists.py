"""sweeps/specialists.py: three single-task runs joined into one folder that compare.py scores as
one entry: each task's dev scores from the run trained on it alone, the wall times summed."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sweeps"))
import specialists  # noqa: E402
from test_compare import make_run  # noqa: E402

import compare  # noqa: E402
from evaluation import load_dev_scores  # noqa: E402


def alone(folder: Path, task: str, seed: int = 1, wall_s: float = 60.0, **kw) -> Path:
    """A finished run trained on `task` alone that (like a real one) scored every task."""
    run = make_run(folder, ["--tasks", task, "--seed", seed], **kw)
    (run / "summary.json").write_text(json.dumps({"wall_s": wall_s}))
    return run


def test_each_task_comes_from_its_own_run_and_the_wall_times_add_up(tmp_path):
    runs = {"sst": alone(tmp_path / "sst", "sst", sst_wrong=30, para_wrong=90, wall_s=100),
            "para": alone(tmp_path / "para", "para", para_wrong=5, sst_wrong=200, wall_s=300),
            "sts": alone(tmp_path / "sts", "sts", sts_noise=0.1, sst_wrong=200, wall_s=50)}
    out = tmp_path / "joined"
    assert specialists.main([str(out), *(f"{t}={p}" for t, p in runs.items())]) == 0
    joined = load_dev_scores(out / "dev_scores.npz")
    for t, run in runs.items():
        own = load_dev_scores(run / "dev_scores.npz")[t]
        for key in ("scores", "labels", "ids"):
            np.testing.assert_array_equal(joined[t][key], own[key])
    assert json.loads((out / "summary.json").read_text())["wall_s"] == 450
    config = json.loads((out / "config.json").read_text())
    assert config["tasks"] == ["sst", "para", "sts"] and config["seed"] == 1
    # compare.py reads it as a run: each task's metric is its specialist's
    ref = make_run(tmp_path / "multitask", ["--seed", "1"], sst_wrong=30, para_wrong=5, sts_noise=0.1)
    rows = compare.compare([ref, out], resamples=5000)
    assert all(rows[1]["delta"][m][0] == pytest.approx(0.0, abs=1e-12) for m in ("sst_acc", "para_acc", "sts_r"))
    # without NAME=RUN: never grouped with a multitask run of the same settings at another seed,
    # but a second seed's joined folder groups with the first
    runs2 = {t: alone(tmp_path / f"{t}2", t, seed=2) for t in ("sst", "para", "sts")}
    assert specialists.main([str(tmp_path / "joined-s2"), *(f"{t}={p}" for t, p in runs2.items())]) == 0
    groups = compare.group_runs([compare.load_run(d) for d in (ref, tmp_path / "joined-s2", out)])
    assert [g["seeds"] for g in groups] == [[1], [2, 1]]


def test_runs_that_did_not_train_one_task_alone_or_differ_in_seed_are_refused(tmp_path, capsys):
    sst, para = alone(tmp_path / "sst", "sst"), alone(tmp_path / "para", "para")
    multitask = make_run(tmp_path / "all", ["--seed", "1"])
    (multitask / "summary.json").write_text("{}")
    out = str(tmp_path / "joined")
    assert specialists.main([out, f"sst={sst}", f"para={para}", f"sts={multitask}"]) == 2
    assert "not on sts alone" in capsys.readouterr().err
    other_seed = alone(tmp_path / "sts2", "sts", seed=2)
    assert specialists.main([out, f"sst={sst}", f"para={para}", f"sts={other_seed}"]) == 2
    assert "different seeds" in capsys.readouterr().err
    assert specialists.main([out, f"sst={sst}", f"para={para}", f"para={para}"]) == 2
    assert "one run per task" in capsys.readouterr().err
    assert specialists.main([out, f"sst={sst}", f"para={para}", f"sts={tmp_path / 'missing'}"]) == 2
    assert "not a finished run folder" in capsys.readouterr().err
    broken = alone(tmp_path / "broken", "sts")
    (broken / "dev_scores.npz").write_bytes(b"not a zip")
    assert specialists.main([out, f"sst={sst}", f"para={para}", f"sts={broken}"]) == 2
    assert "not a finished run folder" in capsys.readouterr().err
    assert not (tmp_path / "joined").exists()
