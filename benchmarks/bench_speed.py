"""Speed of this project's encoder + heads against Hugging Face transformers, same weights, same batches.

    .venv/bin/python benchmarks/bench_speed.py [--steps 15] [--out results/speed.md]

Measures, on real data (SST sentences and Quora pairs, batch 32, the bundled MiniLM):
  - train step (forward, loss, backward, AdamW step) and inference throughput, examples/s and
    non-pad tokens/s, for (a) mtbert and (b) transformers.BertModel with eager and sdpa attention,
    on the *same* random (unbucketed) batches, with identical heads and optimizer;
  - useful GFLOP/s (FLOPs on non-pad tokens only) as a fraction of this machine's measured fp32
    matmul peak;
  - end-to-end examples/s of the main job's training step with length-bucketed batches and
    unpadded layers, against random batches on padded layers.
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
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import multitask_classifier as mc  # noqa: E402
from base_bert import resolve_model_dir  # noqa: E402
from batching import TaskStream, encode_task  # noqa: E402
from datasets import load  # noqa: E402
from heads import pair_features, pool  # noqa: E402
from optimizer import AdamW  # noqa: E402
from tokenizer import BertTokenizer  # noqa: E402


def matmul_peak(n=1024, reps=30) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9


def forward_flops(cfg, lengths: np.ndarray) -> float:
    """FLOPs of one encoder forward over real tokens only: every linear layer on each token, and
    attention scores + weighted sum over the sentence's own tokens."""
    H, I, L = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    per_token_linear = 2 * (4 * H * H + 2 * H * I)
    attn = 4 * H * (lengths.astype(np.float64) ** 2).sum()
    return L * (per_token_linear * lengths.sum() + attn)


class HFEncoder(torch.nn.Module):
    """transformers.BertModel with copies of mtbert's SST and PARA heads and the same pooling."""

    def __init__(self, folder, impl, ours):
        super().__init__()
        from transformers import BertModel as HFBert
        self.bert = HFBert.from_pretrained(folder, attn_implementation=impl)
        self.sst_head = copy.deepcopy(ours.sst_head)
        self.para_head = copy.deepcopy(ours.para_head)
        self.para_features = ours.args.para_features

    def embed(self, inputs):
        out = self.bert(**inputs).last_hidden_state
        return pool(out, inputs["attention_mask"], None, "mean")


def make_batches(tok, n_batches, bs, seed=0):
    rng = np.random.default_rng(seed)
    sst = encode_task("sst", load(ROOT / "data/ids-sst-train.csv", "sst", True).examples, tok)
    para = encode_task("para", load(ROOT / "data/quora-train.csv", "para", True).examples, tok)
    out = []
    for i in range(n_batches):  # alternate SST and Quora, random (unbucketed) batches
        data = sst if i % 2 == 0 else para
        out.append((data.task, data.batch(rng.choice(len(data), bs, replace=False))))
    return out


def batch_stats(task, batch):
    parts = [batch["a"]] + ([batch["b"]] if "b" in batch else [])
    lengths = np.concatenate([p["attention_mask"].sum(1).numpy() for p in parts])
    padded = sum(p["attention_mask"].numel() for p in parts)
    return len(batch["index"]), lengths, padded


def mtbert_step(model, task, batch, train):
    loss, _ = mc.task_loss(model, task, batch)
    return loss


def hf_step(model: HFEncoder, task, batch, train):
    if task == "sst":
        return F.cross_entropy(model.sst_head(model.embed(batch["a"])), batch["labels"])
    u, v = model.embed(batch["a"]), model.embed(batch["b"])
    logit = model.para_head(pair_features(u, v, model.para_features)).squeeze(-1)
    return F.binary_cross_entropy_with_logits(logit, batch["labels"].float())


