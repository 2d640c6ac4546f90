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
"""
from __future__ import annotations

import json
import shutil
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
    write_folder,
)


def save_best(model, args, folder: Path):
    """Weights + JSON configs + the vocabulary: loadable with no other file and no pickle."""
    tok_dir = resolve_model_dir(args.bert_model)
    files = {f: tok_dir / f for f in ("vocab.txt", "tokenizer_config.json") if (tok_dir / f).is_file()}
    write_folder(folder, {"model.safetensors": model.state_dict()},
                 {"config.json": json.dumps(model.bert.config.to_dict(), indent=2),
                  "args.json": json.dumps(vars(args), indent=2)}, files)


def load_weights(model: nn.Module, folder: Path):
    recover_folder(folder)
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


def save_state(folder: Path, model, optimizer, progress: dict):
    """Everything --resume needs: weights, optimizer moments, RNG states, loop progress."""
    opt_tensors, opt_meta = optimizer_to_parts(optimizer)
    rng_tensors, rng_meta = rng_state()
    write_folder(folder, {"model.safetensors": model.state_dict(),
                          "optimizer.safetensors": opt_tensors, "rng.safetensors": rng_tensors},
                 {"trainer.json": json.dumps({"progress": progress, "optimizer": opt_meta,
                                              "rng": rng_meta})})


def load_state(folder: Path, model, optimizer) -> dict:
    folder = Path(folder)
    recover_folder(folder)
    meta = read_json(folder / "trainer.json")
    load_weights(model, folder)
    optimizer_from_parts(optimizer, read_tensors(folder / "optimizer.safetensors"), meta["optimizer"])
    set_rng_state(read_tensors(folder / "rng.safetensors"), meta["rng"])
    return meta["progress"]


# What a run writes into its folder (with the .tmp/.old siblings of its atomic writes).
RUN_ARTIFACTS = ("config.json", "metrics.jsonl", "summary.json", "curves.png", "best", "state",
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
