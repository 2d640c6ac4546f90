"""Speed of this project's encoder + heads against Hugging Face transformers, same weights, same batches.

    .venv/bin/python benchmarks/bench_speed.py [--steps 16] [--e2e_steps 30] [--out results/speed.md]
    .venv/bin/python benchmarks/bench_speed.py --para_head concat --out results/speed-concat.md
    .venv/bin/python benchmarks/bench_speed.py --short --out /tmp/speed.md    # every code path, seconds

Any other flag is a model or data flag of multitask_classifier.py (--para_head, --sts_head,
--pooling, --freeze_layers, --batch_size, --max_train_examples, --threads, ...); the default is the
main job's configuration: PARA pairs cross-encoded as one sequence "[CLS] s1 [SEP] s2 [SEP]".

Measures, on real data (SST sentences and Quora pairs, the bundled MiniLM):
  - train step (forward, loss, backward, AdamW step) and inference throughput, examples/s and
    non-pad tokens/s, for (a) mtbert and (b) transformers.BertModel with eager and sdpa attention,
    on the *same* random (unbucketed) batches encoded as the configuration reads them, with the
    same heads, pooling, losses, frozen parameters and optimizer: only the encoder differs;
  - transformers sdpa again with its linear layers on mtbert's oneDNN products (onednn.py), so
    that the lead is split into the library that multiplies and the rest of the code;
  - inference with --int8's layers (quantize.py) in mtbert and in transformers sdpa alike;
  - useful GFLOP/s (encoder FLOPs on non-pad tokens only) as a fraction of this machine's
    measured fp32 matmul peak (the faster of torch.matmul and oneDNN);
  - where mtbert's inference time goes (torch.profiler: matrix products, attention, GELU, ...),
    the ratio to transformers sdpa were everything but the matrix products free, and how much of
    the rest a ratio of 2.5x would have to remove;
  - end-to-end examples/s of the main job's training step with length-bucketed batches and
    unpadded layers, against random batches on padded layers.
--short runs all of it on a few small batches (batch 8, 256 examples per task) to check that it
works; its numbers mean nothing, so it needs an explicit --out.
`transformers` is needed (it is a test dependency).
"""
from __future__ import annotations

import argparse
import copy
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import multitask_classifier as mc  # noqa: E402
import options  # noqa: E402
from base_bert import CheckpointError, hf_names, resolve_model_dir  # noqa: E402
from batching import TASKS, TaskStream  # noqa: E402
from datasets import DataError, load  # noqa: E402
from heads import pool  # noqa: E402
from optimizer import AdamW  # noqa: E402
from quantize import quantize_encoder  # noqa: E402
import onednn  # noqa: E402
from tokenizer import BertTokenizer  # noqa: E402
from trainer import RunError, build_optimizer  # noqa: E402

# --short: benchmark settings, and model-flag defaults (explicit flags still win).
SHORT = {"steps": 2, "e2e_steps": 2, "warmup": 1, "peak_size": 256}
SHORT_MODEL = {"batch_size": 8, "max_train_examples": 256}
IMPLS = ("eager", "sdpa")


def matmul_peak(n=1024, reps=30) -> tuple[float, float]:
    """fp32 GFLOP/s of an n x n product in torch's matmul (MKL) and in oneDNN (onednn.py): the
    larger is this machine's fp32 peak (MKL runs its AVX2 code on CPUs not made by Intel)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = []
    for mm in (torch.matmul, lambda x, y: onednn.linear(x, y.t())):
        for _ in range(3):
            mm(a, b)
        t = time.perf_counter()
        for _ in range(reps):
            mm(a, b)
        out.append(2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9)
    return out[0], out[1]


def forward_flops(cfg, lengths: np.ndarray) -> float:
    """FLOPs of one encoder forward over real tokens only: every linear layer on each token, and
    attention scores + weighted sum over the sequence's own tokens (a cross-encoded pair is one
    sequence, so its attention is quadratic in the pair's length)."""
    H, I, L = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    per_token_linear = 2 * (4 * H * H + 2 * H * I)
    attn = 4 * H * (lengths.astype(np.float64) ** 2).sum()
    return L * (per_token_linear * lengths.sum() + attn)


