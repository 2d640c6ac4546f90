"""The training loop: schedule, optimizer groups, evaluation and checkpoint cadence, stopping.

multitask_classifier.py builds the model and data and hands them to `Trainer(...).run()`; this
file is the algorithm:

    for each step until the last (or an early stop):
        draw the step's task (samplers.py), take its next batch, loss + extensions, backward, AdamW
        every --eval_every steps (an epoch by default) and at the end: dev metrics; keep the best
            weights and their per-example dev scores; save a resumable state
    --branches (branches.py): from the fork on, each branch in turn to the end; then their mean
    best weights -> WiSE-FT (optional) -> the six prediction files -> error analysis -> summary
"""
from __future__ import annotations

import json
import math
import random
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from torch import nn
from tqdm import tqdm

import distributed
from batching import TASKS, TaskStream
from branches import Branches
from checkpoint import read_tensors, recover_folder
from ema import FILE as EMA_FILE, WeightAverage
from evaluation import (
    decide,
    dev_metrics,
    load_dev_scores,
    metrics_line,
    predict,
    save_dev_scores,
    scores,
    write_prediction_files,
)
from optimizer import AdamW
from pcgrad import pcgrad_backward
from precision import FP32
from run_folder import clear_run, load_state, load_weights, save_best, save_state, summary_table, write_metrics
from samplers import TaskSampler
from stopping import StopRequest, is_improvement, selection_score, should_stop_early
from tracking import Tracker
from wise import choose_alpha, snapshot


class RunError(RuntimeError):
    """A run that cannot go on; the message says why and what to do. `code` is the exit status."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def encoder_depth(name: str, num_layers: int) -> int:
    """How far above the input a parameter sits: embeddings 0, layer i at i + 1, the rest
    (pooler, PAL, heads) at num_layers + 1."""
    if name.startswith("bert.embeddings."):
        return 0
    if name.startswith("bert.layers."):
        return int(name.split(".")[2]) + 1
    return num_layers + 1


def build_optimizer(model: nn.Module, args) -> AdamW:
    """No weight decay on biases and LayerNorm; heads may learn faster than the encoder.
    With --layer_decay d < 1 (layer-wise learning-rate decay, Howard & Ruder 2018) a parameter
    k levels below the top learns at lr·d^k: the lower layers, which hold the most general
    features, move least."""
    groups = {}
    top = model.bert.config.num_hidden_layers + 1
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = p.ndim >= 2
        head = not name.startswith("bert.")
        depth = encoder_depth(name, top - 1)
        lr = args.head_lr if (head and args.head_lr) else args.lr * args.layer_decay ** (top - depth)
        groups.setdefault((decay, head, depth), {
            "params": [], "weight_decay": args.weight_decay if decay else 0.0, "lr": lr})
        groups[decay, head, depth]["params"].append(p)
    return AdamW(list(groups.values()), lr=args.lr)


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then linear decay to zero."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def clip_and_step(optimizer, scaler, params, max_norm: float) -> bool:
    """Unscale the gradients, clip their norm, step; False when the scaler skipped the step
    because the gradients overflowed (it then lowers its scale). Without fp16 the scaler is
    disabled and this is clip + optimizer.step()."""
    scaler.unscale_(optimizer)  # clipping must see the true gradients, not the scaled ones
    if max_norm:
        nn.utils.clip_grad_norm_(params, max_norm)
    scale = scaler.get_scale()
    scaler.step(optimizer)
    scaler.update()
    return scaler.get_scale() >= scale  # only a skipped step backs the scale off




# -- how long a run is, and when it evaluates -----------------------------------------------------
@dataclass
class Schedule:
    steps_per_epoch: int  # optimizer steps in one epoch
    total: int            # optimizer steps in the run
    warmup: int           # steps of linear warm-up
    eval_every: int       # evaluate every this many steps (an epoch's worth by default)

    def evaluates_at(self, step: int) -> bool:
        """Evaluate after `step` (1-based): every eval_every steps, and always after the last."""
        return step % self.eval_every == 0 or step == self.total

    def epoch(self, step: int) -> float:
        return step / self.steps_per_epoch


def schedule(args, sizes: dict, batch_sizes: dict) -> Schedule:
    """By default an epoch is one pass over the training data: as many optimizer steps as the
    tasks have batches (local updates; a global step takes a batch of every task, so it counts for
    that many). --epochs may be fractional (2.5 = two passes and a half); --steps_per_epoch N sets
    an epoch's length by hand."""
    batches = sum(math.ceil(sizes[t] / batch_sizes[t]) for t in sizes)
    per_step = len(sizes) if args.update == "global" else 1
    steps = args.steps_per_epoch or max(1, round(batches / per_step))
    total = max(1, round(steps * args.epochs))
    return Schedule(steps, total, int(args.warmup_ratio * total), args.eval_every or steps)


