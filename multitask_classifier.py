"""Multitask fine-tuning of one BERT on SST-5, Quora paraphrase and STS; evaluation; predictions.

    python multitask_classifier.py                  # train on the defaults, evaluate, predict
    python multitask_classifier.py --help           # every flag (options.py)

This file holds the model, its heads and losses, and a run from start to end; the loop itself is
in trainer.py and the command line in options.py (parse_args is re-exported here).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import distributed
from adversarial import Capture, fgsm_loss, generator_state, smart_regularizer
from base_bert import CheckpointError
from batching import TASKS, encode_task
from bert import BertModel
from config import BertConfig, ConfigError
from datasets import DataError, load
from distill import TeacherError, attach_teacher, soft_target
from evaluation import NUM_SENTIMENTS, predict
from dropout import use_fast as use_fast_dropout
from onednn import use as use_onednn
from heads import cosine_similarity_score, mlp, pair_features, pool
from losses import cosent_loss, mnrl_loss, ordinal_log_loss, rdrop_term
from options import parse_args, saved_args  # parse_args: also the command line of anything importing this file
from pal import PAL
from precision import FP32, PrecisionError, choose
from replay import changed_training, read_config
from run_folder import LOCK, RunFolderBusy, hold_run_dir
from tokenizer import BertTokenizer
from trainer import RunError, Trainer


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
        # --para_cosine: logit += w·cos(s1, s2) + b, the bi-encoder cosine of the pair's sentences
        # beside the cross-encoder. It starts as a logistic model of the pretrained cosine: all-MiniLM
        # alone separates Quora duplicates best at cos ≈ 0.8 (78% of training pairs right).
        self.para_cos = nn.Parameter(torch.tensor([10.0, -8.0])) if args.para_cosine else None
        cfg = bert.config
        self.pal = PAL(TASKS, H, cfg.num_hidden_layers, args.pal_dim, args.pal_heads,
                       cfg.attention_probs_dropout_prob) if args.pal else None
        use_fast_dropout(self, args.fast_dropout)
        use_onednn(self, args.onednn)
        bert.attention_groups = args.attention_groups

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

    def cross_encode(self, task: str, batch: dict, head, hook=None) -> tuple[torch.Tensor, torch.Tensor]:
        """A cross-encoded pair's embedding [B, H] and head output [B]. With --pair_orders both,
        `a` holds (s1, s2) and `b` (s2, s1): training reads one order per pair at random (a
        cheap augmentation); evaluation averages the head over both orders."""
        if "b" not in batch:
            u = self.embed(task, batch["a"], hook)
            return u, head(u).squeeze(-1)
        if self.training:
            a, b = batch["a"], batch["b"]
            T = max(a["input_ids"].shape[1], b["input_ids"].shape[1])
            a, b = ({k: F.pad(x[k], (0, T - x[k].shape[1])) for k in x} for x in (a, b))
            swap = torch.rand(len(a["input_ids"]), device=a["input_ids"].device) < 0.5
            u = self.embed(task, {k: torch.where(swap[:, None], b[k], a[k]) for k in a}, hook)
            return u, head(u).squeeze(-1)
        u, v = self.embed_pair(task, batch, hook)  # both orders in one encoder call
        return u, 0.5 * (head(u) + head(v)).squeeze(-1)

    # -- task outputs ------------------------------------------------------------------------
    def forward(self, task: str, batch: dict, hook=None) -> dict:
        """Raw outputs of `task`: logits (SST [B, 5], PARA [B]) or scores (STS [B], 0-5),
        plus the sentence embeddings used (`u`, and `v` for bi-encoded pairs)."""
        if task == "sst":
            u = self.embed(task, batch["a"], hook)
            return {"out": self.sst_head(u), "u": u}
        cross = (self.args.para_head if task == "para" else self.args.sts_head) == "cross"
        if cross:
            head = self.para_head if task == "para" else self.sts_head
            u, y = self.cross_encode(task, batch, head, hook)
            if task == "para" and self.para_cos is not None:
                # (an adversarial hook perturbs the cross-encoded input only: it captures one input)
                u1, u2 = self.embed_pair(task, {"a": batch["s1"], "b": batch["s2"]})
                y = y + self.para_cos[0] * F.cosine_similarity(u1, u2, dim=-1) + self.para_cos[1]
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
    """The task's own loss: cross-entropy (SST), BCE on the logit (PARA), MSE on the score (STS),
    towards the labels or, with --distill, their mix with a teacher's scores (`target`)."""
    out = model(task, batch, hook)
    y = batch["labels"]
    target = soft_target(task, y, batch.get("teacher"), model.args.distill_wt)
    if task == "sst":
        draws = out["out"][None]  # [K, B, 5]: K draws of the head's dropout on one encoding
        if model.args.msd > 1 and model.training:
            # --msd K, multi-sample dropout (Inoue, 2019): K - 1 more draws for the price of the
            # head only; the output (what R-Drop and the ordinal loss read) is their mean
            more = [model.sst_head(out["u"]) for _ in range(model.args.msd - 1)]
            draws = torch.stack([out["out"], *more])
            out["out"] = draws.mean(0)
        # One cross-entropy over all K·B rows is the mean of the K draws' losses. Label smoothing
        # spreads ε of each target over the other classes: SST-5's neighbouring classes are easily
        # confused (most errors are off by one), so hard targets overstate it.
        loss = F.cross_entropy(draws.flatten(0, 1).float(), torch.cat([target] * len(draws)),
                               label_smoothing=model.args.label_smoothing)
        if model.args.sst_ordinal:
            loss = loss + model.args.sst_ordinal * ordinal_log_loss(out["out"], y)
    elif task == "para":
        loss = F.binary_cross_entropy_with_logits(out["out"].float(), target.float())
    else:
        loss = F.mse_loss(out["out"].float(), target)
        if model.args.sts_cosent:
            loss = loss + model.args.sts_cosent * cosent_loss(F.cosine_similarity(out["u"], out["v"], dim=-1), y)
    return loss, out


