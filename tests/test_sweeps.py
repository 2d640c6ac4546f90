"""The sweep scripts (sweeps/*.sh) run end to end on tiny runs, so that none of them rots: every
row's flags are accepted by the parser (DRY_RUN), and a few rows at two seeds train, are skipped
when finished, and become the table with Δ and CIs."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATA_FILES

import multitask_classifier as mc

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ("ablation", "tuning", "ensemble")


def sweep(script: str, tmp_path: Path, tiny_bert_dir, tiny_data_dir, **env) -> subprocess.CompletedProcess:
    extra = ["--bert_model", str(tiny_bert_dir), "--threads", "1", "--batch_size", "8", "--eval_batch_size", "16"]
    for flag, (name, _) in DATA_FILES.items():
        extra += [f"--{flag}", str(tiny_data_dir / name)]
    for t in ("sst", "para", "sts"):
        for split in ("dev", "test"):
            extra += [f"--{t}_{split}_out", str(tmp_path / "predictions" / f"{t}-{split}.csv")]
    env = {**os.environ, "PY": sys.executable, "OUT": str(tmp_path / "runs"), "RESULTS": str(tmp_path / "results"),
           "EXTRA": shlex.join(extra), "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(["bash", str(ROOT / "sweeps" / f"{script}.sh")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_row_of_every_sweep_is_a_valid_command_line(script, tmp_path, tiny_bert_dir, tiny_data_dir):
    res = sweep(script, tmp_path, tiny_bert_dir, tiny_data_dir, DRY_RUN="1", SEEDS="1 2")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) >= 2
    names = [line.split(": ", 1)[0] for line in lines]
    assert len(set(names)) == len(names)  # every run its own folder
    for line in lines:
        name, argv = line.split(": ", 1)
        args = mc.parse_args(shlex.split(argv))  # exits (fails the test) on a bad flag
        if script != "ensemble":  # rows: one run per seed, named by it
            assert name.endswith(f"-s{args.seed}") and args.epochs == 1
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_ablation_rows_at_two_seeds_make_the_table(tmp_path, tiny_bert_dir, tiny_data_dir):
    env = dict(ROWS="default fgsm", SEEDS="1 2", STEPS="3")
    res = sweep("ablation", tmp_path, tiny_bert_dir, tiny_data_dir, **env)
    assert res.returncode == 0, res.stdout + res.stderr
    runs = tmp_path / "runs"
    assert sorted(p.name for p in runs.iterdir() if p.is_dir()) == ["default-s1", "default-s2", "fgsm-s1", "fgsm-s2"]
    table = (tmp_path / "results" / "ablation.md").read_text()
    default = next(l for l in table.splitlines() if l.startswith("| default |"))
    assert "--fgsm" not in default and "| 2 |" in default and "| reference |" in default
    assert "fgsm: Δ overall " in table and "95% CI [" in table
    assert (tmp_path / "results" / "ablation.png").is_file()
    again = sweep("ablation", tmp_path, tiny_bert_dir, tiny_data_dir, **env)  # finished runs are skipped
    assert again.stdout.count("done, skipped") == 4, again.stdout


def test_tuning_rows_make_the_table(tmp_path, tiny_bert_dir, tiny_data_dir):
    res = sweep("tuning", tmp_path, tiny_bert_dir, tiny_data_dir, ROWS="lr1e-4-crosspara lr5e-5",
                SEEDS="1", STEPS="2")
    assert res.returncode == 0, res.stdout + res.stderr
    table = (tmp_path / "results" / "tuning.md").read_text()
    assert table.index("| lr1e-4-crosspara-s1 |") < table.index("| lr5e-5-s1 |")  # the reference first
    assert "lr5e-5-s1: Δ overall" in table


def test_ensemble_trains_members_and_predicts_with_their_ensemble(tmp_path, tiny_bert_dir, tiny_data_dir):
    res = sweep("ensemble", tmp_path, tiny_bert_dir, tiny_data_dir, SEEDS="1 2")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "ensemble dev: sst_acc" in res.stdout
    table = (tmp_path / "results" / "ensemble.md").read_text()
    assert "| seed-1 |" in table and "| ensemble | `--eval_only --checkpoint seed-1 seed-2` |" in table
    assert len(list((tmp_path / "predictions").glob("*.csv"))) == 6