def run(step_fn, model, batches, train, warmup=2):
    opt = AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5) if train else None
    model.train(train)
    n = tokens = 0
    flops_tokens = []
    for i, (task, batch) in enumerate(batches):
        if i == warmup:
            t0 = time.perf_counter()
        if train:
            step_fn(model, task, batch, True).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        else:
            with torch.inference_mode():
                step_fn(model, task, batch, False)
        if i >= warmup:
            b, lengths, _ = batch_stats(task, batch)
            n += b
            tokens += int(lengths.sum())
            flops_tokens.append(lengths)
    dt = time.perf_counter() - t0
    return n / dt, tokens / dt, np.concatenate(flops_tokens), dt


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=16, help="measured batches per configuration")
    ap.add_argument("--e2e_steps", type=int, default=30, help="measured main-job training steps")
    ap.add_argument("--out", default="results/speed.md")
    args = ap.parse_args()
    torch.manual_seed(0)
    folder = str(resolve_model_dir("minilm"))
    tok = BertTokenizer.from_pretrained("minilm")
    margs = mc.get_parser().parse_args(["--hidden_dropout_prob", "0.1"])
    ours = mc.build_model(margs)
    cfg = ours.bert.config
    batches = make_batches(tok, args.steps + 2, 32)
    pad_frac = 1 - sum(int(batch_stats(t, b)[1].sum()) for t, b in batches) / sum(
        batch_stats(t, b)[2] for t, b in batches)
    peak = matmul_peak()
    print(f"fp32 matmul peak: {peak:.1f} GFLOP/s; padding in these batches: {pad_frac:.0%}")

    rows = []
    models = [("mtbert", ours, mtbert_step)]
    for impl in ("eager", "sdpa"):
        hf = HFEncoder(folder, impl, ours)  # ours' heads: identical head work
        models.append((f"transformers {impl}", hf, hf_step))
    results = {}
    for mode in ("train", "inference"):
        for name, model, fn in models:
            ex_s, tok_s, lengths, dt = run(fn, model, batches, mode == "train")
            flops = forward_flops(cfg, lengths) * (3 if mode == "train" else 1) / dt / 1e9
            results[name, mode] = ex_s
            rows.append((mode, name, ex_s, tok_s, flops, flops / peak))
            print(f"{mode:9s} {name:20s} {ex_s:7.1f} ex/s {tok_s:8.0f} tok/s "
                  f"{flops:6.1f} GFLOP/s ({flops / peak:.0%} of peak)")

    # End-to-end: the main job's training step (sqrt-sampled tasks) on its real batching.
    e2e = {}
    sst_ex = load(ROOT / "data/ids-sst-train.csv", "sst", True).examples
    para_ex = load(ROOT / "data/quora-train.csv", "para", True).examples
    sts_ex = load(ROOT / "data/sts-train.csv", "sts", True).examples
    data = {"sst": encode_task("sst", sst_ex, tok), "para": encode_task("para", para_ex, tok),
            "sts": encode_task("sts", sts_ex, tok)}
    plan = ["sst", "para", "sts", "para", "sst", "para"] * (args.e2e_steps // 6 + 1)
    for label, bucket, unpad in (("bucketed + unpadded (default)", True, True),
                                 ("random batches, padded layers", False, False)):
        torch.manual_seed(0)
        model = mc.build_model(margs)
        model.bert.unpad = unpad
        opt = mc.build_optimizer(model, margs)
        streams = {t: TaskStream(d, 32, 0, bucket) for t, d in data.items()}
        n = 0
        for i, t in enumerate(plan[:args.e2e_steps + 2]):
            if i == 2:
                t0 = time.perf_counter()
            batch = next(streams[t])
            mc.training_loss(model, t, batch, margs).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if i >= 2:
                n += len(batch["index"])
        e2e[label] = n / (time.perf_counter() - t0)
        print(f"main-job training step, {label}: {e2e[label]:.1f} examples/s")

    lines = [f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
             f"torch {torch.__version__}, {torch.get_num_threads()} threads; fp32 matmul peak "
             f"{peak:.0f} GFLOP/s. Batches: {args.steps} random batches of 32 (SST sentences and "
             f"Quora pairs alternating), {pad_frac:.0%} padding.", "",
             "| mode | implementation | examples/s | non-pad tokens/s | useful GFLOP/s | of peak |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {m} | {n} | {e:.1f} | {t:.0f} | {g:.1f} | {f:.0%} |" for m, n, e, t, g, f in rows]
    lines += ["", "| ratio | train | inference |", "|---|---|---|"]
    for impl in ("eager", "sdpa"):
        lines.append(f"| mtbert / transformers {impl} | "
                     f"{results['mtbert', 'train'] / results[f'transformers {impl}', 'train']:.2f}x | "
                     f"{results['mtbert', 'inference'] / results[f'transformers {impl}', 'inference']:.2f}x |")
    lines += ["", "| main-job training step | examples/s |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in e2e.items()]
    a, b = e2e.values()
    lines.append(f"| speed-up | {a / b:.2f}x |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
