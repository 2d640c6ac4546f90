"""What a run leaves behind: checkpoints, metrics, learning curves, the summary table.

    RUN_DIR/config.json        resolved arguments (replay with --config)
    RUN_DIR/metrics.jsonl      one line of dev metrics and mean train losses per evaluation
    RUN_DIR/train_log.jsonl    mean train loss per task every --log_every steps (tracking.py)
    RUN_DIR/dev_scores.npz     per-example dev scores of the best weights (compare.py, analysis.py)
    RUN_DIR/analysis.md, .png  error analysis of those scores (analysis.py)
    RUN_DIR/best/              best-by-dev-overall weights: model.safetensors, config.json (BERT),
                               args.json, vocab.txt, tokenizer_config.json (self-contained)
    RUN_DIR/state/             the latest training state, for --resume (safetensors + JSON)
    RUN_DIR/curves.png         train loss per task and dev metrics against the step
    RUN_DIR/tensorboard/       TensorBoard events (--report_to tensorboard)
    RUN_DIR/summary.json       best epoch's metrics, wall time, throughput
    RUN_DIR/.lock              held by the process writing the run while it runs (hold_run_dir)

best/ and state/ each list their files with a sha256 in manifest.json (checkpoint.py).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from torch import nn

from base_bert import CheckpointError, resolve_model_dir
from checkpoint import (
    optimizer_from_parts,
    optimizer_to_parts,
    read_json,
    read_tensors,
    recover_folder,
    rng_state,
    set_rng_state,
    verify_folder,
    write_folder,
)

try:
    import fcntl
except ImportError:  # no fcntl (Windows): runs go unlocked, as they did before locks existed
    fcntl = None


def save_best(model, args, folder: Path):
    """Weights + JSON configs + the vocabulary: loadable with no other file and no pickle."""
    tok_dir = resolve_model_dir(args.bert_model)
    files = {f: tok_dir / f for f in ("vocab.txt", "tokenizer_config.json") if (tok_dir / f).is_file()}
    write_folder(folder, {"model.safetensors": model.state_dict()},
                 {"config.json": json.dumps(model.bert.config.to_dict(), indent=2),
                  "args.json": json.dumps(vars(args), indent=2)}, files)


def load_weights(model: nn.Module, folder: Path):
    recover_folder(folder)
    verify_folder(folder)
    file = Path(folder) / "model.safetensors"
    state = read_tensors(file)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a tensor of the wrong shape (strict=False does not cover that)
        msg = " ".join(str(e).split())
        raise CheckpointError(f"{file}: does not match the model ({msg[:300]})") from None
    if missing or unexpected:
        raise CheckpointError(f"{file}: does not match the model (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]})")


def save_state(folder: Path, model, optimizer, progress: dict, extra: dict | None = None):
    """Everything --resume needs: weights, optimizer moments, RNG states, loop progress, and
    `extra` safetensors files ({file name: tensors}, e.g. the --ema weight average)."""
    opt_tensors, opt_meta = optimizer_to_parts(optimizer)
    rng_tensors, rng_meta = rng_state()
    write_folder(folder, {"model.safetensors": model.state_dict(),
                          "optimizer.safetensors": opt_tensors, "rng.safetensors": rng_tensors,
                          **(extra or {})},
                 {"trainer.json": json.dumps({"progress": progress, "optimizer": opt_meta,
                                              "rng": rng_meta})})


def load_state(folder: Path, model, optimizer) -> dict:
    folder = Path(folder)
    recover_folder(folder)
    verify_folder(folder)
    meta = read_json(folder / "trainer.json")
    load_weights(model, folder)
    optimizer_from_parts(optimizer, read_tensors(folder / "optimizer.safetensors"), meta["optimizer"])
    set_rng_state(read_tensors(folder / "rng.safetensors"), meta["rng"])
    return meta["progress"]


# What a run writes into its folder (with the .tmp/.old siblings of its atomic writes).
RUN_ARTIFACTS = ("config.json", "mlm.json", "metrics.jsonl", "summary.json", "curves.png", "best", "state",
                 "train_log.jsonl", "dev_scores.npz", "analysis.md", "analysis.png", "tensorboard")


def clear_run(run_dir: Path):
    """Remove a previous run's artifacts (and nothing else) before a fresh run in `run_dir`, so
    that --resume can never pick up another run's state, best weights or metrics."""
    for name in RUN_ARTIFACTS:
        for path in (run_dir / name, run_dir / f"{name}.tmp", run_dir / f"{name}.old"):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()


# -- one writer per run folder ------------------------------------------------------------------
LOCK = ".lock"