def training_loss(model: MultitaskBERT, task: str, batch: dict, args) -> torch.Tensor:
    """The task loss plus whichever extensions are switched on."""
    adversarial = args.fgsm or (args.smart and task in args.smart_tasks)
    captured = Capture() if adversarial else None
    masks = generator_state() if adversarial and model.training else None  # replayed by the perturbed passes
    clean, out = task_loss(model, task, batch, captured)
    loss = clean
    if args.rdrop and task in args.rdrop_tasks:
        # R-Drop (SST-5 by default; each task's step costs 2x): a second pass draws other dropout
        # masks; both passes' losses count, and their outputs are pulled together.
        again, out2 = task_loss(model, task, batch)
        loss = 0.5 * (clean + again) + args.rdrop * rdrop_term(task, out["out"], out2["out"])
    if args.mnrl:
        extra = mnrl_loss(task, out, batch["labels"])
        if extra is not None:
            loss = loss + args.mnrl_wt * extra
    if args.fgsm:
        loss = loss + fgsm_loss(model, task, batch, clean, captured, args.fgsm_eps, task_loss, masks)
    if args.smart and task in args.smart_tasks:
        loss = loss + args.smart_wt * smart_regularizer(
            model, task, batch, out["out"], captured.x, args.smart_eps, steps=args.smart_steps, masks=masks)
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
        # --pair_orders predict: the swapped order for evaluation only, so training is --pair_orders one's
        both = args.pair_orders == "both" or (args.pair_orders == "predict" and split != "train")
        data[task, split] = encode_task(task, examples, tokenizer, cross=cross, both_orders=cross and both,
                                        singles=task == "para" and args.para_cosine)
        truncated += data[task, split].truncated
    if truncated:
        print(f"note: {truncated} sequences were longer than --max_length {args.max_length} "
              "tokens and were truncated", file=sys.stderr)
    return data


