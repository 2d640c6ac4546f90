"""Multitask fine-tuning of one BERT on SST-5, Quora paraphrase and STS; evaluation; predictions.

    python multitask_classifier.py                  # train on the defaults, evaluate, predict
    python multitask_classifier.py --checkpoint runs/X --eval_only   # predict from a saved run
    python multitask_classifier.py --checkpoint runs/X runs/Y runs/Z --eval_only   # their ensemble

An *epoch* is a fixed number of optimizer steps (--steps_per_epoch). By default it is the number
of batches one pass over every task's training set takes (local updates), or that number divided
by the number of tasks (global updates, where one step takes a batch of every task); each step's
task comes from the sampler (samplers.py), so an epoch is not an exact pass over every task.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

import distributed
from adversarial import Capture, fgsm_loss, smart_regularizer
from base_bert import CheckpointError
from batching import TASKS, TaskStream, encode_task
from bert import BertModel
from checkpoint import read_json, recover_folder
from config import BertConfig, ConfigError
from datasets import DataError, load
from evaluation import (
    NUM_SENTIMENTS,
    decide,
    dev_metrics,
    evaluate,
    metrics_line,
    predict,
    scores,
    write_predictions,
)
from heads import cosine_similarity_score, mlp, pair_features, pool
from losses import mnrl_loss
from pal import PAL
from pcgrad import pcgrad_backward
from run_folder import (
    clear_run,
    load_state,
    load_weights,
    plot_curves,
    save_best,
    save_state,
    summary_table,
    write_metrics,
)
from samplers import KINDS, TaskSampler
from tokenizer import BertTokenizer
from trainer import StopRequest, build_optimizer, lr_factor
from wise import choose_alpha, snapshot


class RunError(RuntimeError):
    """A run that cannot go on; the message says why and what to do. `code` is the exit status."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