class HFMultitask(mc.MultitaskBERT):
    """mtbert's MultitaskBERT with transformers.BertModel as its encoder. Forward, heads, pooling
    and losses are inherited, so both sides compute the same function on the same batches; the
    heads are copies of `ours`'s and the same encoder parameters are frozen."""

    def __init__(self, ours: mc.MultitaskBERT, impl: str):
        from transformers import BertModel as HFBert
        from transformers.utils import logging
        logging.disable_progress_bar()  # a bar per weight load would bury the results
        args = ours.args
        # Same dropout on both sides: attention dropout decides which CPU attention kernel runs.
        bert = HFBert.from_pretrained(str(resolve_model_dir(args.bert_model)), attn_implementation=impl,
                                      hidden_dropout_prob=args.hidden_dropout_prob, dtype=torch.float32,
                                      attention_probs_dropout_prob=ours.bert.config.attention_probs_dropout_prob)
        super().__init__(bert, args)
        heads = {k: v for k, v in ours.state_dict().items() if not k.startswith("bert.")}
        unexpected = self.load_state_dict(heads, strict=False).unexpected_keys
        assert not unexpected, f"head weights with no place in the transformers model: {unexpected}"
        # Same trainable set: frozen embeddings/layers skip their backward and AdamW work on both sides.
        theirs = dict(bert.named_parameters())
        for name, p in ours.bert.named_parameters():
            for hf in hf_names(name):
                theirs[hf].requires_grad_(p.requires_grad)

    def embed(self, task, inputs, hook=None):
        if hook is not None:
            raise ValueError("the transformers side takes no embedding hook (the benchmark's "
                             "steps are the plain task loss)")
        out = self.bert(**inputs)
        return pool(out.last_hidden_state, inputs["attention_mask"], out.pooler_output, self.args.pooling)


def load_data(margs, tok) -> dict:
    """task -> its training set (the first --max_train_examples), encoded as the model under test
    reads it: cross-encoded pairs where its PARA/STS head is a cross-encoder."""
    raw = {}
    for t in TASKS:
        examples = load(ROOT / getattr(margs, f"{t}_train"), t, True).examples
        raw[t, "train"] = examples[:margs.max_train_examples or None]
    return {t: d for (t, _), d in mc.encode_all(raw, tok, margs).items()}


def make_batches(data: dict, n_batches: int, bs: int, seed=0) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_batches):  # alternate SST and Quora, random (unbucketed) batches
        d = data["sst" if i % 2 == 0 else "para"]
        out.append((d.task, d.batch(rng.choice(len(d), min(bs, len(d)), replace=False))))
    return out


def batch_stats(batch):
    """(examples, non-pad length of every encoded sequence, padded token slots)."""
    parts = [batch["a"]] + ([batch["b"]] if "b" in batch else [])
    lengths = np.concatenate([p["attention_mask"].sum(1).numpy() for p in parts])
    padded = sum(p["attention_mask"].numel() for p in parts)
    return len(batch["index"]), lengths, padded


def step(model, task, batch):
    """The task loss, as the main job computes it; the same call on both sides."""
    return mc.task_loss(model, task, batch)[0]


def run(model, batches, train, warmup):
    opt = AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5) if train else None
    model.train(train)
    n = tokens = 0
    flops_tokens = []
    for i, (task, batch) in enumerate(batches):
        if i == warmup:
            t0 = time.perf_counter()
        if train:
            step(model, task, batch).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        else:
            with torch.inference_mode():
                step(model, task, batch)
        if i >= warmup:
            b, lengths, _ = batch_stats(batch)
            n += b
            tokens += int(lengths.sum())
            flops_tokens.append(lengths)
    dt = time.perf_counter() - t0
    return n / dt, tokens / dt, np.concatenate(flops_tokens), dt


# Where an inference pass spends its time, by torch op (self time on the calling thread): the
# matrix products of the linear layers and heads, and the rest, which the unpadded layout and
# attention groups shrink but cannot remove. Names are those of torch's CPU kernels.
PARTS = {"matrix products": ("aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm", "aten::_int_mm",
                             "mkldnn::_linear_pointwise"),
         "attention": ("scaled_dot_product",),
         "GELU": ("aten::gelu",),
         "LayerNorm": ("layer_norm",),
         "gather, scatter, grid fill and copies": (
             "aten::index_select", "aten::index_copy", "aten::zero_", "aten::fill_", "aten::copy_", "aten::cat")}


def part_of(op: str) -> str:
    return next((part for part, names in PARTS.items() if any(n in op for n in names)), "other ops")


def inference_profile(model, batches) -> dict:
    """{part: share of the inference pass's wall time} over `batches` (torch.profiler), with the
    time outside torch ops (Python, the model's own bookkeeping) as 'outside torch ops'."""
    from torch.profiler import ProfilerActivity, profile
    model.eval()
    with torch.inference_mode():
        step(model, *batches[0])  # warm-up, unprofiled
        t0 = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for task, batch in batches:
                step(model, task, batch)
        wall = time.perf_counter() - t0
    parts = dict.fromkeys([*PARTS, "other ops"], 0.0)
    for event in prof.key_averages():
        parts[part_of(event.key)] += event.self_cpu_time_total / 1e6
    parts["outside torch ops"] = max(wall - sum(parts.values()), 0.0)
    total = sum(parts.values())
    return {k: v / total for k, v in parts.items()}


