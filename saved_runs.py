"""--eval_only: dev metrics and the six prediction files from saved runs, trained nothing.

    python multitask_classifier.py --eval_only --checkpoint runs/X                 # one run
    python multitask_classifier.py --eval_only --checkpoint runs/X runs/Y runs/Z   # their ensemble
    python multitask_classifier.py --eval_only --checkpoint runs/X --pair_orders predict \\
        --scores_out runs/X-predict --no_predictions   # a prediction-time change, scored for compare.py
    python multitask_classifier.py --eval_only --checkpoint runs/X --raw_weights \\
        --scores_out runs/X-raw --no_predictions       # an --swa run without its average
    python multitask_classifier.py --eval_only --checkpoint runs/X runs/Y runs/Z \\
        --teacher_out runs/teacher.npz --no_predictions  # the ensemble's training-set scores (--distill)

A prediction-time change (`--pair_orders one` or `predict` for a run trained on one order,
`--mc_dropout K`) changes no weight, so its fairest test is the same weights scored both ways: `--scores_out DIR`
writes the evaluation as a run folder (config.json, dev_scores.npz, summary.json) that compare.py
and the sweeps read like any run, paired example by example with the run it was scored from.

A weight average (--ema, --swa) changes no training step: `--raw_weights` scores a run's own
weights at its last step (state/) instead of its best evaluation's, so an --swa run and its raw
weights are one training with and without the average, paired on the same trajectory.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from batching import TASKS
from checkpoint import recover_folder, verify_folder
from distill import save_teacher
from evaluation import decide, dev_metrics, metrics_line, save_dev_scores, scores, write_prediction_files
from multitask_classifier import build_model, encode_all, load_all, prepare_run_dir
from options import saved_args
from quantize import quantize_encoder
from run_folder import load_weights
from tokenizer import BertTokenizer
from trainer import RunError


def at_prediction(margs: argparse.Namespace, args: argparse.Namespace) -> argparse.Namespace:
    """The saved run's arguments with the prediction-time settings the command line asks for.
    --pair_orders one and predict train alike, so a run trained on one order can predict either
    way; `both` trains on both orders and cannot be asked for here. Not given (None): the run's own.
    --raw_weights and --int8 are recorded too, so that compare.py tells those scores from the run's own."""
    if args.pair_orders == "both":
        raise RunError("--pair_orders both changes training; with --eval_only only one or predict "
                       "applies (how a run trained on one order predicts)", code=2)
    asked = {k: True for k in ("raw_weights", "int8") if getattr(args, k, False)}
    if getattr(args, "mc_dropout", None) is not None:
        asked["mc_dropout"] = args.mc_dropout
    if args.pair_orders is not None and margs.pair_orders in ("one", "predict"):
        asked["pair_orders"] = args.pair_orders
    return argparse.Namespace(**{**vars(margs), **asked}) if asked else margs


def load_run(path, args, device):
    """(model on `device`, the arguments it predicts with, its tokenizer) of a run folder, its best/,
    or a folder written by export.py. --raw_weights: a run folder's weights at its last step."""
    run = folder = Path(path)
    recover_folder(folder / "best")  # a crash while best/ was being replaced leaves best.old
    folder = folder / "best" if (folder / "best").is_dir() else folder
    if args.raw_weights and not (run / "best").is_dir():
        raise RunError(f"{run}: --raw_weights reads a run folder (its best/ and state/), not a folder "
                       "of saved weights alone", code=2)
    verify_folder(folder)  # before reading any of it: args.json, config.json, weights, vocabulary
    if (folder / "heads.json").is_file():  # a folder written by export.py
        from export import load_exported  # imported here: export.py imports multitask_classifier
        model, margs = load_exported(folder)
    else:
        margs = saved_args(folder, "args.json")
        if args.raw_weights and margs.branches > 1:
            raise RunError(f"{run}: a --branches run saves no state after its fork, so its weights at the "
                           "last step are not kept (best/ holds the branches' mean when it scored best)", code=2)
        model = build_model(margs, checkpoint=folder)
        load_weights(model, raw_weights(run) if args.raw_weights else folder)
    margs = at_prediction(margs, args)
    if args.int8:
        quantize_encoder(model)
    return model.to(device), margs, BertTokenizer.from_pretrained(str(folder), max_length=margs.max_length)