class MultitaskBERT(nn.Module):
    """Shared BERT encoder, one head per task."""

    def __init__(self, bert: BertModel, args):
        super().__init__()
        self.bert, self.args = bert, args
        H, p = bert.config.hidden_size, args.hidden_dropout_prob
        self.sst_head = mlp(H, H, NUM_SENTIMENTS, p)
        n_feats = 2 if args.para_features == "concat" else 4
        self.para_head = mlp(H if args.para_head == "cross" else n_feats * H, H, 1, p)
        self.sts_head = {"cross": mlp(H, H, 1, p), "concat": mlp(n_feats * H, H, 1, p)}.get(args.sts_head)
        # STS score = a·cos(u, v) + b. The seed fixes a = b = 2.5, which asks unrelated sentences
        # for cos = -1 and bends the pretrained geometry; learned, the head absorbs the scale.
        self.sts_affine = nn.Parameter(torch.tensor([2.5, 2.5]), requires_grad=args.sts_scale != "fixed")
        cfg = bert.config
        self.pal = PAL(TASKS, H, cfg.num_hidden_layers, args.pal_dim, args.pal_heads,
                       cfg.attention_probs_dropout_prob) if args.pal else None

    # -- encoding --------------------------------------------------------------------------
    def embed(self, task: str, inputs: dict, hook=None) -> torch.Tensor:
        """Pooled sentence embeddings [B, H]. `hook(x)` may replace the embedding output
        (adversarial training perturbs it there); with PAL the encoder depends on the task."""
        x, layout = self.bert.embed(inputs["input_ids"], inputs["attention_mask"],
                                    inputs["token_type_ids"])
        if hook is not None:
            x = hook(x)
        out = self.bert.encode(x, layout, None if self.pal is None else self.pal.sides(task))
        return pool(out["last_hidden_state"], inputs["attention_mask"], out["pooler_output"],
                    self.args.pooling)

    def embed_pair(self, task: str, batch: dict, hook=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings of both sentences of a bi-encoded pair, in one encoder call."""
        a, b = batch["a"], batch["b"]
        T = max(a["input_ids"].shape[1], b["input_ids"].shape[1])
        both = {k: torch.cat([F.pad(a[k], (0, T - a[k].shape[1])),
                              F.pad(b[k], (0, T - b[k].shape[1]))]) for k in a}
        e = self.embed(task, both, hook)
        return e[:len(a["input_ids"])], e[len(a["input_ids"]):]

    # -- task outputs ------------------------------------------------------------------------
    def forward(self, task: str, batch: dict, hook=None) -> dict:
        """Raw outputs of `task`: logits (SST [B, 5], PARA [B]) or scores (STS [B], 0-5),
        plus the sentence embeddings used (`u`, and `v` for bi-encoded pairs)."""
        if task == "sst":
            u = self.embed(task, batch["a"], hook)
            return {"out": self.sst_head(u), "u": u}
        cross = (self.args.para_head if task == "para" else self.args.sts_head) == "cross"
        if cross:
            u = self.embed(task, batch["a"], hook)
            head = self.para_head if task == "para" else self.sts_head
            y = head(u).squeeze(-1)
            return {"out": y if task == "para" else 5.0 * torch.sigmoid(y), "u": u}
        u, v = self.embed_pair(task, batch, hook)
        if task == "para":
            logit = self.para_head(pair_features(u, v, self.args.para_features)).squeeze(-1)
            if self.args.para_symmetric:  # paraphrase is symmetric: average both orders
                logit = 0.5 * (logit + self.para_head(pair_features(v, u, self.args.para_features)).squeeze(-1))
            return {"out": logit, "u": u, "v": v}
        if self.args.sts_head == "concat":  # the seed's baseline: a regressor on the pair features
            y = self.sts_head(pair_features(u, v, self.args.para_features)).squeeze(-1)
            return {"out": 5.0 * torch.sigmoid(y), "u": u, "v": v}
        return {"out": cosine_similarity_score(u, v, *self.sts_affine), "u": u, "v": v}

    def scores(self, task: str, batch: dict) -> torch.Tensor:
        """What evaluation reads: SST class probabilities [B, 5], PARA P(paraphrase) [B], STS
        score [B] in [0, 5] (a learned a·cos + b may leave the labels' range)."""
        out = self.forward(task, batch)["out"].float()
        if task == "sst":
            return out.softmax(-1)
        if task == "para":
            return torch.sigmoid(out)
        return out.clamp(0.0, 5.0)

    @staticmethod
    def to_device(batch: dict, device) -> dict:
        if str(device) == "cpu":
            return batch
        return {k: MultitaskBERT.to_device(v, device) if isinstance(v, dict)
                else v.pin_memory().to(device, non_blocking=True) for k, v in batch.items()}


def task_loss(model: MultitaskBERT, task: str, batch: dict, hook=None) -> tuple[torch.Tensor, dict]:
    """The task's own loss: cross-entropy (SST), BCE on the logit (PARA), MSE on the score (STS)."""
    out = model(task, batch, hook)
    y = batch["labels"]
    if task == "sst":
        loss = F.cross_entropy(out["out"].float(), y)
    elif task == "para":
        loss = F.binary_cross_entropy_with_logits(out["out"].float(), y.float())
    else:
        loss = F.mse_loss(out["out"].float(), y)
    return loss, out


def training_loss(model: MultitaskBERT, task: str, batch: dict, args) -> torch.Tensor:
    """The task loss plus whichever extensions are switched on."""
    captured = Capture() if (args.fgsm or args.smart) else None
    clean, out = task_loss(model, task, batch, captured)
    loss = clean
    if args.mnrl:
        extra = mnrl_loss(task, out, batch["labels"])
        if extra is not None:
            loss = loss + args.mnrl_wt * extra
    if args.fgsm:
        loss = loss + fgsm_loss(model, task, batch, clean, captured, args.fgsm_eps, task_loss)
    if args.smart:
        loss = loss + args.smart_wt * smart_regularizer(
            model, task, batch, out["out"], captured.x, args.smart_eps, steps=args.smart_steps)
    return loss


# -- data --------------------------------------------------------------------------------------
def data_paths(args) -> dict:
    """(task, split) -> path of every file the run reads."""
    return {(t, s): getattr(args, f"{t}_{s}") for t in TASKS for s in ("train", "dev", "test")}


def load_all(args) -> dict:
    """Read and validate every file before any training; one bad file stops the run."""
    tasks = set(args.tasks)
    out = {}
    for (task, split), path in data_paths(args).items():
        if split == "train" and task not in tasks:
            continue
        res = load(path, task, labelled=split != "test", strict=args.strict)
        if res.bad_rows:
            print(res.report(), file=sys.stderr)
        examples = res.examples
        if split == "train" and args.max_train_examples:
            examples = examples[:args.max_train_examples]
        out[task, split] = examples
    return out


def encode_all(raw: dict, tokenizer: BertTokenizer, args) -> dict:
    data, truncated = {}, 0
    for (task, split), examples in raw.items():
        cross = (task == "para" and args.para_head == "cross") or (task == "sts" and args.sts_head == "cross")
        data[task, split] = encode_task(task, examples, tokenizer, cross=cross)
        truncated += data[task, split].truncated
    if truncated:
        print(f"note: {truncated} sequences were longer than --max_length {args.max_length} "
              "tokens and were truncated", file=sys.stderr)
    return data


# -- model, optimizer, schedule ----------------------------------------------------------------
def build_model(args, checkpoint: Path | None = None) -> MultitaskBERT:
    if checkpoint is None:
        bert = BertModel.from_pretrained(args.bert_model, hidden_dropout_prob=args.hidden_dropout_prob)
    else:
        bert = BertModel(BertConfig.from_json(checkpoint / "config.json"))
    bert.unpad = not args.no_unpad
    # Frozen word embeddings keep the pretrained vocabulary as it is (rows of words never seen in
    # training would otherwise only decay) and skip 11.7M of MiniLM's 22.7M optimizer updates.
    bert.embeddings.word_embeddings.weight.requires_grad_(not args.freeze_embeddings)
    # Freezing the bottom layers (and with them the whole embedding block) keeps their general
    # features and ends the backward pass early: a step costs about (L + 2(L - k)) / 3L of a full one.
    if not 0 <= args.freeze_layers <= len(bert.layers):
        raise RunError(f"--freeze_layers {args.freeze_layers}: the encoder has {len(bert.layers)} layers")
    if args.freeze_layers:
        for module in [bert.embeddings, *bert.layers[:args.freeze_layers]]:
            module.requires_grad_(False)
    return MultitaskBERT(bert, args)


def write_all_predictions(preds: dict, data: dict, args):
    """The six leaderboard files from `preds`: (task, split) -> predictions in file order."""
    for (task, split), p in preds.items():
        write_predictions(getattr(args, f"{task}_{split}_out"), task, data[task, split].ids, p)


@torch.no_grad()
def fit_sts_scale(model: MultitaskBERT, data, batch_size: int, device, n: int = 2000):
    """Least-squares a, b in score = a·cos + b on up to n training pairs (a linear probe first,
    as in LP-FT, Kumar et al. 2022): fine-tuning then starts from a calibrated head."""
    sub = data.subset(n)
    # score = cos + 1 lies in [0, 2], inside the [0, 5] clamp of predictions, so no cosine is cut.
    model.sts_affine.copy_(torch.tensor([1.0, 1.0]))
    cos = torch.from_numpy(predict(model, sub, batch_size, device, desc=False)).double() - 1.0
    y = sub.labels.double()
    a = ((cos - cos.mean()) * (y - y.mean())).sum() / (cos - cos.mean()).square().sum().clamp(min=1e-12)
    model.sts_affine.copy_(torch.stack([a, y.mean() - a * cos.mean()]).float())
    print(f"STS head fitted on {len(sub)} training pairs: score = {a.item():.3f}·cos + "
          f"{model.sts_affine[1].item():.3f}")


def prepare_run_dir(args) -> Path:
    run_dir = Path(args.out_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(f"{run_dir}: exists and is not a folder")
    if run_dir.exists() and any(run_dir.iterdir()) and not (args.overwrite or args.resume):
        raise RunError(f"{run_dir}: run folder exists and is not empty; pass --overwrite to replace "
                       f"it or --resume {run_dir} to continue it")
    return run_dir


def train(args, device) -> dict:
    t_start = time.time()
    rank, world = distributed.setup(device)
    main_rank = rank == 0
    raw = load_all(args)  # validation first: a bad file stops here, before anything is written
    tokenizer = BertTokenizer.from_pretrained(args.bert_model, max_length=args.max_length)
    data = encode_all(raw, tokenizer, args)
    run_dir = prepare_run_dir(args)
    model = build_model(args).to(device)
    distributed.broadcast_parameters(model)
    pretrained = snapshot(model.bert) if args.wise_alphas else None
    n_params = sum(p.numel() for p in model.parameters())
    if model.pal is not None:
        print(f"PAL adds {model.pal.num_parameters():,} parameters (dim {args.pal_dim})")

    tasks = list(args.tasks)
    sizes = {t: len(data[t, "train"]) for t in tasks}
    bs = {t: getattr(args, f"{t}_batch_size") or args.batch_size for t in tasks}
    n_batches = sum(math.ceil(sizes[t] / bs[t]) for t in tasks)
    steps = args.steps_per_epoch or max(1, round(n_batches / (len(tasks) if args.update == "global" else 1)))
    total, warmup = steps * args.epochs, int(args.warmup_ratio * steps * args.epochs)
    streams = {t: TaskStream(data[t, "train"], bs[t], args.seed, not args.no_bucket, rank, world)
               for t in tasks}
    sampler = TaskSampler(sizes, args.sampling, args.sample_wt, args.epochs, args.seed)
    optimizer = build_optimizer(model, args)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    shared = [p for p in model.bert.parameters() if p.requires_grad]
    dev = {t: data[t, "dev"] for t in TASKS}

    # Loop progress: everything a resumed run needs besides weights, optimizer and RNG states.
    prog = {"step": 0, "history": [], "best": None, "examples": 0, "skipped": 0,
            "loss_sum": {t: 0.0 for t in tasks}, "loss_n": {t: 0 for t in tasks},
            "train_s": 0.0, "streams": {}}
    for sub in ("state", "best"):  # a crash mid-save may have left only state.old / best.old
        recover_folder(run_dir / sub)
    if args.sts_scale == "fit" and "sts" in tasks and args.sts_head == "cosine" and not args.resume:
        fit_sts_scale(model, data["sts", "train"], args.eval_batch_size, device)
    if args.resume and (run_dir / "state").is_dir():
        prog = load_state(run_dir / "state", model, optimizer)
        for t, st in prog["streams"].items():
            streams[t].load_state_dict(st)
        print(f"resumed {run_dir} at step {prog['step']} of {total}")
    elif main_rank:
        run_dir.mkdir(parents=True, exist_ok=True)
        clear_run(run_dir)  # --overwrite (or a --resume with no state yet): start afresh
        (run_dir / "config.json").write_text(json.dumps(vars(args), indent=2))
    print(f"training {', '.join(f'{t}: {sizes[t]}' for t in tasks)} examples; {args.epochs} epochs "
          f"of {steps} steps ({args.update} updates, {args.sampling} sampling); {n_params:,} parameters")

    def checkpoint():
        prog["streams"] = {t: s.state_dict() for t, s in streams.items()}
        if main_rank:
            save_state(run_dir / "state", model, optimizer, prog)

    bar, plan = None, None
    try:
        with StopRequest() as stop:
            while prog["step"] < total:
                epoch, i = divmod(prog["step"], steps)
                if bar is None:
                    plan = sampler.epoch_tasks(epoch, steps)
                    bar = tqdm(total=steps, initial=i, desc=f"epoch {epoch + 1}/{args.epochs}", disable=not main_rank)
                t0 = time.time()
                model.train()
                for g, lr in zip(optimizer.param_groups, base_lrs):
                    g["lr"] = lr * lr_factor(prog["step"], total, warmup)

                # One optimizer step: a batch of one task (local) or of every task (global).
                losses = {}
                for t in (tasks if args.update == "global" else [plan[i]]):
                    batch = model.to_device(next(streams[t]), device)
                    prog["examples"] += len(batch["index"]) * world
                    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
                        losses[t] = training_loss(model, t, batch, args)
                bad = [t for t, l in losses.items() if not torch.isfinite(l)]
                if bad and not args.skip_nonfinite:
                    raise RunError(f"non-finite {bad[0]} loss at step {prog['step'] + 1} (epoch {epoch + 1}); "
                                   f"the last good state is in {run_dir / 'state'} "
                                   "(--skip_nonfinite skips such batches)")
                if bad:
                    prog["skipped"] += 1
                else:
                    if args.pcgrad:
                        pcgrad_backward(list(losses.values()), shared,
                                        random.Random(f"{args.seed}-{prog['step']}"))  # resumable
                    else:
                        sum(losses.values()).backward()
                    distributed.average_gradients(model)
                    if args.grad_clip:
                        nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
                    optimizer.step()
                    for t, l in losses.items():
                        prog["loss_sum"][t] += distributed.mean_over_ranks(l)
                        prog["loss_n"][t] += 1
                optimizer.zero_grad(set_to_none=True)
                prog["step"] += 1
                prog["train_s"] += time.time() - t0
                bar.update(1)
                bar.set_postfix({t: f"{prog['loss_sum'][t] / max(1, prog['loss_n'][t]):.3f}" for t in tasks})

                if i + 1 == steps:  # end of epoch: evaluate, keep the best weights
                    bar.close()
                    bar = None
                    distributed.assert_in_sync(model)
                    metrics, _ = evaluate(model, dev, args.eval_batch_size, device)
                    record = {"epoch": epoch + 1, **metrics, "train_s": prog["train_s"],
                              **{f"loss_{t}": prog["loss_sum"][t] / prog["loss_n"][t]
                                 for t in tasks if prog["loss_n"][t]}}
                    prog["history"].append(record)
                    prog.update(loss_sum={t: 0.0 for t in tasks}, loss_n={t: 0 for t in tasks}, train_s=0.0)
                    print(f"epoch {epoch + 1}: {metrics_line(metrics)}"
                          + f" ({record['train_s']:.0f}s training)")
                    if main_rank and (prog["best"] is None or metrics["overall"] > prog["best"]["overall"]):
                        prog["best"] = record
                        save_best(model, args, run_dir / "best")
                    if main_rank:
                        write_metrics(prog["history"], run_dir / "metrics.jsonl")
                    checkpoint()
                elif args.save_every and prog["step"] % args.save_every == 0:
                    checkpoint()
                if stop.signal:
                    checkpoint()
                    raise RunError(f"stopped by {stop.signal} after step {prog['step']}; state saved. "
                                   f"Continue with: python multitask_classifier.py --resume {run_dir}", code=130)
    finally:  # end the progress line, so that an error message gets a line of its own
        if bar is not None:
            bar.close()

    history, best = prog["history"], prog["best"]
    if not main_rank:
        return best
    if prog["skipped"]:
        print(f"note: {prog['skipped']} steps skipped for non-finite losses", file=sys.stderr)
    plot_curves(history, run_dir / "curves.png")
    load_weights(model, run_dir / "best")  # predictions come from the best epoch's weights
    wise = None
    if args.wise_alphas:
        alpha, metrics, wise = choose_alpha(
            model.bert, pretrained, args.wise_alphas,
            lambda: evaluate(model, dev, args.eval_batch_size, device)[0])
        print("WiSE-FT dev overall by alpha: " + ", ".join(f"{a:g}: {o:.4f}" for a, o in wise.items()))
        if alpha != 1.0:
            best = {**best, **metrics, "wise_alpha": alpha}
            save_best(model, args, run_dir / "best")
    if not args.no_predictions:
        write_all_predictions({(t, s): predict(model, data[t, s], args.eval_batch_size, device, desc=f"{s} {t}")
                               for t in TASKS for s in ("dev", "test")}, data, args)
    wall = time.time() - t_start
    print("\nbest dev results\n" + summary_table(history, best, wall, prog["examples"]))
    (run_dir / "summary.json").write_text(json.dumps(
        {"best": best, "wall_s": wall, "examples": prog["examples"], "parameters": n_params,
         "skipped_steps": prog["skipped"], "wise_ft": wise}, indent=2))
    return best


def saved_args(folder: Path, file: str) -> argparse.Namespace:
    """Arguments saved in a run, validated by the same parser as the command line."""
    saved = read_json(folder / file)
    if not isinstance(saved, dict):
        raise CheckpointError(f"{folder / file}: not a valid configuration (expected a JSON object, "
                              f"found {type(saved).__name__})")
    parser = get_parser()

    def refuse(message):  # one line naming the file, instead of argparse's usage dump and exit
        raise CheckpointError(f"{folder / file}: not a valid configuration ({message})")
    parser.error = refuse
    return parser.parse_args(args_to_argv(saved))


def eval_only(args, device) -> dict:
    """Evaluate saved runs on dev and write the six prediction files. Given several runs, predict
    with their ensemble: each task's scores (SST class probabilities, PARA probability, STS score)
    averaged over the runs, then decided as for one model. Each run reads the data with its own
    tokenizer and pair encoding, so runs with different heads can be mixed."""
    raw = load_all(argparse.Namespace(**{**vars(args), "tasks": []}))
    keys = [(t, s) for t in TASKS for s in ("dev", "test")]
    mean = {k: 0.0 for k in keys}
    for path in args.checkpoint:
        folder = Path(path)
        recover_folder(folder / "best")  # a crash while best/ was being replaced leaves best.old
        folder = folder / "best" if (folder / "best").is_dir() else folder
        margs = saved_args(folder, "args.json")
        tokenizer = BertTokenizer.from_pretrained(str(folder), max_length=margs.max_length)
        data = encode_all(raw, tokenizer, margs)
        model = build_model(margs, checkpoint=folder).to(device)
        load_weights(model, folder)
        dev = {t: data[t, "dev"] for t in TASKS}
        member = {k: scores(model, data[k], args.eval_batch_size, device, desc=f"{k[1]} {k[0]}") for k in keys}
        if len(args.checkpoint) > 1:
            print(f"{path}: " + metrics_line(dev_metrics({t: decide(t, member[t, "dev"]) for t in TASKS}, dev)))
        mean = {k: mean[k] + member[k] / len(args.checkpoint) for k in keys}
    preds = {k: decide(k[0], mean[k]) for k in keys}
    metrics = dev_metrics({t: preds[t, "dev"] for t in TASKS}, dev)
    write_all_predictions(preds, data, args)
    print(("ensemble dev: " if len(args.checkpoint) > 1 else "dev: ") + metrics_line(metrics))
    return metrics


# -- command line ------------------------------------------------------------------------------
def args_to_argv(d: dict) -> list[str]:
    """A saved argument dict back into command-line form, so the parser validates it."""
    on_by_default = {a.dest for a in get_parser()._actions if a.default is True}
    argv = []
    for k, v in d.items():
        if v is None or (v is False and k not in on_by_default):
            continue
        if v is False:  # a switch that is on by default, turned off
            argv.append(f"--no-{k}")
            continue
        argv.append(f"--{k}")
        if isinstance(v, list):
            argv += [str(x) for x in v]
        elif v is not True:
            argv.append(str(v))
    return argv


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("model")
    g.add_argument("--bert_model", default="minilm",
                   help="'minilm' (bundled all-MiniLM-L6-v2), a checkpoint folder, or a Hugging Face "
                        "name such as bert-base-uncased (local cache, or downloaded when online)")
    g.add_argument("--hidden_dropout_prob", type=float, default=0.1, help="dropout in the heads and encoder")
    g.add_argument("--max_length", type=int, default=128, help="tokens per sequence; longer ones are truncated")
    g.add_argument("--pooling", choices=["mean", "cls", "pooler"], default="mean",
                   help="sentence embedding: SBERT mean pooling, [CLS] vector, or BERT pooler")
    g.add_argument("--para_head", choices=["concat", "cross"], default="cross",
                   help="PARA: classifier on two sentence embeddings, or a cross-encoded pair")
    g.add_argument("--sts_scale", choices=["fixed", "learned", "fit"], default="fit",
                   help="cosine STS head: score = a·cos + b with a = b = 2.5 fixed (the seed), learned "
                        "from that start, or learned from a least-squares fit to the pretrained "
                        "cosines of training pairs (the encoder then only gets ranking errors)")
    g.add_argument("--para_features", choices=["concat", "full"], default="full",
                   help="bi-encoder PARA features: [u;v] or [u;v;|u-v|;u*v]")
    g.add_argument("--para_symmetric", action=argparse.BooleanOptionalAction, default=False,
                   help="bi-encoded PARA head: average the logits of (s1, s2) and (s2, s1)")
    g.add_argument("--sts_head", choices=["cosine", "concat", "cross"], default="cosine",
                   help="STS: 2.5(1+cos(u,v)), a regressor on the pair features (the seed's "
                        "baseline), or a regressor on a cross-encoded pair")
    g = p.add_argument_group("training")
    g.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS),
                   help="tasks to train on (one task = single-task fine-tuning)")
    g.add_argument("--epochs", type=int, default=2, help="number of epochs (see above for what an epoch is)")
    g.add_argument("--steps_per_epoch", type=int, default=1200,
                   help="optimizer steps per epoch; 0 = one pass's worth of batches (962 with the "
                        "default data and batch sizes)")
    g.add_argument("--freeze_embeddings", action=argparse.BooleanOptionalAction, default=True,
                   help="keep the word embeddings at their pretrained values")
    g.add_argument("--freeze_layers", type=int, default=0,
                   help="keep the embeddings and this many bottom encoder layers frozen")
    g.add_argument("--lr", type=float, default=1e-4, help="peak learning rate of the encoder")
    g.add_argument("--head_lr", type=float, default=1e-3,
                   help="learning rate of the new parameters: task heads, PAL (0 = --lr)")
    g.add_argument("--layer_decay", type=float, default=1.0,
                   help="layer-wise learning-rate decay: each layer down learns at this factor of the one above")
    g.add_argument("--weight_decay", type=float, default=0.01, help="AdamW decoupled weight decay")
    g.add_argument("--warmup_ratio", type=float, default=0.1, help="fraction of steps of linear warm-up")
    g.add_argument("--grad_clip", type=float, default=1.0, help="max gradient norm (0 = off)")
    g.add_argument("--batch_size", type=int, default=32, help="batch size of every task")
    for t in TASKS:
        g.add_argument(f"--{t}_batch_size", type=int, default=0, help=f"{t} batch size (0 = --batch_size)")
    g.add_argument("--sampling", choices=KINDS, default="sqrt",
                   help="task of each step: round_robin, or drawn with p_i ∝ N_i^α (proportional: "
                        "α=1; sqrt: α=--sample_wt; annealed: α from 1 to 0.2 over the epochs)")
    g.add_argument("--sample_wt", type=float, default=0.5, help="the exponent α of --sampling sqrt")
    g.add_argument("--update", choices=["local", "global"], default="local",
                   help="local: a step per task batch; global: a step on the summed losses of a "
                        "batch of every task")
    g.add_argument("--max_train_examples", type=int, default=0, help="cap per task (0 = all), for smoke runs")
    g.add_argument("--seed", type=int, default=11711, help="random seed")
    g = p.add_argument_group("extensions")
    g.add_argument("--fgsm", action="store_true", help="FGSM adversarial training on the embedding output")
    g.add_argument("--fgsm_eps", type=float, default=1e-5, help="FGSM step ε")
    g.add_argument("--mnrl", action="store_true", help="add multiple-negatives ranking loss (SST, PARA)")
    g.add_argument("--mnrl_wt", type=float, default=0.5, help="weight of the MNRL term")
    g.add_argument("--pcgrad", action="store_true", help="PCGrad gradient surgery (implies --update global)")
    g.add_argument("--pal", action="store_true", help="task-specific Projected Attention Layers")
    g.add_argument("--pal_dim", type=int, default=64, help="PAL projection size")
    g.add_argument("--pal_heads", type=int, default=4, help="PAL attention heads")
    g.add_argument("--smart", action="store_true", help="SMART smoothness-inducing adversarial regulariser")
    g.add_argument("--smart_wt", type=float, default=1.0, help="weight of the SMART term")
    g.add_argument("--smart_eps", type=float, default=1e-5, help="SMART perturbation bound (L-inf)")
    g.add_argument("--smart_steps", type=int, default=1, help="SMART projected ascent steps")
    g.add_argument("--wise_alphas", type=float, nargs="*", default=[0.5, 0.7, 0.85],
                   help="WiSE-FT: after training, also try encoder weights pretrained + α·(fine-tuned "
                        "− pretrained) for these α and keep the best on dev (none = off)")
    g = p.add_argument_group("robustness")
    g.add_argument("--save_every", type=int, default=200,
                   help="save the training state every N steps (0 = only at epoch ends)")
    g.add_argument("--resume", default="", help="continue the run in this folder from its saved state")
    g.add_argument("--skip_nonfinite", action="store_true",
                   help="skip (and count) steps whose loss is NaN/inf instead of stopping")
    g = p.add_argument_group("speed")
    g.add_argument("--use_gpu", action="store_true", help="train on CUDA (bf16 autocast)")
    g.add_argument("--eval_batch_size", type=int, default=128, help="batch size for evaluation")
    g.add_argument("--no_bucket", action="store_true", help="random batches (no length bucketing)")
    g.add_argument("--no_unpad", action="store_true", help="run layers on padded batches")
    g.add_argument("--threads", type=int, default=0, help="CPU threads (0 = all cores)")
    g = p.add_argument_group("data and outputs")
    g.add_argument("--strict", action="store_true", help="stop on the first bad data row")
    for t, stem in (("sst", "ids-sst"), ("para", "quora"), ("sts", "sts")):
        for split in ("train", "dev", "test"):
            suffix = "-student" if split == "test" else ""
            g.add_argument(f"--{t}_{split}", default=f"data/{stem}-{split}{suffix}.csv",
                           help=f"{t} {split} file")
    for t in TASKS:
        for split in ("dev", "test"):
            g.add_argument(f"--{t}_{split}_out", default=f"predictions/{t}-{split}-output.csv",
                           help=f"where to write {t} {split} predictions")
    g.add_argument("--no_predictions", action="store_true",
                   help="skip writing the six prediction files (sweeps)")
    g.add_argument("--out_dir", default="", help="run folder (default runs/<timestamp>)")
    g.add_argument("--overwrite", action="store_true", help="allow writing into an existing run folder")
    g.add_argument("--checkpoint", nargs="*", default=[], metavar="RUN",
                   help="saved run folders to predict from; several = their ensemble (averaged scores)")
    g.add_argument("--eval_only", action="store_true", help="with --checkpoint: evaluate and predict only")
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    try:
        if args.resume:  # continue with the run's own configuration
            resume = args.resume
            args = saved_args(Path(resume), "config.json")
            args.resume, args.out_dir = resume, resume
        args.checkpoint = [c for c in args.checkpoint if c]  # configs saved before it was a list hold ""
        if args.eval_only and not args.checkpoint:
            raise RunError("--eval_only needs --checkpoint RUN_DIR", code=2)
        if args.checkpoint and not args.eval_only:
            raise RunError("--checkpoint predicts from saved runs and trains nothing: add --eval_only", code=2)
        if args.pcgrad:
            args.update = "global"
        if args.mnrl and args.para_head == "cross" and "para" in args.tasks:
            print("note: MNRL ranks sentence embeddings; with --para_head cross it is added to SST "
                  "only (--para_head concat adds it to PARA too)", file=sys.stderr)
        if not args.out_dir:
            args.out_dir = os.path.join("runs", time.strftime("%Y%m%d-%H%M%S"))
        if args.threads:
            torch.set_num_threads(args.threads)
        if args.use_gpu and not torch.cuda.is_available():
            raise RunError("--use_gpu given but CUDA is not available", code=2)
        device = torch.device("cuda" if args.use_gpu else "cpu")
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
        random.seed(args.seed)
        np.random.seed(args.seed)
        torch.manual_seed(args.seed)
        if args.eval_only:
            eval_only(args, device)
        else:
            train(args, device)
    except (DataError, CheckpointError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.code
    except OSError as e:  # disk full, permission denied: say which file, keep what was saved
        where = f" {e.filename}" if e.filename else ""
        print(f"error: cannot write{where}: {e.strerror or e}", file=sys.stderr)
        return 1
    finally:
        distributed.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