def needed_cut(ratio: float, matmul_share: float, target: float = 2.5) -> str:
    """How much of the time outside matrix products a pass running `ratio`x its rival must shed to
    run `target`x: 1 - ratio/target of its whole time, all taken from the part outside them."""
    cut = 1 - ratio / target
    if cut <= 0:
        return "none (reached)"
    if cut >= 1 - matmul_share:
        return "more than all of it (the matrix products alone take longer)"
    return f"{cut / (1 - matmul_share):.0%}"


def end_to_end(margs, data, steps, warmup) -> dict:
    """examples/s of the main job's training step (mtbert only), bucketed + unpadded vs neither."""
    plan = ["sst", "para", "sts", "para", "sst", "para"] * ((steps + warmup) // 6 + 1)
    out = {}
    for label, bucket, unpad in (("bucketed + unpadded (default)", True, True),
                                 ("random batches, padded layers", False, False)):
        torch.manual_seed(0)
        model = mc.build_model(margs)
        model.bert.unpad = unpad
        opt = build_optimizer(model, margs)
        streams = {t: TaskStream(d, margs.batch_size, 0, bucket) for t, d in data.items()}
        n = 0
        for i, t in enumerate(plan[:steps + warmup]):
            if i == warmup:
                t0 = time.perf_counter()
            batch = next(streams[t])
            mc.training_loss(model, t, batch, margs).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if i >= warmup:
                n += len(batch["index"])
        out[label] = n / (time.perf_counter() - t0)
        print(f"main-job training step, {label}: {out[label]:.1f} examples/s")
    return out


def get_parser() -> argparse.ArgumentParser:
    # allow_abbrev=False: a prefix such as --steps_per must reach multitask_classifier's parser.
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 allow_abbrev=False)
    ap.add_argument("--steps", type=int, default=16, help="measured batches per configuration")
    ap.add_argument("--e2e_steps", type=int, default=30, help="measured main-job training steps")
    ap.add_argument("--warmup", type=int, default=2, help="unmeasured steps before each measurement")
    ap.add_argument("--peak_size", type=int, default=1024, help="matrix size of the matmul peak")
    ap.add_argument("--short", action="store_true",
                    help=f"check every code path in seconds: {SHORT}, model flags {SHORT_MODEL}")
    ap.add_argument("--out", default=None, help="markdown table (default results/speed.md; "
                                                 "--short needs it given)")
    return ap


def parse(argv):
    """(benchmark args, multitask_classifier args, the model flags given) from one command line."""
    ap = get_parser()
    args, rest = ap.parse_known_args(argv)
    short = []
    if args.short:  # defaults only: flags given on the command line come later and win
        ap.set_defaults(**SHORT)
        args, rest = ap.parse_known_args(argv)
        short = [x for k, v in SHORT_MODEL.items() for x in (f"--{k}", str(v))]
    return args, options.parse_args(short + rest), rest


