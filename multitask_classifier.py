"""Multitask fine-tuning of one BERT on SST-5, Quora paraphrase and STS; evaluation; predictions.

    python multitask_classifier.py                  # train on the defaults, evaluate, predict
    python multitask_classifier.py --checkpoint runs/X --eval_only   # predict from a saved run

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

from base_bert import CheckpointError
from batching import TASKS, TaskStream, encode_task
from bert import BertModel
from config import BertConfig, ConfigError
from datasets import DataError, load
from evaluation import METRIC_NAMES, evaluate, predict, write_predictions
from heads import cosine_similarity_score, mlp, pair_features, pool
from optimizer import AdamW
from samplers import KINDS, TaskSampler
from tokenizer import BertTokenizer

NUM_SENTIMENTS = 5


class MultitaskBERT(nn.Module):
    """Shared BERT encoder, one head per task."""

    def __init__(self, bert: BertModel, args):
        super().__init__()
        self.bert, self.args = bert, args
        H, p = bert.config.hidden_size, args.hidden_dropout_prob
        self.sst_head = mlp(H, H, NUM_SENTIMENTS, p)
        n_feats = 2 if args.para_features == "concat" else 4
        self.para_head = mlp(H if args.para_head == "cross" else n_feats * H, H, 1, p)
        self.sts_head = mlp(H, H, 1, p) if args.sts_head == "cross" else None

    # -- encoding --------------------------------------------------------------------------
    def embed(self, inputs: dict, hook=None) -> torch.Tensor:
        """Pooled sentence embeddings [B, H]. `hook(x)` may replace the embedding output
        (adversarial training perturbs it there)."""
        x, layout = self.bert.embed(inputs["input_ids"], inputs["attention_mask"],
                                    inputs["token_type_ids"])
        if hook is not None:
            x = hook(x)
        out = self.bert.encode(x, layout)
        return pool(out["last_hidden_state"], inputs["attention_mask"], out["pooler_output"],
                    self.args.pooling)

    def embed_pair(self, batch: dict, hook=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings of both sentences of a bi-encoded pair, in one encoder call."""
        a, b = batch["a"], batch["b"]
        T = max(a["input_ids"].shape[1], b["input_ids"].shape[1])
        both = {k: torch.cat([F.pad(a[k], (0, T - a[k].shape[1])),
                              F.pad(b[k], (0, T - b[k].shape[1]))]) for k in a}
        e = self.embed(both, hook)
        return e[:len(a["input_ids"])], e[len(a["input_ids"]):]

    # -- task outputs ------------------------------------------------------------------------
    def forward(self, task: str, batch: dict, hook=None) -> dict:
        """Raw outputs of `task`: logits (SST [B, 5], PARA [B]) or scores (STS [B], 0-5),
        plus the sentence embeddings used (`u`, and `v` for bi-encoded pairs)."""
        if task == "sst":
            u = self.embed(batch["a"], hook)
            return {"out": self.sst_head(u), "u": u}
        cross = (self.args.para_head if task == "para" else self.args.sts_head) == "cross"
        if cross:
            u = self.embed(batch["a"], hook)
            head = self.para_head if task == "para" else self.sts_head
            y = head(u).squeeze(-1)
            return {"out": y if task == "para" else 5.0 * torch.sigmoid(y), "u": u}
        u, v = self.embed_pair(batch, hook)
        if task == "para":
            return {"out": self.para_head(pair_features(u, v, self.args.para_features)).squeeze(-1),
                    "u": u, "v": v}
        return {"out": cosine_similarity_score(u, v), "u": u, "v": v}

    def predict(self, task: str, batch: dict) -> torch.Tensor:
        out = self.forward(task, batch)["out"].float()
        if task == "sst":
            return out.argmax(-1)
        if task == "para":
            return (out > 0).long()  # sigmoid(logit) > 0.5
        return out

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
    loss, _ = task_loss(model, task, batch)
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
    return MultitaskBERT(bert, args)


