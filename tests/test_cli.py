"""Robustness and command-line behaviour of multitask_classifier.py: nothing lost, nothing let in.

Bad input stops a run before anything is written, with one `error:` line naming the file (and
line) and exit status 2; interrupted runs (SIGKILL, SIGTERM, SIGINT, a NaN loss, a full disk)
keep their last saved state and resume to the same bits as an uninterrupted run; untrusted files
(a tampered args.json, a pickle that runs code) are refused. Subprocess runs go through the real
command line (`python multitask_classifier.py ...`); the rest call `main(argv)` in-process.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import DATA_FILES, tiny_argv
from safetensors.torch import load_file

import checkpoint
import trainer
import multitask_classifier as mc
import saved_runs
import options
from batching import TASKS
from evaluation import HEADERS, decide, parse_metrics
from run_folder import load_state, load_weights

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
SCRIPT = ROOT / "multitask_classifier.py"

SMOKE = ("--max_train_examples", "16", "--epochs", "1")
# 2 epochs of 12 steps, the state saved after every step: the runs that get interrupted.
RESUMABLE = ("--max_train_examples", "16", "--epochs", "2", "--steps_per_epoch", "12", "--save_every", "1")
TOTAL_STEPS = 24


# -- helpers -----------------------------------------------------------------------------------
def pred_files(out: Path) -> dict[str, Path]:
    return {f"{t}-{s}": out / "predictions" / f"{t}-{s}-output.csv" for t in TASKS for s in ("dev", "test")}


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def cli(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    """`python multitask_classifier.py ARGV` from the repository root."""
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, argv)], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=timeout, check=False)


def start(argv: list[str], log: Path) -> tuple[subprocess.Popen, Path]:
    """A run in the background, its stdout and stderr going to files (no pipe to fill up)."""
    out, err = log.with_suffix(".out"), log.with_suffix(".err")
    with open(out, "w") as stdout, open(err, "w") as stderr:  # the child keeps its own copies
        proc = subprocess.Popen([sys.executable, str(SCRIPT), *map(str, argv)], cwd=ROOT, env=_env(),
                                stdout=stdout, stderr=stderr)
    return proc, err


def saved_step(run: Path) -> int | None:
    """The step of the run's saved state; None while there is none (or it is being replaced)."""
    try:
        return json.loads((run / "state" / "trainer.json").read_text())["progress"]["step"]
    except (OSError, ValueError, KeyError):
        return None


def wait_for_step(proc: subprocess.Popen, run: Path, k: int, err: Path, timeout: float = 90) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        step = saved_step(run)
        if step is not None and step >= k:
            return step
        if proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before saving step {k}:\n{err.read_text()[-3000:]}")
        time.sleep(0.005)
    proc.kill()
    pytest.fail(f"no saved step {k} within {timeout}s")


def last_line(text: str) -> str:
    lines = [ln for ln in re.split(r"[\r\n]+", text) if ln.strip()]
    return lines[-1] if lines else ""


def assert_clean_error(err: str, where: str):
    """One `error:` line, last, naming `where`; no traceback."""
    assert "Traceback" not in err, err
    line = last_line(err)
    assert line.startswith("error: "), err
    assert where in line, f"{where!r} not in {line!r}"
    return line


def assert_nothing_written(out: Path):
    assert not (out / "run").exists(), sorted(p.name for p in (out / "run").iterdir())
    assert not (out / "predictions").exists()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_same_params(ref: Path, run: Path):
    """Bitwise-equal best/ and state/ tensors (weights, optimizer moments) and predictions."""
    for file in ("best/model.safetensors", "state/model.safetensors", "state/optimizer.safetensors"):
        a, b = load_file(str(ref / file)), load_file(str(run / file))
        assert a.keys() == b.keys(), file
        differ = [k for k in a if not torch.equal(a[k], b[k])]
        assert not differ, f"{file}: {len(differ)} tensors differ, e.g. {differ[:3]}"
    for name, path in pred_files(ref.parent).items():
        assert path.read_bytes() == pred_files(run.parent)[name].read_bytes(), name


def load_run_state(run: Path) -> dict:
    """Rebuild the run's model and optimizer from its config.json and load state/ into them."""
    args = options.saved_args(run, "config.json")
    model = mc.build_model(args)
    return load_state(run / "state", model, trainer.build_optimizer(model, args))