# -- model, optimizer, schedule ----------------------------------------------------------------
COMPILE_BACKEND = "inductor"  # tests use "aot_eager": the same graph capture, no code generation


def compile_encoder(bert: BertModel):
    """--compile: torch.compile every encoder layer in place (Module.compile, so the state_dict
    keys, and with them the checkpoints, stay those of the eager model). Layers rather than the
    model: MultitaskBERT calls bert.embed and bert.encode, never bert(...), and the unpadding
    (a nonzero() with a data-dependent size) sits between them. Shapes are marked dynamic: the
    unpadded token count changes with every batch, and one graph serves them all."""
    for layer in bert.layers:
        layer.compile(dynamic=True, backend=COMPILE_BACKEND)


def build_model(args, checkpoint: Path | None = None, encoder: str | None = None) -> MultitaskBERT:
    """The model to train, its encoder loaded from `encoder` (default --bert_model), or the
    architecture of a saved run's `checkpoint` folder, to load its weights into."""
    if checkpoint is None:
        # Attention dropout defaults to the checkpoint's (0.1 for MiniLM and BERT); at 0, CPU
        # scaled_dot_product_attention may take its fused kernel (dropout forces the math path).
        extra = {} if args.attention_dropout is None else {"attention_probs_dropout_prob": args.attention_dropout}
        bert = BertModel.from_pretrained(encoder or args.bert_model, hidden_dropout_prob=args.hidden_dropout_prob,
                                         **extra)
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
    if args.option == "pretrain":  # the starter's linear-probe mode: the encoder stays as loaded
        bert.requires_grad_(False)
    if args.compile and checkpoint is None:  # (one pass of predictions from a checkpoint would not repay it)
        compile_encoder(bert)
    return MultitaskBERT(bert, args)


@torch.no_grad()
def fit_sts_scale(model: MultitaskBERT, data, batch_size: int, device, n: int = 2000, precision=FP32):
    """Least-squares a, b in score = a·cos + b on up to n training pairs (a linear probe first,
    as in LP-FT, Kumar et al. 2022): fine-tuning then starts from a calibrated head."""
    sub = data.subset(n)
    # score = cos + 1 lies in [0, 2], inside the [0, 5] clamp of predictions, so no cosine is cut.
    model.sts_affine.copy_(torch.tensor([1.0, 1.0]))
    cos = torch.from_numpy(predict(model, sub, batch_size, device, False, precision)).double() - 1.0
    y = sub.labels.double()
    a = ((cos - cos.mean()) * (y - y.mean())).sum() / (cos - cos.mean()).square().sum().clamp(min=1e-12)
    model.sts_affine.copy_(torch.stack([a, y.mean() - a * cos.mean()]).float())
    print(f"STS head fitted on {len(sub)} training pairs: score = {a.item():.3f}·cos + "
          f"{model.sts_affine[1].item():.3f}")


def in_domain_encoder(args, raw: dict, device, run_dir: Path) -> tuple[str, dict]:
    """--mlm_epochs: the encoder fine-tuning starts from, --bert_model trained further by masked-
    language modelling on the run's training text (pretrain_mlm.py; once per base, text and
    settings: a later run reuses it from --mlm_cache), and the files that record it for the run
    folder ({"mlm.json": text}; the trainer writes them once the folder is cleared). Off for the
    starter's --option pretrain (a frozen encoder) and for a resumed run (its state holds the
    weights)."""
    if (args.resume and (run_dir / "state").is_dir()) or not args.mlm_epochs or args.option == "pretrain":
        return args.bert_model, {}
    from pretrain_mlm import cached_encoder
    train_text = {t: raw[t, "train"] for t in TASKS if (t, "train") in raw}
    folder, info = cached_encoder(args.bert_model, train_text, args.mlm_epochs, args.max_length,
                                  Path(args.mlm_cache), device)
    seed_everything(args.seed)  # fine-tuning as from --bert_model FOLDER: the MLM drew from the RNGs
    return str(folder), {"mlm.json": json.dumps({"encoder": str(folder), **info}, indent=2)}