# -- the loop -----------------------------------------------------------------------------------
class StepLosses(nn.Module):
    """The losses of one step's batches ({task: batch} -> {task: loss}) in a single forward call:
    DistributedDataParallel expects one forward per backward, and a global step has a batch of
    every task."""

    def __init__(self, model: nn.Module, loss, args):
        super().__init__()
        self.model, self.loss, self.args = model, loss, args

    def forward(self, batches: dict) -> dict:
        return {t: self.loss(self.model, t, b, self.args) for t, b in batches.items()}


class Trainer:
    """Multitask training of `model` with `loss(model, task, batch, args)`: each optimizer step
    takes a batch of the task the sampler draws (local updates) or of every task (global),
    evaluates on dev on schedule, keeps the best weights and saves a resumable state."""

    def __init__(self, model, loss, data: dict, raw: dict, args, device, run_dir: Path, precision=FP32,
                 records: dict | None = None):
        self.model, self.loss, self.data, self.raw, self.args = model, loss, data, raw, args
        self.device, self.run_dir = device, run_dir
        self.records = records or {}  # {file name: text} written beside config.json (mlm.json)
        self.precision, self.scaler = precision, precision.scaler()  # precision.py
        self.rank, self.world = distributed.setup(device)
        self.main_rank = self.rank == 0
        self.tasks = list(args.tasks)
        sizes = {t: len(data[t, "train"]) for t in self.tasks}
        bs = {t: getattr(args, f"{t}_batch_size") or args.batch_size for t in self.tasks}
        self.plan = schedule(args, sizes, bs)
        self.streams = {t: TaskStream(data[t, "train"], bs[t], args.seed, not args.no_bucket,
                                      self.rank, self.world) for t in self.tasks}
        self.sampler = TaskSampler(sizes, args.sampling, args.sample_wt, math.ceil(args.epochs), args.seed)
        self.optimizer = build_optimizer(model, args)
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        self.shared = [p for p in model.bert.parameters() if p.requires_grad]
        self.hand_written = distributed.hand_written_reasons(args)  # distributed.py: DDP or not
        # With local updates over several tasks each step trains one head, so the set of parameters
        # left without a gradient changes from step to step: DDP must find them after every forward
        # (find_unused_parameters, a walk of the autograd graph). Otherwise every step reaches the
        # same parameters (one idle once, like the BERT pooler under mean pooling, is idle always),
        # which static_graph describes: DDP records the set at the first step and walks no more.
        varies = args.update == "local" and len(self.tasks) > 1
        self.step_losses = StepLosses(model, loss, args)
        if not self.hand_written:
            self.step_losses = distributed.data_parallel(self.step_losses, device, find_unused=varies)
        if self.world > 1 and self.main_rank:
            print(f"data parallel: hand-written all-reduce over {self.world} processes "
                  f"({', '.join(self.hand_written)})" if self.hand_written else
                  f"data parallel: DDP over {self.world} processes")
        self.dev = {t: data[t, "dev"] for t in TASKS}
        # Loop progress: everything a resumed run needs besides weights, optimizer and RNG states.
        # scaler_skipped: fp16 steps the gradient scaler skipped (overflow); not steps of the schedule.
        self.prog = {"step": 0, "history": [], "best": None, "examples": 0, "skipped": 0, "scaler_skipped": 0,
                     "loss_sum": {t: 0.0 for t in self.tasks}, "loss_n": {t: 0 for t in self.tasks},
                     "train_s": 0.0, "streams": {}}
        self.pretrained = snapshot(model.bert) if args.wise_alphas else None
        # --ema or --swa (ema.py): SWA's mean takes the last args.swa of the steps
        self.ema = (WeightAverage(model, args.ema) if args.ema else
                    WeightAverage(model, start=round((1 - args.swa) * self.plan.total)) if args.swa else None)
        # --branches (branches.py): the schedule's last 1 - branch_at is trained once per branch
        self.branches = None
        if args.branches > 1:
            if self.plan.total < 2 or self.world > 1:
                raise RunError("--branches needs a run of at least 2 steps, in one process (data parallelism "
                               "would have to fork every rank alike)")
            fork = min(max(1, round(args.branch_at * self.plan.total)), self.plan.total - 1)
            self.branches = Branches(args.branches, fork, args.seed)
        self._epoch, self._tasks = None, []
        mix = ("global updates: a batch of every task" if args.update == "global"  # no task drawn
               else f"local updates, {args.sampling} sampling")
        print(f"training {', '.join(f'{t}: {sizes[t]}' for t in self.tasks)} examples; "
              f"{self.plan.total} steps ({args.epochs:g} epochs of {self.plan.steps_per_epoch}; {mix}), "
              f"dev evaluation every {self.plan.eval_every} steps; "
              + (f"{self.branches.count} branches from step {self.branches.fork_step} "
                 f"({self.branches.steps(self.plan.total)} steps in all), their mean kept; " if self.branches else "") +
              f"{sum(p.numel() for p in model.parameters()):,} parameters")

    # -- start: a fresh run folder, or the saved state of an interrupted run ----------------------
    def start(self):
        for sub in ("state", "best"):  # a crash mid-save may have left only state.old / best.old
            recover_folder(self.run_dir / sub)
        if self.args.resume and (self.run_dir / "state").is_dir():
            self.prog = load_state(self.run_dir / "state", self.model, self.optimizer)
            for t, st in self.prog["streams"].items():
                self.streams[t].load_state_dict(st)
            self.prog.setdefault("scaler_skipped", 0)  # states saved before fp16 existed
            if self.ema:
                self.ema.load_state_dict(read_tensors(self.run_dir / "state" / EMA_FILE))
            if self.prog.get("scaler"):  # fp16: the loss scale and its growth counter, exactly
                self.scaler.load_state_dict(self.prog["scaler"])
            print(f"resumed {self.run_dir} at step {self.prog['step']} of {self.plan.total}")
        elif self.main_rank:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            clear_run(self.run_dir)  # --overwrite (or a --resume with no state yet): start afresh
            (self.run_dir / "config.json").write_text(json.dumps(vars(self.args), indent=2))
            for name, text in self.records.items():
                (self.run_dir / name).write_text(text)
        self.tracker = Tracker(self.run_dir, self.args.log_every, self.args.report_to,
                               self.prog["step"], enabled=self.main_rank)

    def run(self, t_start: float) -> dict:
        """Train to the end (or an early stop), then predict with the best weights. `t_start`:
        when the command started, for the wall time in summary.json."""
        self.start()
        total = self.branches.steps(self.plan.total) if self.branches else self.plan.total
        bar = tqdm(total=total, initial=self.prog["step"], desc="training",
                   disable=not self.main_rank)
        try:
            with StopRequest() as stop:
                while self.prog["step"] < self.plan.total:
                    # (here, not after the step: a run resumed from the fork's own step forks too)
                    if self.branches and self.prog["step"] == self.branches.fork_step and not self.branches.forked:
                        self.branches.fork(self.model, self.optimizer, self.streams, self.prog, self.scaler)
                    losses = self.step()
                    bar.update(1)
                    bar.set_postfix({t: f"{v:.3f}" for t, v in losses.items()})
                    if self.branches and self.prog["step"] == self.plan.total:
                        self.end_branch()  # the next branch starts, or the mean is in the model
                    if self.evaluates_now():
                        bar.clear()
                        self.evaluate()
                        self.checkpoint()
                        if should_stop_early(self.prog["history"], self.args.patience, self.args.min_delta, self.tasks):
                            print(f"early stop: {self.args.patience} evaluations without a better dev "
                                  f"overall; the best is from step {self.prog['best']['step']}")
                            break
                    elif self.args.save_every and self.prog["step"] % self.args.save_every == 0:
                        self.checkpoint()
                    if stop.signal:
                        saved = self.checkpoint()
                        raise RunError(f"stopped by {stop.signal} after step {self.prog['step']}; "
                                       + ("state saved" if saved else "the state saved before the branches' fork "
                                          "is kept (a resumed run trains the branches again)")
                                       + f". Continue with: python multitask_classifier.py --resume "
                                       f"{self.run_dir}", code=130)
        finally:  # end the progress line, so that an error message gets a line of its own
            bar.close()
            self.tracker.close()
        return self.finish(t_start)

    def evaluates_now(self) -> bool:
        """On the schedule; within --branches only at the end, where the mean is in the model."""
        step = self.prog["step"]
        if self.branches and self.branches.forked and step != self.plan.total:
            return False
        return self.plan.evaluates_at(step)

    def end_branch(self):
        """--branches: evaluate the branch that just ended (a record of its own, never the best),
        then fork the next one from the trunk or, after the last, merge them all."""
        self.evaluate(branch=self.branches.branch)
        self.branches.end_branch(self.model, self.optimizer, self.streams, self.prog, self.scaler)

    # -- one optimizer step -----------------------------------------------------------------------
    def step(self) -> dict:
        """A batch of one task (local) or of every task (global): losses, backward, AdamW."""
        args, prog, model = self.args, self.prog, self.model
        t0 = time.time()
        epoch, i = divmod(prog["step"], self.plan.steps_per_epoch)
        if self._epoch != epoch:  # draw the task of every step of this epoch
            self._epoch, self._tasks = epoch, self.sampler.epoch_tasks(epoch, self.plan.steps_per_epoch)
        model.train()
        done = prog["step"] - prog["scaler_skipped"]  # optimizer steps taken: where the schedule is
        for g, lr in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = lr * lr_factor(done, self.plan.total, self.plan.warmup)
        batches = {t: model.to_device(next(self.streams[t]), self.device)
                   for t in (self.tasks if args.update == "global" else [self._tasks[i]])}
        prog["examples"] += sum(len(b["index"]) for b in batches.values()) * self.world
        with self.precision.autocast():
            losses = self.step_losses(batches)  # through DDP on the plain path under torchrun
        # Judged on the mean over ranks, so that all skip alike: a rank that skipped the backward
        # alone would leave the others waiting in the gradient all-reduce.
        means = {t: distributed.mean_over_ranks(l) for t, l in losses.items()}
        bad = [t for t, v in means.items() if not math.isfinite(v)]
        if bad and not args.skip_nonfinite:
            raise RunError(f"non-finite {bad[0]} loss at step {prog['step'] + 1} (epoch {epoch + 1}); "
                           f"the last good state is in {self.run_dir / 'state'} "
                           "(--skip_nonfinite skips such batches)")
        values = {}
        if bad:
            prog["skipped"] += 1
        else:
            scale = self.scaler.scale  # fp16: losses × the loss scale (the identity otherwise)
            if args.pcgrad:  # the projection's task order is seeded by the step: resumable
                # Each loss scaled alike: projections are scale-free, so the sum is scale × PCGrad's.
                pcgrad_backward([scale(l) for l in losses.values()], self.shared,
                                random.Random(f"{args.seed}-{prog['step']}"))
            else:
                scale(sum(losses.values())).backward()
            if self.hand_written:  # otherwise DDP averaged them during the backward
                distributed.average_gradients(model)
            if not clip_and_step(self.optimizer, self.scaler, model.parameters(), args.grad_clip):
                prog["scaler_skipped"] += 1
            elif self.ema:
                self.ema.update(prog["step"] + 1)
            values = means
            for t, v in values.items():
                prog["loss_sum"][t] += v
                prog["loss_n"][t] += 1
        self.optimizer.zero_grad(set_to_none=True)
        prog["step"] += 1
        prog["train_s"] += time.time() - t0
        self.tracker.train_loss(prog["step"], values)
        return values

    # -- evaluation and checkpoints ----------------------------------------------------------------
    def dev_scores(self) -> dict:
        return {t: scores(self.model, d, self.args.eval_batch_size, self.device, f"dev {t}", self.precision,
                          self.args.mc_dropout) for t, d in self.dev.items()}

    def evaluate(self, branch: int | None = None):
        """Dev metrics now; the best weights (and their per-example dev scores) kept. With --ema or
        --swa, of the weight average: it is what gets evaluated, kept and used for predictions.
        `branch`: the end of that --branches branch, recorded but never kept as the best."""
        with self.ema.swapped_in() if self.ema else nullcontext():
            self._evaluate(branch)

    def _evaluate(self, branch: int | None = None):
        prog = self.prog
        distributed.assert_in_sync(self.model)
        dev_scores = self.dev_scores()
        metrics = dev_metrics({t: decide(t, s) for t, s in dev_scores.items()}, self.dev)
        record = {"step": prog["step"], "epoch": round(self.plan.epoch(prog["step"]), 3), **metrics,
                  **({} if branch is None else {"branch": branch}), "train_s": prog["train_s"],
                  **{f"loss_{t}": prog["loss_sum"][t] / prog["loss_n"][t] for t in self.tasks if prog["loss_n"][t]}}
        prog["history"].append(record)
        prog.update(loss_sum={t: 0.0 for t in self.tasks}, loss_n={t: 0 for t in self.tasks}, train_s=0.0)
        what = "" if branch is None else f", branch {branch}"
        if branch is None and self.branches and self.branches.forked:
            what = f", mean of {self.branches.count} branches"
        tqdm.write(f"step {prog['step']} (epoch {record['epoch']:g}{what}): {metrics_line(metrics)} "
                   f"({record['train_s']:.0f}s training)")
        if not self.main_rank:
            return
        best = prog["best"] and selection_score(prog["best"], self.tasks)
        if branch is None and is_improvement(selection_score(metrics, self.tasks), best, self.args.min_delta):
            prog["best"] = record
            save_best(self.model, self.args, self.run_dir / "best")
            save_dev_scores(self.run_dir / "dev_scores.npz", dev_scores, self.dev, self.raw_dev())
        write_metrics(prog["history"], self.run_dir / "metrics.jsonl")
        self.tracker.evaluation(record, prog["history"])

    def raw_dev(self) -> dict:
        return {t: self.raw[t, "dev"] for t in TASKS}

    def checkpoint(self) -> bool:
        """Save the resumable state; False (nothing saved) within --branches, which resume from
        the last save before the fork."""
        if self.branches and self.branches.forked:
            return False
        self.prog["streams"] = {t: s.state_dict() for t, s in self.streams.items()}
        if self.scaler.is_enabled():
            self.prog["scaler"] = self.scaler.state_dict()  # plain numbers: JSON in trainer.json
        if self.main_rank:
            save_state(self.run_dir / "state", self.model, self.optimizer, self.prog,
                       {EMA_FILE: self.ema.state_dict()} if self.ema else None)
        return True

    # -- the end: best weights, WiSE-FT, predictions, analysis, summary ----------------------------
    def finish(self, t_start: float) -> dict:
        prog, args, run_dir = self.prog, self.args, self.run_dir
        best = prog["best"]
        if not self.main_rank:
            return best
        if prog["skipped"]:
            print(f"note: {prog['skipped']} steps skipped for non-finite losses", file=sys.stderr)
        if prog["scaler_skipped"]:
            print(f"note: the fp16 gradient scaler skipped {prog['scaler_skipped']} steps whose "
                  "gradients overflowed", file=sys.stderr)
        load_weights(self.model, run_dir / "best")  # predictions come from the best evaluation's weights
        wise = self.wise_ft() if args.wise_alphas else None
        if wise and wise["alpha"] != 1.0:
            best = {**best, **wise["metrics"], "wise_alpha": wise["alpha"]}
        if not args.no_predictions:
            dev = self.saved_dev_predictions()
            test = {t: predict(self.model, self.data[t, "test"], args.eval_batch_size, self.device,
                               f"test {t}", self.precision, args.mc_dropout) for t in TASKS}
            write_prediction_files({**{(t, "dev"): dev[t] for t in TASKS},
                                    **{(t, "test"): test[t] for t in TASKS}}, self.data, args)
        from analysis import write_analysis
        write_analysis(run_dir)
        wall = time.time() - t_start
        print("\nbest dev results\n" + summary_table(prog["history"], best, wall, prog["examples"]))
        (run_dir / "summary.json").write_text(json.dumps(
            {"best": best, "wall_s": wall, "examples": prog["examples"], "steps": prog["step"],
             "parameters": sum(p.numel() for p in self.model.parameters()),
             "skipped_steps": prog["skipped"], "wise_ft": wise and wise["overall"]}, indent=2))
        return best

    def wise_ft(self) -> dict:
        """WiSE-FT: try encoder weights between the pretrained and fine-tuned ones; keep the best,
        ranked as evaluations are (selection_score: on a run with fewer tasks, by those tasks)."""
        scored = []  # (metrics, dev scores) of each α: the winner's scores are saved, not recomputed

        def score():
            dev_scores = self.dev_scores()
            scored.append((dev_metrics({t: decide(t, s) for t, s in dev_scores.items()}, self.dev), dev_scores))
            return scored[-1][0]
        alpha, metrics, overall = choose_alpha(self.model.bert, self.pretrained, self.args.wise_alphas, score,
                                               rank=lambda m: selection_score(m, self.tasks))
        print("WiSE-FT dev overall by alpha: " + ", ".join(f"{a:g}: {o:.4f}" for a, o in overall.items()))
        if alpha != 1.0:  # the mixed weights become the run's best, with their dev scores
            save_best(self.model, self.args, self.run_dir / "best")
            chosen = next(s for m, s in scored if m is metrics)
            save_dev_scores(self.run_dir / "dev_scores.npz", chosen, self.dev, self.raw_dev())
        return {"alpha": alpha, "metrics": metrics, "overall": overall}

    def saved_dev_predictions(self) -> dict:
        """The dev predictions of the best weights, from the scores saved at their evaluation
        (no second pass over dev)."""
        saved = load_dev_scores(self.run_dir / "dev_scores.npz")
        return {t: decide(t, saved[t]["scores"]) for t in TASKS}