def data_rows(name: str) -> list[list[str]]:
    return [line.rstrip("\n").split("\t") for line in (DATA / name).read_text(encoding="utf-8").splitlines(True)]


def nan_at(monkeypatch, steps: set[int]) -> list[str]:
    """Make training_loss NaN at these (1-based) calls, i.e. steps of a local-update run;
    returns the list that collects the tasks of the poisoned steps."""
    real, calls, tasks = mc.training_loss, [0], []

    def poisoned(model, task, batch, args):
        loss = real(model, task, batch, args)
        calls[0] += 1
        if calls[0] in steps:
            tasks.append(task)
            return loss * float("nan")
        return loss
    monkeypatch.setattr(mc, "training_loss", poisoned)
    return tasks


# -- shared runs -------------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def _restore_threads():
    """main(--threads 1) sets torch's thread count for the whole process: put it back after."""
    old = torch.get_num_threads()
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def smoke(tiny_bert_dir, tiny_data_dir, tmp_path_factory):
    """The done-criterion run: 16 training examples per task, one epoch."""
    out = tmp_path_factory.mktemp("smoke")
    argv = tiny_argv(tiny_bert_dir, tiny_data_dir, out, *SMOKE)
    return SimpleNamespace(rc=mc.main(argv), out=out, run=out / "run", argv=argv)


@pytest.fixture(scope="module")
def reference(tiny_bert_dir, tiny_data_dir, tmp_path_factory) -> Path:
    """An uninterrupted RESUMABLE run, in-process: what every interrupted run must end up as."""
    out = tmp_path_factory.mktemp("reference")
    assert mc.main(tiny_argv(tiny_bert_dir, tiny_data_dir, out, *RESUMABLE)) == 0
    return out / "run"


