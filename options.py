"""Multitask fine-tuning of one BERT on SST-5, Quora paraphrase and STS; evaluation; predictions.

    python multitask_classifier.py                  # train on the defaults, evaluate, predict
    python multitask_classifier.py --checkpoint runs/X --eval_only   # predict from a saved run
    python multitask_classifier.py --checkpoint runs/X runs/Y runs/Z --eval_only   # their ensemble

    python multitask_classifier.py --config runs/X/config.json --seed 2   # replay a run, one change
    python multitask_classifier.py --option pretrain --lr 1e-3   # the CS224N starter's command lines

An *epoch* is one pass over the training data: as many optimizer steps as the tasks have batches
(local updates; a global step takes a batch of every task and counts for that many). Each step's
task comes from the sampler (samplers.py), so a pass is exact in total, not for every task.
--epochs may be fractional; --steps_per_epoch N sets an epoch's length by hand. The loop itself
is in trainer.py, the model in multitask_classifier.py; this file is the command line.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from batching import TASKS
from precision import CHOICES as PRECISIONS
from replay import NOT_REPLAYED, config_file, saved_argv
from samplers import KINDS
from tracking import REPORTERS


class FineTuneMode(argparse.Action):
    """--fine-tune-mode X sets --option: last-linear-layer = pretrain, full-model = finetune."""

    def __call__(self, parser, namespace, value, option_string=None):
        setattr(namespace, self.dest, {"last-linear-layer": "pretrain", "full-model": "finetune"}[value])


EVAL_BATCH_SIZE = {"cpu": 128, "cuda": 512}  # --eval_batch_size when not given


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Settings that follow from others, fixed once so that config.json records what ran."""
    if args.pair_orders is None and not args.eval_only:  # (--eval_only: the saved run's own)
        args.pair_orders = "predict"
    if args.mc_dropout == 1 and not args.eval_only:  # one plain pass: recorded as runs before the flag
        args.mc_dropout = None
    if args.lr is None:  # the starter's defaults per mode, with this project's fine-tuning lr
        args.lr = 1e-3 if args.option == "pretrain" else 1e-4
    if args.option == "pretrain":  # only the heads train, at --lr (the starter's meaning)
        args.head_lr = 0.0
    if args.pcgrad:
        args.update = "global"
    args.checkpoint = [c for c in args.checkpoint if c]  # configs saved before it was a list hold ""
    if args.eval_batch_size is None:  # evaluation keeps no activations: a GPU takes far larger batches
        args.eval_batch_size = EVAL_BATCH_SIZE["cuda" if args.use_gpu else "cpu"]
    return args


def conflict(args: argparse.Namespace) -> str | None:
    """Flags that cannot go together, as the one line the parser prints; None where none clash."""
    if args.ema and args.swa:
        return "--ema and --swa are two weight averages: choose one"
    if not 0 <= args.distill_wt <= 1:
        return f"--distill_wt {args.distill_wt:g}: the teacher's share of a target is between 0 and 1"
    if not 0.0 <= args.swa <= 1.0:
        return f"--swa {args.swa}: the fraction of the run to average lies in [0, 1]"
    if args.mc_dropout is not None and args.mc_dropout < 1:
        return f"--mc_dropout {args.mc_dropout}: the passes averaged are at least 1 (1 = off)"
    if args.branches < 1:
        return f"--branches {args.branches}: the number of branches is at least 1 (1 = no fork)"
    if args.branches > 1 and not 0.0 < args.branch_at < 1.0:
        return f"--branch_at {args.branch_at}: the fork lies strictly inside the run, in (0, 1)"
    if args.branches > 1 and (args.ema or args.swa):
        return "--branches averages the branches' final weights: not with --ema or --swa"
    if args.sts_cosent and args.sts_head != "cosine":
        return "--sts_cosent ranks the cosines of the bi-encoded STS head: it needs --sts_head cosine"
    if args.para_cosine and args.para_head != "cross":
        return "--para_cosine needs --para_head cross (the bi-encoded head already reads both sentences)"
    return None