def main(argv=None) -> int:
    args, margs, model_flags = parse(argv)
    if args.short and args.out is None:
        print("error: --short numbers are not results: give --out PATH", file=sys.stderr)
        return 2
    if margs.pal:
        print("error: --pal: the transformers encoder has no PAL layers to compare", file=sys.stderr)
        return 2
    if min(args.steps, args.e2e_steps) < 1 or args.warmup < 0:
        print("error: --steps and --e2e_steps must be at least 1, --warmup at least 0", file=sys.stderr)
        return 2
    out_path = Path(args.out or ROOT / "results/speed.md")
    if margs.threads:
        torch.set_num_threads(margs.threads)
    torch.manual_seed(0)
    try:
        tok = BertTokenizer.from_pretrained(margs.bert_model, max_length=margs.max_length)
        data = load_data(margs, tok)
        ours = mc.build_model(margs)
    except (CheckpointError, DataError, RunError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cfg, bs = ours.bert.config, margs.batch_size
    batches = make_batches(data, args.steps + args.warmup, bs)
    stats = [batch_stats(b) for _, b in batches]
    pad_frac = 1 - sum(int(s[1].sum()) for s in stats) / sum(s[2] for s in stats)
    mkl, dnn = matmul_peak(args.peak_size, 3 if args.short else 30)
    peak = max(mkl, dnn)
    print(f"fp32 matmul peak: {peak:.1f} GFLOP/s (torch.matmul {mkl:.1f}, oneDNN {dnn:.1f}); "
          f"padding in these batches: {pad_frac:.0%}")

    rows = []
    models = [("mtbert", ours)] + [(f"transformers {impl}", HFMultitask(ours, impl)) for impl in IMPLS]
    # transformers sdpa with its linear layers on mtbert's oneDNN products (onednn.convert): what
    # is left of the lead is the unpadded layout, attention groups and dropout.py
    same = copy.deepcopy(models[-1][1])
    onednn.convert(same.bert)
    models.append(("transformers sdpa, oneDNN linears", same))
    # --int8 inference (quantize.py): the same Int8Linear layers put into both encoders
    int8 = []
    for name, model in models[:3:2]:  # mtbert and transformers sdpa
        int8.append((f"{name} int8", copy.deepcopy(model)))
        quantize_encoder(int8[-1][1])
    results = {}
    for mode in ("train", "inference"):
        for name, model in models + (int8 if mode == "inference" else []):
            ex_s, tok_s, lengths, dt = run(model, batches, mode == "train", args.warmup)
            flops = forward_flops(cfg, lengths) * (3 if mode == "train" else 1) / dt / 1e9
            results[name, mode] = ex_s
            rows.append((mode, name, ex_s, tok_s, flops, flops / peak))
            print(f"{mode:9s} {name:20s} {ex_s:7.1f} ex/s {tok_s:8.0f} tok/s "
                  f"{flops:6.1f} GFLOP/s ({flops / peak:.0%} of peak)")
    e2e = end_to_end(margs, data, args.e2e_steps, args.warmup)
    shares = inference_profile(ours, batches[args.warmup:])

    pairs = "cross-encoded Quora pairs" if margs.para_head == "cross" else "Quora pairs (two sequences each)"
    lines = [f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
             f"torch {torch.__version__}, {torch.get_num_threads()} threads; fp32 matmul peak "
             f"{peak:.0f} GFLOP/s (a {args.peak_size}² product: torch.matmul {mkl:.0f}, oneDNN {dnn:.0f}; "
             f"mtbert's linear layers multiply in oneDNN, transformers' in torch.matmul's library "
             f"unless a row says otherwise). Batches: {args.steps} random batches of {bs} (SST sentences and "
             f"{pairs} alternating), {pad_frac:.0%} padding. Model flags: "
             f"{' '.join(model_flags) or 'the main job defaults'}"
             + (" (--short: a check that it runs, not a measurement)." if args.short else ".")
             + " The int8 rows (inference with --int8's layers) do the same FLOPs in int8, so their "
               "share of the fp32 peak can pass 100%.", "",
             "| mode | implementation | examples/s | non-pad tokens/s | useful GFLOP/s | of peak |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {m} | {n} | {e:.1f} | {t:.0f} | {g:.1f} | {f:.0%} |" for m, n, e, t, g, f in rows]
    lines += ["", "| ratio | train | inference |", "|---|---|---|"]
    for impl in IMPLS:
        lines.append(f"| mtbert / transformers {impl} | "
                     f"{results['mtbert', 'train'] / results[f'transformers {impl}', 'train']:.2f}x | "
                     f"{results['mtbert', 'inference'] / results[f'transformers {impl}', 'inference']:.2f}x |")
    lines.append(f"| mtbert / transformers sdpa, oneDNN linears | "
                 + " | ".join(f"{results['mtbert', m] / results['transformers sdpa, oneDNN linears', m]:.2f}x"
                              for m in ("train", "inference")) + " |")
    for theirs in ("transformers sdpa", "transformers sdpa int8"):
        lines.append(f"| mtbert int8 / {theirs} | – | "
                     f"{results['mtbert int8', 'inference'] / results[theirs, 'inference']:.2f}x |")
    # The measured reason fp32 inference can or cannot reach a target ratio: what is left outside
    # the matrix products, and how much of it a ratio of 2.5x would have to remove.
    ratio = results["mtbert", "inference"] / results["transformers sdpa", "inference"]
    mm = shares["matrix products"]
    lines += ["", "| mtbert inference, where its time goes (torch.profiler, the same batches) | share |",
              "|---|---|"]
    lines += [f"| {k} | {v:.0%} |" for k, v in shares.items()]
    lines.append(f"| bound: mtbert / transformers sdpa with all but the matrix products free | {ratio / mm:.2f}x |")
    lines.append(f"| 2.5x sdpa would remove, of the time outside matrix products | {needed_cut(ratio, mm)} |")
    lines += ["", "| main-job training step | examples/s |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in e2e.items()]
    a, b = e2e.values()
    lines.append(f"| speed-up | {a / b:.2f}x |")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