def build_optimizer(model: nn.Module, args) -> AdamW:
    """No weight decay on biases and LayerNorm; heads may learn faster than the encoder."""
    groups = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = p.ndim >= 2
        head = not name.startswith("bert.")
        key = (decay, head)
        groups.setdefault(key, {"params": [], "weight_decay": args.weight_decay if decay else 0.0,
                                "lr": args.head_lr if (head and args.head_lr) else args.lr})
        groups[key]["params"].append(p)
    return AdamW(list(groups.values()), lr=args.lr)


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then linear decay to zero."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


# -- run folder --------------------------------------------------------------------------------
def save_checkpoint(model: MultitaskBERT, args, folder: Path, tokenizer_dir: Path):
    """Weights (safetensors) + JSON configs + the vocabulary: a self-contained, pickle-free run."""
    from safetensors.torch import save_file
    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(tmp / "model.safetensors"))
    (tmp / "config.json").write_text(json.dumps(model.bert.config.to_dict(), indent=2))
    (tmp / "args.json").write_text(json.dumps(vars(args), indent=2))
    for f in ("vocab.txt", "tokenizer_config.json"):
        if (tokenizer_dir / f).is_file():
            (tmp / f).write_bytes((tokenizer_dir / f).read_bytes())
    if folder.exists():
        old = folder.with_name(folder.name + ".old")
        os.replace(folder, old)
        os.replace(tmp, folder)
        import shutil
        shutil.rmtree(old)
    else:
        os.replace(tmp, folder)


def load_weights(model: nn.Module, folder: Path):
    from safetensors.torch import load_file
    file = folder / "model.safetensors"
    try:
        state = load_file(str(file))
    except Exception as e:
        raise CheckpointError(f"{file}: cannot read weights ({type(e).__name__})") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{file}: does not match the model (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]})")


def write_all_predictions(model, data: dict, args, device):
    for task in TASKS:
        for split in ("dev", "test"):
            preds = predict(model, data[task, split], args.eval_batch_size, device,
                            desc=f"{split} {task}")
            write_predictions(getattr(args, f"{task}_{split}_out"), task, data[task, split].ids, preds)