def seed_everything(seed: int):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextmanager
def prepare_run_dir(args):
    """The run folder, locked against other runs until the run ends. The lock comes before the
    check that the folder is empty, so two runs started together cannot both find it so. Only
    rank 0 of a torchrun job writes (trainer.py), so only it takes the lock."""
    run_dir = Path(args.out_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(f"{run_dir}: exists and is not a folder")
    with hold_run_dir(run_dir) if distributed.main_process() else nullcontext():
        if (run_dir.exists() and any(p.name != LOCK for p in run_dir.iterdir())
                and not (args.overwrite or args.resume)):
            raise RunError(f"{run_dir}: run folder exists and is not empty; pass --overwrite to replace "
                           f"it or --resume {run_dir} to continue it")
        yield run_dir


def train(args, device, precision=FP32) -> dict:
    """Read and encode the data, build the model, and hand both to the training loop (trainer.py)."""
    t_start = time.time()
    raw = load_all(args)  # validation first: a bad file stops here, before anything is written
    tokenizer = BertTokenizer.from_pretrained(args.bert_model, max_length=args.max_length)
    data = encode_all(raw, tokenizer, args)
    if args.distill:
        attach_teacher(args.distill, data, args.tasks)
    with prepare_run_dir(args) as run_dir:
        encoder, records = in_domain_encoder(args, raw, device, run_dir)
        model = build_model(args, encoder=encoder).to(device)
        distributed.setup(device)  # the process group first: the broadcast needs it under torchrun
        distributed.broadcast_parameters(model)
        if model.pal is not None:
            print(f"PAL adds {model.pal.num_parameters():,} parameters (dim {args.pal_dim})")
        if args.sts_scale == "fit" and "sts" in args.tasks and args.sts_head == "cosine" and not args.resume:
            fit_sts_scale(model, data["sts", "train"], args.eval_batch_size, device, precision=precision)
        return Trainer(model, training_loss, data, raw, args, device, run_dir, precision, records).run(t_start)


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
        if args.resume:  # continue with the run's own configuration
            resume = args.resume
            args = saved_args(Path(resume), "config.json")
            args.resume, args.out_dir = resume, resume
        saved = Path(args.resume) / "config.json" if args.resume else (Path(args.config) if args.config else None)
        for change in changed_training(read_config(saved), vars(args)) if saved else ():
            print(f"note: {saved}: {change}", file=sys.stderr)
        if args.eval_only and not args.checkpoint:
            raise RunError("--eval_only needs --checkpoint RUN_DIR", code=2)
        if args.checkpoint and not args.eval_only:
            raise RunError("--checkpoint predicts from saved runs and trains nothing: add --eval_only", code=2)
        if args.mnrl and args.para_head == "cross" and "para" in args.tasks:
            print("note: MNRL ranks sentence embeddings; with --para_head cross it is added to SST "
                  "only (--para_head concat adds it to PARA too)", file=sys.stderr)
        for flag in ("scores_out", "raw_weights", "int8", "teacher_out"):
            if getattr(args, flag) and not args.eval_only:
                raise RunError(f"--{flag} is for an evaluation of a saved run: add --eval_only --checkpoint RUN", code=2)
        if not args.out_dir and not args.eval_only:
            args.out_dir = os.path.join("runs", time.strftime("%Y%m%d-%H%M%S"))
        if args.threads:
            torch.set_num_threads(args.threads)
        if args.use_gpu and not torch.cuda.is_available():
            raise RunError("--use_gpu given but CUDA is not available", code=2)
        device = distributed.local_device(args.use_gpu)  # under torchrun: the local rank's GPU
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
        precision = choose(args.precision, device)
        print(f"precision: {precision.describe()}")
        seed_everything(args.seed)
        if args.eval_only:
            from saved_runs import eval_only  # imported here: saved_runs.py imports this module
            eval_only(args, device, precision)
        else:
            train(args, device, precision)
    except (DataError, CheckpointError, ConfigError, RunFolderBusy, PrecisionError, TeacherError) as e:
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