def raw_weights(run: Path) -> Path:
    """The folder of a run's weights at its last step: state/, what --resume continues from. They
    are the weights training itself moved (--ema and --swa average them only for evaluation), so
    an averaging run scored from them is the same run without the average, paired on one
    trajectory: the average changes no training step. For a finished run, the last step's."""
    state = run / "state"
    recover_folder(state)
    if not (state / "model.safetensors").is_file():
        raise RunError(f"{run}: no state/ to read the raw weights from (a run keeps it after its "
                       "last step)", code=2)
    return state


def eval_only(args, device, precision) -> dict:
    """Evaluate saved runs on dev and write the six prediction files. Given several runs, predict
    with their ensemble: each task's scores (SST class probabilities, PARA probability, STS score)
    averaged over the runs, then decided as for one model. Each run reads the data with its own
    tokenizer and pair encoding, so runs with different heads can be mixed."""
    if args.int8 and device.type != "cpu":
        raise RunError("--int8 is CPU inference (int8 products with int32 sums); on a GPU, --precision "
                       "bf16 or fp16 is the fast path", code=2)
    if args.scores_out and len(args.checkpoint) > 1:
        raise RunError("--scores_out scores one run (an ensemble's dev scores: compare.py --ensemble)", code=2)
    t0 = time.time()
    teach = [(t, "train") for t in TASKS] if args.teacher_out else []  # --teacher_out scores these too
    raw = load_all(argparse.Namespace(**{**vars(args), "tasks": [t for t, _ in teach]}))
    keys = [(t, s) for t in TASKS for s in ("dev", "test")]
    splits = (keys if not args.no_predictions else [(t, "dev") for t in TASKS]) + teach
    mean = {k: 0.0 for k in splits}
    for path in args.checkpoint:
        model, margs, tokenizer = load_run(path, args, device)
        # a run that predicts from both pair orders (--pair_orders predict) teaches from both as well
        orders = "both" if teach and margs.pair_orders == "predict" else margs.pair_orders
        data = encode_all(raw, tokenizer, argparse.Namespace(**{**vars(margs), "pair_orders": orders}))
        dev = {t: data[t, "dev"] for t in TASKS}
        member = {k: scores(model, data[k], args.eval_batch_size, device, f"{k[1]} {k[0]}", precision,
                            margs.mc_dropout) for k in splits}
        if len(args.checkpoint) > 1:
            print(f"{path}: " + metrics_line(dev_metrics({t: decide(t, member[t, "dev"]) for t in TASKS}, dev)))
        mean = {k: mean[k] + member[k] / len(args.checkpoint) for k in splits}
    if teach:
        save_teacher(args.teacher_out, {t: mean[t, s] for t, s in teach}, {t: data[t, s].ids for t, s in teach})
        print(f"teacher scores of {', '.join(f'{len(data[k])} {k[0]}' for k in teach)} training examples: "
              f"{args.teacher_out}")
    preds = {k: decide(k[0], v) for k, v in mean.items() if k not in teach}
    metrics = dev_metrics({t: preds[t, "dev"] for t in TASKS}, dev)
    if not args.no_predictions:
        write_prediction_files(preds, data, args)
    if args.scores_out:
        write_scores_folder(Path(args.scores_out), args, margs, {t: mean[t, "dev"] for t in TASKS},
                            dev, raw, metrics, time.time() - t0)
    print(("ensemble dev: " if len(args.checkpoint) > 1 else "dev: ") + metrics_line(metrics))
    return metrics


def write_scores_folder(folder: Path, args, margs, dev_scores: dict, dev: dict, raw: dict, metrics: dict,
                        seconds: float):
    """The evaluation of one saved run as a run folder of its own: config.json (the run's
    configuration with the prediction-time settings applied: compare.py groups it by that),
    dev_scores.npz, and summary.json, whose wall time is the scored run's (what the model cost to
    train; the scoring's own seconds are `eval_s`)."""
    source = Path(args.checkpoint[0])
    summary = source / "summary.json"
    wall = json.loads(summary.read_text()).get("wall_s") if summary.is_file() else None
    with prepare_run_dir(argparse.Namespace(out_dir=str(folder), overwrite=args.overwrite, resume="")) as run_dir:
        config = {**vars(margs), "out_dir": str(run_dir), "checkpoint": [str(source)], "eval_only": True}
        (run_dir / "config.json").write_text(json.dumps(config, indent=2))
        save_dev_scores(run_dir / "dev_scores.npz", dev_scores, dev, {t: raw[t, "dev"] for t in TASKS})
        (run_dir / "summary.json").write_text(json.dumps(
            {"best": metrics, "wall_s": wall, "eval_s": seconds, "scored_from": str(source)}, indent=2))