class RunFolderBusy(RuntimeError):
    """Another process holds the run folder's lock."""


def alive(pid: str) -> bool:
    """Whether process PID exists on this machine."""
    try:
        os.kill(int(pid), 0)
    except PermissionError:  # another user's process: it exists
        return True
    except (ValueError, OverflowError, ProcessLookupError):
        return False
    return True


def _holder_pid(fd: int, wait: float = 1.0) -> str:
    """The pid the lock's holder wrote. A holder that has just taken the lock writes it a moment
    later (truncate, then one write of "PID\n"): until then the file is empty, partial, or still
    names the killed run whose stale file it took over. So the file is read again until it names
    a live process or `wait` seconds pass; then the last whole pid read (a holder in another pid
    namespace looks dead from here), or "unknown"."""
    deadline = time.monotonic() + wait
    while True:
        text = os.pread(fd, 32, 0).decode(errors="replace")
        whole = text.endswith("\n")
        if (whole and alive(text.strip())) or time.monotonic() > deadline:
            return text.strip() if whole and text.strip() else "unknown"
        time.sleep(0.005)


def _lock(path: Path, waiting: str | None = None) -> int:
    """An open descriptor of `path` holding an exclusive flock, the holder's pid written in it.
    Held by another process: RunFolderBusy, or with `waiting`, that note on stderr and a wait."""
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # a run that ended with nothing written took its folder: remake it
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting is None:
                pid = _holder_pid(fd)
                os.close(fd)
                raise RunFolderBusy(f"{path.parent}: another run is writing this folder (pid {pid}); "
                                    "choose another --out_dir") from None
            print(waiting, file=sys.stderr)
            fcntl.flock(fd, fcntl.LOCK_EX)
        # A holder removes the file on release; if it did so between our open and our flock, we
        # hold a file no one else will open: start again with the one at `path` now.
        try:
            current = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            current = False
        if current:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)


@contextmanager
def hold_run_dir(run_dir: Path):
    """Hold RUN_DIR/.lock while the body runs, so that two runs never write one folder: the next
    one is refused at once (RunFolderBusy) rather than mixing its checkpoints with ours. The OS
    drops the lock when the process ends however it ends, so a killed run's stale file is simply
    taken over. On release the file goes, and so do the folders made for it if nothing else was
    written into them (a run refused before writing anything leaves nothing behind)."""
    run_dir = Path(run_dir)
    made = [p for p in (run_dir, *run_dir.parents) if not p.exists()]  # deepest first
    fd = None
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = _lock(run_dir / LOCK) if fcntl else None
        yield run_dir
    finally:
        if fd is not None:
            (run_dir / LOCK).unlink(missing_ok=True)  # while still held: the next run makes a new one
            os.close(fd)
        for folder in made:
            try:
                folder.rmdir()
            except OSError:  # not empty: a run's outputs, or another run's lock
                break


@contextmanager
def waiting_lock(path: Path, waiting: str):
    """Hold an exclusive lock on `path` while the body runs; while another process holds it, print
    `waiting` and wait: for work two processes must not do twice (training one cached encoder).
    The OS drops the lock when the process ends, so a killed holder leaves no stale lock. The
    file stays on release (harmless: the next holder takes it over). Unlocked where fcntl is
    missing or the filesystem refuses locks (some network mounts: a one-line note)."""
    fd = None
    if fcntl is not None:
        try:
            fd = _lock(path, waiting)
        except OSError as e:
            print(f"cannot lock {path} ({e.strerror}); going on unlocked", file=sys.stderr)
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)


def write_metrics(history: list[dict], path: Path):
    write_folder_file(path, "".join(json.dumps(h) + "\n" for h in history))


def write_folder_file(path: Path, text: str):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def summary_table(history: list[dict], best: dict, wall: float, examples: int) -> str:
    train_s = sum(h["train_s"] for h in history)
    rows = [("SST accuracy", f"{best['sst_acc']:.4f}"), ("PARA accuracy", f"{best['para_acc']:.4f}"),
            ("STS Pearson r", f"{best['sts_r']:.4f}"), ("overall", f"{best['overall']:.4f}"),
            ("best evaluation", f"step {best['step']} (epoch {best['epoch']:g})"),
            ("evaluations", str(len(history))),
            ("WiSE-FT alpha", str(best.get("wise_alpha", "1 (fine-tuned weights)"))),
            ("wall time", f"{wall / 60:.1f} min"),
            ("training examples/s", f"{examples / max(1e-9, train_s):.1f}")]
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{w}}  {v}" for k, v in rows)