def parse_args(argv=None) -> argparse.Namespace:
    """The command line, over a saved configuration when --config names one."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = get_parser()
    config = config_file(argv)
    if config:
        argv = saved_argv(Path(config), parser, drop=NOT_REPLAYED) + argv
    args = parser.parse_args(argv)
    clash = conflict(args)
    if clash:
        parser.error(clash)  # usage and the one line, exit status 2, before any file is read
    return resolve(args)


def saved_args(folder: Path, file: str) -> argparse.Namespace:
    """Arguments saved in a run, validated by the same parser as the command line."""
    return resolve(get_parser().parse_args(saved_argv(folder / file, get_parser())))


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("model")
    g.add_argument("--bert_model", default="minilm",
                   help="'minilm' (bundled all-MiniLM-L6-v2), a checkpoint folder, or a Hugging Face "
                        "name such as bert-base-uncased (local cache, or downloaded when online)")
    g.add_argument("--mlm_epochs", type=float, default=0.0,
                   help="first train the encoder by masked-language modelling on the run's training text for "
                        "this many passes (pretrain_mlm.py; about 8 min for MiniLM on 2 cores), then fine-tune "
                        "from it; 0 (the default): fine-tune --bert_model as it is. Trained once: later runs with "
                        "the same base, text and settings reuse it from --mlm_cache. 1 pass: +0.0003 [-0.0042, "
                        "0.0047] over four seeds (README, Quality candidates)")
    g.add_argument("--mlm_cache", default="runs/mlm",
                   help="folder of the MLM-trained encoders, one subfolder per base, text and settings")
    g.add_argument("--hidden_dropout_prob", type=float, default=0.1, help="dropout in the heads and encoder")
    g.add_argument("--attention_dropout", type=float, default=None,
                   help="dropout on attention probabilities (default: the checkpoint's, 0.1 for MiniLM)")
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
    g.add_argument("--pair_orders", choices=["one", "both", "predict"], default=None,
                   help="cross-encoded pairs (PARA, STS): 'one' trains and predicts on (s1, s2); 'predict' "
                        "(the default) trains as 'one' does and predicts the mean of both orders (2x the "
                        "pair tasks' evaluation time); 'both' trains on (s1, s2) or (s2, s1) at random and "
                        "predicts the mean of both. With --eval_only: the saved run's own, unless 'one' or "
                        "'predict' is given for a run that trained on one order (saved_runs.py)")
    g.add_argument("--para_cosine", action=argparse.BooleanOptionalAction, default=False,
                   help="cross-encoded PARA: add a learned multiple of the two sentences' bi-encoder "
                        "cosine to the logit (all-MiniLM was trained on duplicate questions)")
    g.add_argument("--sts_head", choices=["cosine", "concat", "cross"], default="cosine",
                   help="STS: 2.5(1+cos(u,v)), a regressor on the pair features (the seed's "
                        "baseline), or a regressor on a cross-encoded pair")
    g = p.add_argument_group("training")
    g.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS),
                   help="tasks to train on (one task = single-task fine-tuning)")
    g.add_argument("--epochs", type=float, default=2.5,
                   help="passes over the training data; fractions allowed (2.5 = 2,405 steps with the "
                        "default data and batch sizes)")
    g.add_argument("--steps_per_epoch", type=int, default=0,
                   help="optimizer steps per epoch; 0 = one pass's worth of batches (962 with the "
                        "default data and batch sizes)")
    g.add_argument("--option", choices=["pretrain", "finetune"], default="finetune",
                   help="the CS224N starter's modes: pretrain = encoder frozen, only the heads train "
                        "(at --lr, default 1e-3); finetune = everything trains")
    g.add_argument("--fine-tune-mode", dest="option", action=FineTuneMode,
                   choices=["last-linear-layer", "full-model"],
                   help="the later starter's name for --option: last-linear-layer = pretrain, "
                        "full-model = finetune")
    g.add_argument("--freeze_embeddings", action=argparse.BooleanOptionalAction, default=True,
                   help="keep the word embeddings at their pretrained values")
    g.add_argument("--freeze_layers", type=int, default=0,
                   help="keep the embeddings and this many bottom encoder layers frozen")
    g.add_argument("--lr", type=float, default=None,
                   help="peak learning rate of the encoder (default 1e-4; with --option pretrain, of the "
                        "heads, default 1e-3)")
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
    g.add_argument("--fgsm", action=argparse.BooleanOptionalAction, default=False,
                   help="FGSM adversarial training on the embedding output")
    g.add_argument("--fgsm_eps", type=float, default=1e-5, help="FGSM step ε")
    g.add_argument("--mnrl", action=argparse.BooleanOptionalAction, default=False,
                   help="add multiple-negatives ranking loss (SST, PARA)")
    g.add_argument("--mnrl_wt", type=float, default=0.5, help="weight of the MNRL term")
    g.add_argument("--pcgrad", action=argparse.BooleanOptionalAction, default=False,
                   help="PCGrad gradient surgery (implies --update global)")
    g.add_argument("--pal", action=argparse.BooleanOptionalAction, default=False,
                   help="task-specific Projected Attention Layers")
    g.add_argument("--pal_dim", type=int, default=64, help="PAL projection size")
    g.add_argument("--pal_heads", type=int, default=4, help="PAL attention heads")
    g.add_argument("--smart", action=argparse.BooleanOptionalAction, default=False,
                   help="SMART smoothness-inducing adversarial regulariser")
    g.add_argument("--smart_wt", type=float, default=1.0, help="weight of the SMART term")
    # 1e-2, not the paper's 1e-5: here δ is added after the embedding LayerNorm (values of order 1),
    # where 1e-5 moves the divergence by 1e-8 (adversarial.py)
    g.add_argument("--smart_eps", type=float, default=1e-2, help="SMART perturbation bound (L-inf)")
    g.add_argument("--smart_steps", type=int, default=1, help="SMART projected ascent steps")
    g.add_argument("--smart_tasks", nargs="+", choices=["sst", "para", "sts"], default=["sst", "para", "sts"],
                   help="tasks whose steps add the SMART term (each such step costs about 2x more)")
    g.add_argument("--msd", type=int, default=1,
                   help="multi-sample dropout on SST-5: the head's dropout drawn this many times on "
                        "each encoding, their losses averaged (1 = off)")
    g.add_argument("--mc_dropout", type=int, default=None, metavar="K",
                   help="score every evaluation and prediction as the mean of K passes with dropout on "
                        "(Monte Carlo dropout; fixed masks, so repeatable): K times the inference cost, no "
                        "training step changes (default 1: one pass without dropout). With --eval_only: "
                        "the saved run's own unless given")
    g.add_argument("--sts_cosent", type=float, default=0.0, metavar="W",
                   help="STS: add W times the CoSENT ranking loss on the batch's cosines to the MSE (0 = off)")
    g.add_argument("--label_smoothing", type=float, default=0.0,
                   help="SST cross-entropy with label smoothing ε (Szegedy et al., 2016); 0 = off")
    g.add_argument("--sst_ordinal", type=float, default=0.0,
                   help="weight of the ordinal log loss added to SST-5's cross-entropy (0 = off)")
    # 3, not 0: dev overall +0.0044 [0.0002, 0.0086] over six seeds each (results/quality.md)
    g.add_argument("--rdrop", type=float, default=3.0,
                   help="R-Drop: weight of the consistency of two dropout passes (0 = off), on the "
                        "tasks of --rdrop_tasks")
    g.add_argument("--rdrop_tasks", nargs="+", choices=["sst", "para", "sts"], default=["sst"],
                   help="tasks whose steps run R-Drop's two passes (each such step costs about 2x): "
                        "SST-5 by default")
    g.add_argument("--distill", default="", metavar="FILE",
                   help="knowledge distillation: train towards the mix of each label with a teacher's score of "
                        "that training example, from FILE (written by --eval_only --checkpoint RUNS... "
                        "--teacher_out FILE; distill.py)")
    g.add_argument("--distill_wt", type=float, default=0.5, metavar="W",
                   help="with --distill: the teacher's share of each target, 0 to 1")
    g.add_argument("--ema", type=float, default=0.0,
                   help="evaluate, keep and predict with an exponential moving average of the weights "
                        "of this decay (e.g. 0.998, about the last 500 steps; 0 = off; ema.py)")
    g.add_argument("--swa", type=float, default=0.0, metavar="F",
                   help="stochastic weight averaging: evaluate, keep and predict with the mean of the weights "
                        "over the last fraction F of the steps (e.g. 0.5; 0 = off; ema.py)")
    g.add_argument("--branches", type=int, default=1, metavar="K",
                   help="fork into K branches at --branch_at of the run, each finishing the schedule on its "
                        "own batch order and dropout; keep the mean of their weights (branches.py)")
    g.add_argument("--branch_at", type=float, default=0.6, metavar="F",
                   help="with --branches: the fraction of the run's steps trained once, before the fork")
    g.add_argument("--wise_alphas", type=float, nargs="*", default=[],
                   help="WiSE-FT: after training, also try encoder weights pretrained + α·(fine-tuned "
                        "− pretrained) for these α and keep the best on dev (e.g. 0.5 0.7 0.85; "
                        "off by default: the fine-tuned weights, α = 1, scored best on the default run)")
    g.add_argument("--patience", type=int, default=0,
                   help="early stopping: stop after this many evaluations without a better dev overall "
                        "(0 = off); the best weights are kept")
    g.add_argument("--min_delta", type=float, default=0.0,
                   help="early stopping: a dev overall must beat the best by more than this to count")
    g = p.add_argument_group("robustness")
    g.add_argument("--eval_every", type=int, default=0,
                   help="evaluate on dev every N optimizer steps (0 = once per epoch); always at the end")
    g.add_argument("--log_every", type=int, default=50,
                   help="write the mean train loss of each task every N steps (train_log.jsonl, curves.png)")
    g.add_argument("--report_to", choices=REPORTERS, default="none",
                   help="also write TensorBoard event files under RUN_DIR/tensorboard/")
    g.add_argument("--config", metavar="RUN_DIR/config.json",
                   help="start a new run with a saved run's configuration; flags given here override it")
    g.add_argument("--save_every", type=int, default=200,
                   help="save the training state every N steps (0 = only at epoch ends)")
    g.add_argument("--resume", default="", help="continue the run in this folder from its saved state")
    g.add_argument("--skip_nonfinite", action=argparse.BooleanOptionalAction, default=False,
                   help="skip (and count) steps whose loss is NaN/inf instead of stopping")
    g = p.add_argument_group("speed")
    g.add_argument("--use_gpu", action=argparse.BooleanOptionalAction, default=False,
                   help="train on CUDA (in the --precision that the GPU supports)")
    g.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="autocast of training and evaluation: auto = bf16 on a GPU with native bf16 "
                        "(A100, H100, RTX 30xx and later), fp16 with a gradient scaler on older GPUs "
                        "(T4, V100), fp32 on CPU. bf16 or fp16 on CPU run torch's CPU autocast "
                        "(slower than fp32 on most CPUs)")
    g.add_argument("--fast_dropout", action=argparse.BooleanOptionalAction, default=True,
                   help="CPU: draw dropout masks from 16-bit random words, at about 40%% of the cost "
                        "of torch's (dropout.py); --no-fast_dropout: torch's own, as runs before it")
    g.add_argument("--attention_groups", action=argparse.BooleanOptionalAction, default=True,
                   help="attend on groups of rows of similar length when a batch's lengths differ "
                        "widely (bert.attention_groups); --no-attention_groups: one padded grid per "
                        "batch, as runs before it")
    g.add_argument("--onednn", action=argparse.BooleanOptionalAction, default=True,
                   help="CPU: the encoder's linear layers multiply in oneDNN, forward and backward "
                        "(onednn.py): the same fp32 products, about 2x as fast where MKL runs its AVX2 "
                        "code (CPUs not made by Intel); --no-onednn: torch's F.linear")
    g.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                   help="torch.compile the encoder layers: faster steps after a compilation of a "
                        "minute or so at the start (and at the first evaluation)")
    g.add_argument("--eval_batch_size", type=int, default=None,
                   help=f"batch size for evaluation (default {EVAL_BATCH_SIZE['cpu']}, with --use_gpu "
                        f"{EVAL_BATCH_SIZE['cuda']})")
    g.add_argument("--no_bucket", action="store_true", help="random batches (no length bucketing)")
    g.add_argument("--no_unpad", action="store_true", help="run layers on padded batches")
    g.add_argument("--threads", type=int, default=0, help="CPU threads (0 = all cores)")
    g = p.add_argument_group("data and outputs")
    g.add_argument("--strict", action=argparse.BooleanOptionalAction, default=False,
                   help="stop on the first bad data row")
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
    g.add_argument("--scores_out", default="", metavar="DIR",
                   help="with --eval_only and one --checkpoint: also write the evaluation as a run folder "
                        "(config.json, dev_scores.npz, summary.json) for compare.py; with --pair_orders "
                        "predict, a one-order run scored from both orders (saved_runs.py)")
    g.add_argument("--raw_weights", action="store_true",
                   help="with --eval_only: score each run's weights at its last step (RUN/state) instead of "
                        "its best evaluation's; for an --ema or --swa run, the same training without the "
                        "average (saved_runs.py)")
    g.add_argument("--teacher_out", default="", metavar="FILE",
                   help="with --eval_only: also score the training sets (the saved runs' ensemble, each pair in "
                        "both orders where the runs predict so) into FILE, a teacher for --distill")
    g.add_argument("--int8", action="store_true",
                   help="with --eval_only: predict with the encoder's linear layers in int8 (quantize.py: "
                        "faster on CPU, scores move slightly; README, int8 inference)")
    return p