def plot_curves(history: list[dict], path: Path):
    """Train loss per task and dev metrics per epoch, one PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for t in TASKS:
        if any(f"loss_{t}" in h for h in history):
            ax1.plot(epochs, [h.get(f"loss_{t}", float("nan")) for h in history], "o-", label=t)
    ax1.set(xlabel="epoch", ylabel="mean train loss", title="training loss")
    ax1.legend()
    for key in (*METRIC_NAMES.values(), "overall"):
        ax2.plot(epochs, [h[key] for h in history], "o-", label=key)
    ax2.set(xlabel="epoch", ylabel="dev metric", title="dev metrics")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def summary_table(history: list[dict], best: dict, wall: float, examples: int) -> str:
    rows = [("SST accuracy", f"{best['sst_acc']:.4f}"), ("PARA accuracy", f"{best['para_acc']:.4f}"),
            ("STS Pearson r", f"{best['sts_r']:.4f}"), ("overall", f"{best['overall']:.4f}"),
            ("best epoch", str(best["epoch"])), ("epochs run", str(len(history))),
            ("wall time", f"{wall / 60:.1f} min"),
            ("training examples/s", f"{examples / max(1e-9, sum(h['train_s'] for h in history)):.1f}")]
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{w}}  {v}" for k, v in rows)


def train(args, device) -> dict:
    t_start = time.time()
    raw = load_all(args)  # validation first: a bad file stops here, before anything is written
    tokenizer = BertTokenizer.from_pretrained(args.bert_model, max_length=args.max_length)
    data = encode_all(raw, tokenizer, args)
    model = build_model(args).to(device)
    run_dir = Path(args.out_dir)
    if run_dir.exists() and any(run_dir.iterdir()) and not args.overwrite:
        raise SystemExit(f"error: {run_dir} exists and is not empty; pass --overwrite or choose "
                         "another --out_dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(vars(args), indent=2))

    tasks = list(args.tasks)
    sizes = {t: len(data[t, "train"]) for t in tasks}
    bs = {t: getattr(args, f"{t}_batch_size") or args.batch_size for t in tasks}
    n_batches = sum(math.ceil(sizes[t] / bs[t]) for t in tasks)
    steps = args.steps_per_epoch or max(1, round(n_batches / (len(tasks) if args.update == "global" else 1)))
    total = steps * args.epochs
    streams = {t: TaskStream(data[t, "train"], bs[t], args.seed, bucket=not args.no_bucket) for t in tasks}
    sampler = TaskSampler(sizes, args.sampling, args.sample_wt, args.epochs, args.seed)
    optimizer = build_optimizer(model, args)
    warmup = int(args.warmup_ratio * total)
    print(f"training {', '.join(f'{t}: {sizes[t]}' for t in tasks)} examples; {args.epochs} epochs "
          f"of {steps} steps ({args.update} updates, {args.sampling} sampling)")

    dev = {t: data[t, "dev"] for t in TASKS}
    history, best, n_examples = [], None, 0
    metrics_file = open(run_dir / "metrics.jsonl", "a", encoding="utf-8")
    for epoch in range(args.epochs):
        model.train()
        plan = sampler.epoch_tasks(epoch, steps)
        loss_sum, loss_n = {t: 0.0 for t in tasks}, {t: 0 for t in tasks}
        t0 = time.time()
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{args.epochs}")
        for step in bar:
            step_tasks = tasks if args.update == "global" else [plan[step]]
            for g in optimizer.param_groups:
                g.setdefault("base_lr", g["lr"])
                g["lr"] = g["base_lr"] * lr_factor(epoch * steps + step, total, warmup)
            losses = {}
            for t in step_tasks:
                batch = model.to_device(next(streams[t]), device)
                n_examples += len(batch["index"])
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
                    losses[t] = training_loss(model, t, batch, args)
            bad = [t for t, l in losses.items() if not torch.isfinite(l)]
            if bad:
                raise FloatingPointError(f"non-finite {bad[0]} loss at epoch {epoch + 1} step {step + 1}")
            sum(losses.values()).backward()
            if args.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            for t, l in losses.items():
                loss_sum[t] += l.item()
                loss_n[t] += 1
            bar.set_postfix({t: f"{loss_sum[t] / max(1, loss_n[t]):.3f}" for t in tasks})
        train_s = time.time() - t0
        metrics, _ = evaluate(model, dev, args.eval_batch_size, device)
        record = {"epoch": epoch + 1, **metrics, "train_s": train_s,
                  **{f"loss_{t}": loss_sum[t] / loss_n[t] for t in tasks if loss_n[t]}}
        history.append(record)
        metrics_file.write(json.dumps(record) + "\n")
        metrics_file.flush()
        print(f"epoch {epoch + 1}: " + ", ".join(f"{k} {metrics[k]:.4f}" for k in metrics)
              + f" ({train_s:.0f}s training)")
        if best is None or metrics["overall"] > best["overall"]:
            best = record
            save_checkpoint(model, args, run_dir / "best", tokenizer_dir(args.bert_model))
    metrics_file.close()
    plot_curves(history, run_dir / "curves.png")

    # Predictions come from the best epoch's weights.
    load_weights(model, run_dir / "best")
    write_all_predictions(model, data, args, device)
    wall = time.time() - t_start
    print("\nbest dev results\n" + summary_table(history, best, wall, n_examples))
    (run_dir / "summary.json").write_text(json.dumps({"best": best, "wall_s": wall,
                                                      "examples": n_examples}, indent=2))
    return best


def tokenizer_dir(name: str) -> Path:
    from base_bert import resolve_model_dir
    return resolve_model_dir(name)


def eval_only(args, device) -> dict:
    """Evaluate a saved run on dev and write the six prediction files."""
    folder = Path(args.checkpoint)
    folder = folder / "best" if (folder / "best").is_dir() else folder
    saved = json.loads((folder / "args.json").read_text())
    margs = get_parser().parse_args(args_to_argv(saved))  # validated like command-line input
    raw = load_all(argparse.Namespace(**{**vars(args), "tasks": []}))
    tokenizer = BertTokenizer.from_pretrained(str(folder), max_length=margs.max_length)
    data = encode_all(raw, tokenizer, margs)
    model = build_model(margs, checkpoint=folder).to(device)
    load_weights(model, folder)
    metrics, _ = evaluate(model, {t: data[t, "dev"] for t in TASKS}, args.eval_batch_size, device)
    write_all_predictions(model, data, args, device)
    print("dev: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return metrics


# -- command line ------------------------------------------------------------------------------
def args_to_argv(d: dict) -> list[str]:
    """A saved argument dict back into command-line form, so the parser validates it."""
    argv = []
    for k, v in d.items():
        if v is None or v is False:
            continue
        argv.append(f"--{k}")
        if isinstance(v, list):
            argv += [str(x) for x in v]
        elif v is not True:
            argv.append(str(v))
    return argv


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    g = p.add_argument_group("model")
    g.add_argument("--bert_model", default="minilm",
                   help="'minilm' (bundled all-MiniLM-L6-v2), a checkpoint folder, or a Hugging Face "
                        "name such as bert-base-uncased (local cache, or downloaded when online)")
    g.add_argument("--hidden_dropout_prob", type=float, default=0.1, help="dropout in the heads and encoder")
    g.add_argument("--max_length", type=int, default=128, help="tokens per sequence; longer ones are truncated")
    g.add_argument("--pooling", choices=["mean", "cls", "pooler"], default="mean",
                   help="sentence embedding: SBERT mean pooling, [CLS] vector, or BERT pooler")
    g.add_argument("--para_head", choices=["concat", "cross"], default="concat",
                   help="PARA: classifier on two sentence embeddings, or a cross-encoded pair")
    g.add_argument("--para_features", choices=["concat", "full"], default="concat",
                   help="bi-encoder PARA features: [u;v] or [u;v;|u-v|;u*v]")
    g.add_argument("--sts_head", choices=["cosine", "cross"], default="cosine",
                   help="STS: 2.5(1+cos(u,v)), or a regressor on a cross-encoded pair")
    g = p.add_argument_group("training")
    g.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS),
                   help="tasks to train on (one task = single-task fine-tuning)")
    g.add_argument("--epochs", type=int, default=3, help="number of epochs (see above for what an epoch is)")
    g.add_argument("--steps_per_epoch", type=int, default=0,
                   help="optimizer steps per epoch; 0 = one pass's worth of batches")
    g.add_argument("--lr", type=float, default=2e-5, help="peak learning rate of the encoder")
    g.add_argument("--head_lr", type=float, default=0.0, help="learning rate of the task heads (0 = --lr)")
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
    g.add_argument("--out_dir", default="", help="run folder (default runs/<timestamp>)")
    g.add_argument("--overwrite", action="store_true", help="allow writing into an existing run folder")
    g.add_argument("--checkpoint", default="", help="a saved run folder to predict from")
    g.add_argument("--eval_only", action="store_true", help="with --checkpoint: evaluate and predict only")
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    if args.eval_only and not args.checkpoint:
        print("error: --eval_only needs --checkpoint RUN_DIR", file=sys.stderr)
        return 2
    if not args.out_dir:
        args.out_dir = os.path.join("runs", time.strftime("%Y%m%d-%H%M%S"))
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.use_gpu and not torch.cuda.is_available():
        print("error: --use_gpu given but CUDA is not available", file=sys.stderr)
        return 2
    device = torch.device("cuda" if args.use_gpu else "cpu")
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    try:
        if args.eval_only:
            eval_only(args, device)
        else:
            train(args, device)
    except (DataError, CheckpointError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
