"""run_folder.py: one writer per run folder (RUN_DIR/.lock), and saved runs that never lie: a
changed, missing or extra file in best/ or state/ stops --eval_only, --resume and export.py
with one line and exit status 2, while runs saved before manifests existed still load."""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from test_checkpoint import flip_tensor_bytes
from test_cli import SMOKE, pred_files, snapshot, start, tiny_argv

import export
import multitask_classifier as mc
import run_folder
from batching import TASKS
from checkpoint import MANIFEST
from run_folder import LOCK, RunFolderBusy, hold_run_dir

# 3 epochs of the tiny data: long enough that a run started together with it finds it running
RUN = ("--epochs", "3")
needs_fcntl = pytest.mark.skipif(run_folder.fcntl is None, reason="no fcntl: runs go unlocked here")


def busy(folder: Path, pid: int) -> str:
    return f"{folder}: another run is writing this folder (pid {pid}); choose another --out_dir"


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


# -- the lock itself -----------------------------------------------------------------------------
def _try_to_hold(folder: Path, answers):
    try:
        with hold_run_dir(folder):
            answers.put("held")
    except RunFolderBusy as e:
        answers.put(str(e))


def in_another_process(folder: Path) -> str:
    """What hold_run_dir(folder) does in a child process: 'held', or the refusal's message."""
    ctx = multiprocessing.get_context("fork")
    answers = ctx.Queue()
    child = ctx.Process(target=_try_to_hold, args=(folder, answers))
    child.start()
    child.join(30)
    return answers.get(timeout=5)


@needs_fcntl
def test_a_second_holder_is_refused_until_the_first_releases(tmp_path):
    run = tmp_path / "runs" / "x"
    with hold_run_dir(run):
        assert (run / LOCK).read_text() == f"{os.getpid()}\n"
        assert in_another_process(run) == busy(run, os.getpid())
        assert (run / LOCK).read_text() == f"{os.getpid()}\n"  # the refused one left ours alone
    assert in_another_process(run) == "held"
    # released: the lock file is gone, and so are the folders made for it that stayed empty
    assert not (tmp_path / "runs").exists()


@needs_fcntl
def test_a_killed_runs_lock_file_is_taken_over_and_outputs_are_kept(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK).write_text("999999\n")  # left by a run killed with SIGKILL: no one holds it
    with hold_run_dir(run):
        assert (run / LOCK).read_text() == f"{os.getpid()}\n"
        (run / "metrics.jsonl").write_text("{}\n")
    assert sorted(p.name for p in run.iterdir()) == ["metrics.jsonl"]