@pytest.fixture(scope="module")
def big_sst_train(tmp_path_factory) -> SimpleNamespace:
    """120 real SST training rows (one bad row is under the 1% budget), line 50's label 7."""
    rows = data_rows("ids-sst-train.csv")[:121]
    if len(rows) < 121:
        pytest.skip("data/ids-sst-train.csv is missing or short: run `bash setup.sh`")
    rows[49][3] = "7"
    path = tmp_path_factory.mktemp("big") / "sst-train-bad-row.csv"
    path.write_text("".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    return SimpleNamespace(path=path, line=50, reason="label '7' is not an integer 0..4")


# -- 1. the done criterion ---------------------------------------------------------------------
def test_smoke_run_writes_predictions_and_run_folder(smoke, tiny_data_dir):
    assert smoke.rc == 0
    for t in TASKS:
        for split in ("dev", "test"):
            name, n = DATA_FILES[f"{t}_{split}"]
            header, *rows = [line.split("\t") for line in (tiny_data_dir / name).read_text().splitlines()]
            ids = [r[header.index("id")] for r in rows]
            assert len(ids) == n
            lines = (smoke.out / "predictions" / f"{t}-{split}-output.csv").read_text().splitlines(True)
            assert lines[0] == f"id \t {HEADERS[t]} \n"
            assert len(lines) == 1 + n
            rows = [re.fullmatch(r"(\S+) , (\S+) \n", line) for line in lines[1:]]
            assert all(rows), lines
            assert [r[1] for r in rows] == ids
            values = [float(r[2]) for r in rows]
            allowed = {"sst": range(5), "para": (0, 1)}.get(t)
            assert all(v in allowed for v in values) if allowed else all(0 <= v <= 5 for v in values)
    run = smoke.run
    for f in ("config.json", "metrics.jsonl", "best/model.safetensors", "best/config.json",
              "best/args.json", "curves.png", "summary.json", "state/trainer.json",
              "state/model.safetensors", "state/optimizer.safetensors", "state/rng.safetensors"):
        assert (run / f).is_file(), f
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    assert not [p.name for p in run.iterdir() if p.name.endswith((".tmp", ".old"))]
    assert json.loads((run / "summary.json").read_text())["skipped_steps"] == 0


def test_eval_only_reproduces_the_prediction_files(smoke, tiny_bert_dir, tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "e"
    argv = tiny_argv(tiny_bert_dir, tiny_data_dir, out, "--checkpoint", smoke.run, "--eval_only")
    assert mc.main(argv) == 0
    for name, path in pred_files(out).items():
        assert path.read_bytes() == pred_files(smoke.out)[name].read_bytes(), name
    assert not (out / "run").exists()  # evaluation writes predictions only
    best = json.loads((smoke.run / "summary.json").read_text())["best"]
    printed = capsys.readouterr().out
    assert f"overall {best['overall']:.4f}" in printed


def test_ensemble_predicts_the_mean_of_its_members_scores(smoke, tiny_bert_dir, tiny_data_dir, tmp_path,
                                                           monkeypatch, capsys):
    # A second member with another PARA head (bi-encoded pairs, another seed): runs may be mixed.
    other = tmp_path / "bi"
    assert mc.main(tiny_argv(tiny_bert_dir, tiny_data_dir, other, *SMOKE, "--para_head", "concat",
                             "--seed", "5")) == 0
    capsys.readouterr()  # the member's training output
    seen, real = [], saved_runs.scores  # every member's scores, in the order they are computed

    def spy(*a, **k):
        seen.append(real(*a, **k))
        return seen[-1]
    monkeypatch.setattr(saved_runs, "scores", spy)
    out = tmp_path / "ensemble"
    argv = tiny_argv(tiny_bert_dir, tiny_data_dir, out, "--checkpoint", smoke.run, other / "run", "--eval_only")
    assert mc.main(argv) == 0
    keys = [(t, s) for t in TASKS for s in ("dev", "test")]
    assert len(seen) == 2 * len(keys)
    for j, (t, s) in enumerate(keys):
        first, second = seen[j], seen[len(keys) + j]
        assert not np.allclose(first, second)  # the members differ, so the mean is a real test
        rows = pred_files(out)[f"{t}-{s}"].read_text().splitlines()[1:]
        got = np.array([float(r.split(" , ")[1]) for r in rows])
        np.testing.assert_allclose(got, decide(t, (first + second) / 2), atol=1e-4)  # STS is written to 4 places
    printed = capsys.readouterr().out
    assert "ensemble dev:" in printed and printed.count("sst_acc") == 3  # two members, then the ensemble


def test_compare_ensemble_rows_score_what_an_ensemble_predicts(smoke, tiny_bert_dir, tiny_data_dir, tmp_path,
                                                              capsys):
    # compare.py --ensemble averages the runs' saved dev scores instead of running the models:
    # the same metrics as --eval_only --checkpoint with both runs, for none of its inference
    import compare
    other = tmp_path / "s5"
    assert mc.main(tiny_argv(tiny_bert_dir, tiny_data_dir, other, *SMOKE, "--seed", "5")) == 0
    capsys.readouterr()
    argv = tiny_argv(tiny_bert_dir, tiny_data_dir, tmp_path / "ens", "--checkpoint", smoke.run,
                     other / "run", "--eval_only")
    assert mc.main(argv) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("ensemble dev: "))
    rows = compare.compare([smoke.run, other / "run"], resamples=5000, ensembles=True)
    assert rows[0]["seeds"] == [11711, 5] and rows[1]["seeds"] == ["ensemble of 2"]
    assert {k: round(v, 4) for k, v in rows[1]["metrics"].items()} == parse_metrics(line)


def test_checkpoint_without_eval_only_is_refused(smoke, tiny_bert_dir, tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "x"
    assert mc.main(tiny_argv(tiny_bert_dir, tiny_data_dir, out, "--checkpoint", smoke.run)) == 2
    assert "add --eval_only" in capsys.readouterr().err
    assert not out.exists()


def test_same_seed_same_metrics_and_predictions(smoke, tiny_bert_dir, tiny_data_dir, tmp_path):
    out = tmp_path / "again"
    assert mc.main(tiny_argv(tiny_bert_dir, tiny_data_dir, out, *SMOKE)) == 0

    def metrics(run):
        return [{k: v for k, v in json.loads(line).items() if k != "train_s"}
                for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics(out / "run") == metrics(smoke.run)
    for name, path in pred_files(out).items():
        assert path.read_bytes() == pred_files(smoke.out)[name].read_bytes(), name
    a, b = load_file(str(smoke.run / "best/model.safetensors")), load_file(str(out / "run/best/model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


# -- 2. malformed input through the command line -----------------------------------------------
def _copy(src: Path, dst: Path, edit=None):
    lines = src.read_bytes().splitlines(True)
    dst.write_bytes(b"".join(edit(lines) if edit else lines))


def _set_label(lines, i, value):
    cells = lines[i].rstrip(b"\n").split(b"\t")
    cells[-1] = value
    lines[i] = b"\t".join(cells) + b"\n"
    return lines


def _header(lines):
    return [b"\tid\tquestion1\tquestion2\tlabel\n"] + lines[1:]


def _two_bad_labels(lines):
    return _set_label(_set_label(lines, 3, b"9"), 7, b"")


def _non_utf8(lines):
    lines[5] = lines[5].replace(b" ", b" \xff ", 1)  # a Latin-1 byte inside line 6's sentence
    return lines


# case: (flag, how to make the file from the tiny one, what the error line names, extra text)
WHOLE_FILE = {
    "missing file": ("para_test", None, "{p}: no such file", ""),
    "directory": ("sts_train", lambda src, p: p.mkdir(), "{p}: is a directory", ""),
    "empty file": ("sst_dev", lambda src, p: p.write_bytes(b""), "{p}: file is empty", ""),
    "whitespace only": ("sts_test", lambda src, p: p.write_bytes(b"\n  \n\t\n"), "{p}: file is empty", ""),
    "wrong header": ("para_train", lambda src, p: _copy(src, p, _header),
                     "{p}:1: header lacks column(s) 'sentence1', 'sentence2', 'is_duplicate'", ""),
    "not UTF-8": ("sts_dev", lambda src, p: _copy(src, p, _non_utf8), "{p}:6: not valid UTF-8 (byte 0xff", ""),
    "bad rows over budget": ("sst_dev", lambda src, p: _copy(src, p, _two_bad_labels),
                             "{p}:4: label '9' is not an integer 0..4", "2 bad rows of 24, over the 1% budget"),
}


@pytest.mark.parametrize("case", list(WHOLE_FILE))
def test_malformed_file_stops_the_cli_before_writing(case, run_argv, tiny_data_dir, tmp_path):
    flag, make, where, extra = WHOLE_FILE[case]
    src = tiny_data_dir / DATA_FILES[flag][0]
    bad = tmp_path / f"bad-{src.name}"
    if make:
        make(src, bad)
    res = cli(run_argv("out", f"--{flag}", bad))
    assert res.returncode == 2, res.stderr
    line = assert_clean_error(res.stderr, where.format(p=bad))
    assert extra in line
    assert_nothing_written(tmp_path / "out")


def test_strict_stops_on_one_bad_row(run_argv, big_sst_train, tmp_path):
    res = cli(run_argv("out", "--sst_train", big_sst_train.path, "--strict"))
    assert res.returncode == 2, res.stderr
    line = assert_clean_error(res.stderr, f"{big_sst_train.path}:{big_sst_train.line}: {big_sst_train.reason}")
    assert "--strict" in line
    assert_nothing_written(tmp_path / "out")


def test_bad_row_under_budget_is_reported_and_long_sentence_truncated(run_argv, big_sst_train, tiny_data_dir,
                                                                      tmp_path, capsys):
    long_test = tmp_path / "sst-test-long.csv"

    def lengthen(lines):
        cells = lines[3].rstrip(b"\n").split(b"\t")
        cells[lines[0].rstrip(b"\n").split(b"\t").index(b"sentence")] = b" ".join([b"word"] * 10_000)
        lines[3] = b"\t".join(cells) + b"\n"
        return lines
    _copy(tiny_data_dir / DATA_FILES["sst_test"][0], long_test, lengthen)
    argv = run_argv("out", "--sst_train", big_sst_train.path, "--sst_test", long_test, *SMOKE)
    assert mc.main(argv) == 0
    err = capsys.readouterr().err
    assert f"{big_sst_train.path}: skipped 1 of 120 rows" in err
    assert f"{big_sst_train.path}:{big_sst_train.line}: {big_sst_train.reason}" in err
    assert re.search(r"note: 1 sequences were longer than --max_length 128 tokens and were truncated", err), err
    lines = pred_files(tmp_path / "out")["sst-test"].read_text().splitlines()
    assert len(lines) == 1 + DATA_FILES["sst_test"][1]  # the long sentence is predicted too


# -- 3. interrupted runs -----------------------------------------------------------------------
@pytest.mark.parametrize("trial", range(5))
def test_sigkill_at_a_random_step_then_resume_is_bitwise_equal(trial, reference, run_argv, tmp_path, capsys):
    k = random.Random(f"sigkill-{trial}").randint(1, TOTAL_STEPS - 3)
    run = tmp_path / "k" / "run"
    proc, err = start(run_argv("k", *RESUMABLE), tmp_path / "log")
    wait_for_step(proc, run, k, err)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL, "the run ended before it was killed"
    assert not (run / "summary.json").exists()

    capsys.readouterr()
    assert mc.main(["--resume", str(run)]) == 0
    # (a kill in the middle of a save may leave state.old only: the resumed run takes it back)
    at = re.search(rf"resumed {re.escape(str(run))} at step (\d+) of {TOTAL_STEPS}", capsys.readouterr().out)
    assert at and k <= int(at[1]) < TOTAL_STEPS
    assert_same_params(reference, run)


def test_sigterm_saves_state_and_resume_is_bitwise_equal(reference, run_argv, tmp_path):
    run = tmp_path / "t" / "run"
    proc, err = start(run_argv("t", *RESUMABLE), tmp_path / "log")
    wait_for_step(proc, run, 3, err)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 130, err.read_text()[-3000:]
    line = assert_clean_error(err.read_text(), "stopped by SIGTERM")
    assert f"--resume {run}" in line
    at = saved_step(run)
    assert 3 <= at < TOTAL_STEPS and f"after step {at};" in line

    res = cli(["--resume", run])
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"resumed {run} at step {at}" in res.stdout
    assert_same_params(reference, run)


def test_sigint_in_process_stops_after_the_step_and_resumes(reference, run_argv, tmp_path, monkeypatch, capsys):
    real, calls = mc.training_loss, [0]

    def interrupted(*a):
        calls[0] += 1
        if calls[0] == 9:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of step 9
        return real(*a)
    monkeypatch.setattr(mc, "training_loss", interrupted)
    handler = signal.getsignal(signal.SIGINT)
    run = tmp_path / "i" / "run"
    assert mc.main(run_argv("i", *RESUMABLE)) == 130
    assert "stopped by SIGINT after step 9; state saved" in capsys.readouterr().err
    assert saved_step(run) == 9
    assert signal.getsignal(signal.SIGINT) is handler  # the previous handler is back
    monkeypatch.undo()
    assert mc.main(["--resume", str(run)]) == 0
    assert_same_params(reference, run)


# -- 4. non-finite losses ----------------------------------------------------------------------
def test_nan_loss_stops_naming_task_and_step_and_keeps_the_state(reference, run_argv, tmp_path, monkeypatch, capsys):
    tasks = nan_at(monkeypatch, {7})
    run = tmp_path / "n" / "run"
    rc = mc.main(run_argv("n", *RESUMABLE))
    assert rc not in (0, None)
    line = assert_clean_error(capsys.readouterr().err, f"non-finite {tasks[0]} loss at step 7 (epoch 1)")
    assert str(run / "state") in line and "--skip_nonfinite" in line
    assert saved_step(run) == 6 and load_run_state(run)["step"] == 6  # the last good state loads
    assert not pred_files(tmp_path / "n")["sst-dev"].exists()
    monkeypatch.undo()
    assert mc.main(["--resume", str(run)]) == 0  # and nothing was lost
    assert_same_params(reference, run)


def test_skip_nonfinite_finishes_and_counts(run_argv, tmp_path, monkeypatch, capsys):
    nan_at(monkeypatch, {2, 5})
    assert mc.main(run_argv("s", *SMOKE, "--skip_nonfinite")) == 0
    assert json.loads((tmp_path / "s/run/summary.json").read_text())["skipped_steps"] == 2
    assert "2 steps skipped for non-finite losses" in capsys.readouterr().err
    assert all(p.is_file() for p in pred_files(tmp_path / "s").values())


# -- 5. outputs --------------------------------------------------------------------------------
def test_existing_run_folder_is_refused_and_left_untouched(smoke, run_argv, tmp_path, capsys):
    run = tmp_path / "x" / "run"
    shutil.copytree(smoke.run, run)
    before = snapshot(run)
    assert mc.main(run_argv("x", *SMOKE)) != 0
    line = assert_clean_error(capsys.readouterr().err, f"{run}: run folder exists and is not empty")
    assert "--overwrite" in line and f"--resume {run}" in line
    assert snapshot(run) == before
    assert not (tmp_path / "x" / "predictions").exists()


def test_overwrite_drops_the_previous_runs_state(reference, run_argv, tmp_path, monkeypatch, capsys):
    """A run started with --overwrite must not leave the old run's state/ and best/ for --resume
    to pick up: that would 'resume' someone else's run and report its results."""
    run = tmp_path / "o" / "run"
    shutil.copytree(reference, run)
    (run / "notes.txt").write_text("mine")
    nan_at(monkeypatch, {2})  # the new run stops before it saves anything
    assert mc.main(run_argv("o", *SMOKE, "--overwrite", "--save_every", "0")) == 1
    for stale in ("state", "best", "metrics.jsonl", "summary.json", "curves.png"):
        assert not (run / stale).exists(), stale
    assert (run / "notes.txt").read_text() == "mine"  # not ours: kept
    assert json.loads((run / "config.json").read_text())["save_every"] == 0
    monkeypatch.undo()
    capsys.readouterr()
    assert mc.main(["--resume", str(run)]) == 0  # starts again from step 0
    assert "resumed" not in capsys.readouterr().out


def test_disk_full_is_a_clear_error_and_keeps_the_last_checkpoint(run_argv, tmp_path, monkeypatch, capsys):
    real, calls = checkpoint.save_file, [0]

    def full(*a, **k):
        calls[0] += 1
        if calls[0] > 6:  # state/ holds 3 safetensors files: steps 1 and 2 are saved, 3 is not
            raise OSError(28, "No space left on device")
        return real(*a, **k)
    monkeypatch.setattr(checkpoint, "save_file", full)
    run = tmp_path / "w" / "run"
    rc = mc.main(run_argv("w", *RESUMABLE))
    assert rc not in (0, 2)
    line = assert_clean_error(capsys.readouterr().err, "No space left on device")
    assert str(run / "state") in line
    assert saved_step(run) == 2 and load_run_state(run)["step"] == 2
    assert not [p.name for p in run.iterdir() if p.name.endswith((".tmp", ".old"))]


def test_crash_between_the_renames_loses_nothing(tmp_path, monkeypatch):
    """write_folder moves the old folder aside before renaming the new one into place; a crash
    in between leaves only NAME.old, which readers must take back rather than miss."""
    model = torch.nn.Linear(3, 2)
    folder = tmp_path / "state"
    checkpoint.write_folder(folder, {"model.safetensors": model.state_dict()}, {"note.txt": "v1"})
    saved = {k: v.clone() for k, v in model.state_dict().items()}

    class Crash(BaseException):
        pass
    real = os.replace

    def crash(src, dst):
        if Path(src).name == "state.tmp":
            raise Crash
        return real(src, dst)
    monkeypatch.setattr(os, "replace", crash)
    with torch.no_grad():
        model.weight.add_(1)
    with pytest.raises(Crash):
        checkpoint.write_folder(folder, {"model.safetensors": model.state_dict()}, {"note.txt": "v2"})
    monkeypatch.undo()
    assert not folder.exists() and (tmp_path / "state.old").is_dir()  # the window
    fresh = torch.nn.Linear(3, 2)
    load_weights(fresh, folder)
    assert all(torch.equal(fresh.state_dict()[k], saved[k]) for k in saved)
    assert (folder / "note.txt").read_text() == "v1" and not (tmp_path / "state.old").exists()


# -- 6. untrusted files ------------------------------------------------------------------------
def _tampered(smoke, tmp_path, edit) -> Path:
    folder = tmp_path / "ckpt"
    shutil.copytree(smoke.run / "best", folder)
    (folder / "manifest.json").unlink()  # edited by hand: unverified, as folders saved before manifests
    args = json.loads((folder / "args.json").read_text())
    (folder / "args.json").write_text(json.dumps(edit(args)))
    return folder


def test_checkpoint_with_invalid_args_json_is_refused(smoke, run_argv, tmp_path):
    folder = _tampered(smoke, tmp_path, lambda a: {**a, "pooling": "evil"})
    res = cli(run_argv("e", "--checkpoint", folder, "--eval_only"))
    assert res.returncode == 2, res.stderr
    line = assert_clean_error(res.stderr, f"{folder / 'args.json'}: not a valid configuration")
    assert "'evil'" in line and "--pooling" in line
    assert [ln for ln in res.stderr.splitlines() if ln.strip()] == [line]  # one line, no usage dump
    assert_nothing_written(tmp_path / "e")


TAMPERED = {
    "not an object": (lambda a: [a], "args.json: not a valid configuration"),
    "unknown option": (lambda a: {**a, "evil": "x"}, "args.json: not a valid configuration"),
    "bad number": (lambda a: {**a, "max_length": "1; rm -rf /"}, "args.json: not a valid configuration"),
    "flag injected in a list": (lambda a: {**a, "tasks": ["sst", "--evil"]}, "args.json: not a valid configuration"),
    "shape mismatch": (lambda a: {**a, "para_head": "concat" if a["para_head"] == "cross" else "cross"},
                       "model.safetensors: does not match the model"),
}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_tampered_checkpoint_is_refused(case, smoke, run_argv, tmp_path, capsys):
    edit, where = TAMPERED[case]
    folder = _tampered(smoke, tmp_path, edit)
    assert mc.main(run_argv("e", "--checkpoint", folder, "--eval_only")) == 2
    assert_clean_error(capsys.readouterr().err, where)
    assert_nothing_written(tmp_path / "e")


class _RunsCode:
    """Unpickling this runs code: it writes the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('pwned')",)


def test_pickle_that_runs_code_is_refused(tiny_bert_dir, run_argv, tmp_path):
    folder = tmp_path / "evil_bert"
    folder.mkdir()
    for f in ("config.json", "vocab.txt"):
        shutil.copyfile(tiny_bert_dir / f, folder / f)
    marker = tmp_path / "pwned"
    torch.save({"embeddings.word_embeddings.weight": _RunsCode(marker)}, folder / "pytorch_model.bin")

    res = cli(run_argv("p", "--bert_model", folder))
    assert res.returncode == 2, res.stderr
    assert_clean_error(res.stderr, f"{folder / 'pytorch_model.bin'}: cannot read weights")
    assert not marker.exists()
    assert_nothing_written(tmp_path / "p")
    torch.load(folder / "pytorch_model.bin", weights_only=False)  # the payload is live:
    assert marker.read_text() == "pwned"  # an unguarded load would have run it


# -- the CS224N starter's command lines ---------------------------------------------------------
@pytest.mark.parametrize("starter", [
    ["--option", "pretrain", "--epochs", "1", "--lr", "1e-3", "--batch_size", "8", "--hidden_dropout_prob", "0.3"],
    ["--option", "finetune", "--epochs", "1", "--lr", "1e-5", "--batch_size", "8", "--hidden_dropout_prob", "0.3"],
    ["--fine-tune-mode", "last-linear-layer", "--epochs", "1", "--lr", "1e-3"],
    ["--fine-tune-mode", "full-model", "--epochs", "1", "--lr", "1e-5", "--seed", "11711"],
], ids=["option-pretrain", "option-finetune", "fine-tune-mode-last-linear-layer", "fine-tune-mode-full-model"])
def test_the_starters_documented_command_lines_run(starter, tiny_bert_dir, tiny_data_dir, tmp_path):
    """The starter's flags (its data and output paths, --seed, --epochs, --option or --fine-tune-mode,
    --batch_size, --hidden_dropout_prob, --lr) mean here what they mean there."""
    out = tmp_path / "s"
    argv = tiny_argv(tiny_bert_dir, tiny_data_dir, out, "--max_train_examples", "16", *starter)
    res = cli(argv)
    assert res.returncode == 0, res.stderr[-2000:]
    config = json.loads((out / "run" / "config.json").read_text())
    assert config["epochs"] == 1.0
    if "--hidden_dropout_prob" in starter:
        assert config["hidden_dropout_prob"] == 0.3
    pretrain = "pretrain" in starter or "last-linear-layer" in starter
    assert config["option"] == ("pretrain" if pretrain else "finetune")
    assert config["lr"] == float(starter[starter.index("--lr") + 1])
    assert all(p.is_file() for p in pred_files(out).values())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message where CUDA is absent")
def test_starter_use_gpu_without_cuda_is_one_clear_line(tiny_bert_dir, tiny_data_dir, tmp_path):
    res = cli(tiny_argv(tiny_bert_dir, tiny_data_dir, tmp_path, "--option", "finetune", "--use_gpu"))
    assert res.returncode == 2
    assert_clean_error(res.stderr, "--use_gpu given but CUDA is not available")