def refusal_while_the_holder_writes_late(run: Path) -> str:
    """Lock RUN/.lock as a holder that has not yet written its pid (the file may still hold a dead
    run's), write it 0.2 s later (truncate, then "PID\n"), and return what a run refused in between
    says."""
    fd = os.open(run / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    run_folder.fcntl.flock(fd, run_folder.fcntl.LOCK_EX)

    def write_pid():
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    late = threading.Timer(0.2, write_pid)
    late.start()
    try:
        with pytest.raises(RunFolderBusy) as refused, hold_run_dir(run):
            pass
    finally:
        late.join()
        os.close(fd)
    return str(refused.value)


@needs_fcntl
def test_a_refusal_in_the_moment_before_the_holder_writes_its_pid_still_names_it(tmp_path):
    """The holder truncates the file and writes its pid just after taking the lock; a run refused
    in between waits for the pid rather than saying 'pid unknown'."""
    run = tmp_path / "run"
    run.mkdir()
    assert refusal_while_the_holder_writes_late(run) == busy(run, os.getpid())


@needs_fcntl
def test_a_refusal_while_the_holder_takes_over_a_killed_runs_file_names_the_holder(tmp_path):
    """A killed run leaves its pid in the file; the next holder locks that file, then replaces the
    pid. A run refused in between must not name the dead run."""
    run = tmp_path / "run"
    run.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: its pid names no process
    (run / LOCK).write_text(f"{dead.pid}\n")
    assert refusal_while_the_holder_writes_late(run) == busy(run, os.getpid())


@needs_fcntl
def test_a_holder_that_never_writes_its_pid_is_reported_as_unknown(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    fd = os.open(run / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    run_folder.fcntl.flock(fd, run_folder.fcntl.LOCK_EX)
    try:
        with pytest.raises(RunFolderBusy) as refused, hold_run_dir(run):
            pass
    finally:
        os.close(fd)
    assert "(pid unknown)" in str(refused.value)


def test_without_fcntl_a_run_goes_unlocked(tmp_path, monkeypatch):
    monkeypatch.setattr(run_folder, "fcntl", None)
    with hold_run_dir(tmp_path / "run") as run, hold_run_dir(tmp_path / "run"):
        assert run.is_dir() and not (run / LOCK).exists()


@needs_fcntl
def test_only_rank_0_of_a_torchrun_job_takes_the_lock(tmp_path, monkeypatch):
    args = mc.parse_args(["--out_dir", str(tmp_path / "run")])
    with hold_run_dir(tmp_path / "run"):
        monkeypatch.setenv("RANK", "1")  # writes nothing (trainer.py): must not wait on rank 0's lock
        with mc.prepare_run_dir(args) as run:
            assert run == tmp_path / "run"
        monkeypatch.setenv("RANK", "0")
        with pytest.raises(RunFolderBusy), mc.prepare_run_dir(args):
            pass


# -- runs into one folder --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved_run(tiny_bert_dir, tiny_data_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("saved")
    assert mc.main(tiny_argv(tiny_bert_dir, tiny_data_dir, out, *RUN)) == 0
    return out / "run"


def copy_run(run: Path, out: Path) -> Path:
    """A copy of `run` in out/run, whose --resume writes its predictions under out/."""
    dest = out / "run"
    shutil.copytree(run, dest)
    config = json.loads((dest / "config.json").read_text())
    config.update({f"{t}_{s}_out": str(pred_files(out)[f"{t}-{s}"]) for t in TASKS for s in ("dev", "test")})
    (dest / "config.json").write_text(json.dumps(config))
    return dest


@needs_fcntl
@pytest.mark.parametrize("how", ["fresh", "--overwrite", "--resume"])
def test_a_run_into_a_held_folder_is_refused_and_changes_nothing(how, saved_run, tiny_bert_dir,
                                                                  tiny_data_dir, tmp_path, capsys):
    run = copy_run(saved_run, tmp_path / "o") if how != "fresh" else tmp_path / "o" / "run"
    argv = {"fresh": tiny_argv(tiny_bert_dir, tiny_data_dir, tmp_path / "o", *SMOKE),
            "--overwrite": tiny_argv(tiny_bert_dir, tiny_data_dir, tmp_path / "o", *SMOKE, "--overwrite"),
            "--resume": ["--resume", str(run)]}[how]
    with hold_run_dir(run):  # another run (here: this process, on another open file) holds it
        before = snapshot(run)
        assert mc.main(argv) == 2
        assert error_lines(capsys.readouterr().err) == [f"error: {busy(run, os.getpid())}"]
        assert snapshot(run) == before
    assert not (tmp_path / "o" / "predictions").exists()


@needs_fcntl
def test_two_runs_started_together_into_one_folder(saved_run, tiny_bert_dir, tiny_data_dir, tmp_path):
    """Exactly one is refused, with one line; the other's folder is the run it would be alone."""
    alone = saved_run.parent
    both = tmp_path / "both"
    argv = tiny_argv(tiny_bert_dir, tiny_data_dir, both, *RUN)
    runs = [start(argv, tmp_path / f"run{i}") for i in range(2)]
    codes = [proc.wait(timeout=300) for proc, _ in runs]
    assert sorted(codes) == [0, 2], [err.read_text()[-2000:] for _, err in runs]
    (winner, _), (_, err) = sorted(runs, key=lambda r: r[0].returncode)
    assert error_lines(err.read_text()) == [f"error: {busy(both / 'run', winner.pid)}"]

    a, b = alone / "run", both / "run"
    files = sorted(str(p.relative_to(a)) for p in a.rglob("*"))
    assert sorted(str(p.relative_to(b)) for p in b.rglob("*")) == files  # no .lock left either
    for f in ("best/model.safetensors", "state/model.safetensors", "state/optimizer.safetensors",
              "dev_scores.npz"):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f

    def metrics(run):  # everything but the wall-clock time of each evaluation
        return [{k: v for k, v in json.loads(line).items() if k != "train_s"}
                for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics(a) == metrics(b) and len(metrics(a)) == 3
    for name, path in pred_files(alone).items():
        assert path.read_bytes() == pred_files(both)[name].read_bytes(), name


# -- saved runs that never lie -------------------------------------------------------------------
def eval_only(run: Path, tiny_bert_dir, tiny_data_dir, out: Path) -> int:
    return mc.main(tiny_argv(tiny_bert_dir, tiny_data_dir, out, "--checkpoint", run, "--eval_only"))


@pytest.mark.parametrize("reader", ["--eval_only", "export.py"])
def test_flipped_bytes_in_best_are_refused(reader, saved_run, tiny_bert_dir, tiny_data_dir, tmp_path, capsys):
    run = copy_run(saved_run, tmp_path / "c")
    file = run / "best" / "model.safetensors"
    flip_tensor_bytes(file)  # safetensors loads this silently (test_checkpoint.py)
    if reader == "--eval_only":
        assert eval_only(run, tiny_bert_dir, tiny_data_dir, tmp_path / "e") == 2
    else:
        assert export.main([str(run), str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert error_lines(err) == [f"error: {file}: sha256 mismatch: the file changed after it was saved"]
    assert not (tmp_path / "e").exists() and not (tmp_path / "x").exists()


def test_flipped_bytes_in_state_are_refused_by_resume(saved_run, tmp_path, capsys):
    run = copy_run(saved_run, tmp_path / "c")
    file = run / "state" / "model.safetensors"
    flip_tensor_bytes(file)
    before = snapshot(run)
    assert mc.main(["--resume", str(run)]) == 2
    assert error_lines(capsys.readouterr().err) == [
        f"error: {file}: sha256 mismatch: the file changed after it was saved"]
    assert snapshot(run) == before and not (tmp_path / "c" / "predictions").exists()


@pytest.mark.parametrize("sub", ["best", "state"])
@pytest.mark.parametrize("damage", ["missing", "extra"])
def test_a_missing_listed_file_or_an_extra_tensor_file_is_refused(sub, damage, saved_run, tiny_bert_dir,
                                                                  tiny_data_dir, tmp_path, capsys):
    run = copy_run(saved_run, tmp_path / "c")
    folder = run / sub
    if damage == "missing":
        file = folder / ("vocab.txt" if sub == "best" else "rng.safetensors")
        file.unlink()
        where = f"listed in {folder / MANIFEST} but missing"
    else:
        file = folder / "extra.safetensors"
        save_file({"x": torch.ones(2)}, str(file))
        where = f"not listed in {folder / MANIFEST}: the file was added after the folder was saved"
    if sub == "best":
        rc = eval_only(run, tiny_bert_dir, tiny_data_dir, tmp_path / "e")
    else:
        rc = mc.main(["--resume", str(run)])
    assert rc == 2
    assert error_lines(capsys.readouterr().err) == [f"error: {file}: {where}"]


def test_a_run_saved_before_manifests_still_evaluates_and_resumes(saved_run, tiny_bert_dir, tiny_data_dir,
                                                                  tmp_path):
    run = copy_run(saved_run, tmp_path / "c")
    for sub in ("best", "state"):
        (run / sub / MANIFEST).unlink()
    assert eval_only(run, tiny_bert_dir, tiny_data_dir, tmp_path / "e") == 0
    assert mc.main(["--resume", str(run)]) == 0
    for name, path in pred_files(saved_run.parent).items():
        assert pred_files(tmp_path / "e")[name].read_bytes() == path.read_bytes(), name
        assert pred_files(tmp_path / "c")[name].read_bytes() == path.read_bytes(), name
