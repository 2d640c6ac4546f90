"""In-domain masked-language-model training of the encoder, before fine-tuning: further
pre-training on the tasks' own text (Sun et al. 2019, "How to Fine-Tune BERT for Text
Classification"; the best CS224N projects on these three tasks used it).

    python pretrain_mlm.py runs/mlm-minilm                  # ~1 pass over the training text
    python multitask_classifier.py --bert_model runs/mlm-minilm --mlm_epochs 0   # fine-tune from it

The main job does both with --mlm_epochs 1: `cached_encoder` below trains the encoder once
into a cache folder named by everything it depends on, and every later run with the same base,
training text and settings starts from it (the fine-tuning seed is not among them).

Text: the training files of the three tasks, labels unused: SST sentences and STS sentences one
by one, Quora questions as pairs. That is how the default heads encode them (STS bi-encoded, PARA
cross-encoded), so masked words of a question pair may be read from the other question. No dev or
test text: the dev scores that judge this must not have seen their own sentences.

The MLM head: all-MiniLM-L6-v2 ships none, so it is new: dense + GELU + LayerNorm, then the
decoder, tied to the word embeddings (frozen here as in fine-tuning) plus a bias. It trains at
--head_lr from the first step while the encoder warms up, so that the encoder's first updates do
not chase a random head's errors. 15% of the real tokens (never [CLS]/[SEP]/padding) are
predicted; of those 80% are replaced by [MASK], 10% by a random token, 10% kept (BERT's recipe).

OUT_DIR is a checkpoint folder like any other (config.json, vocab.txt, tokenizer_config.json,
model.safetensors under Hugging Face's BertModel names) plus mlm.json (arguments, loss curve).
The head is not saved: fine-tuning does not use it.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import re
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

import distributed
from base_bert import WEIGHT_FILES, CheckpointError, resolve_model_dir
from bert import BertModel
from checkpoint import sha256
from datasets import DataError, load
from export import ENCODER, hf_config, split_state, write_export
from optimizer import AdamW
from run_folder import waiting_lock
from tokenizer import BertTokenizer
from trainer import lr_factor

DATA = Path(__file__).resolve().parent / "data"
TRAIN_FILES = {"sst": "ids-sst-train.csv", "para": "quora-train.csv", "sts": "sts-train.csv"}
COPIED = ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json")  # where the base has them


class MLMHead(nn.Module):
    """Hidden states of the predicted positions [M, H] -> logits over the vocabulary [M, V]."""

    def __init__(self, word_embeddings: nn.Embedding, eps: float):
        super().__init__()
        hidden = word_embeddings.weight.shape[1]
        self.dense = nn.Linear(hidden, hidden)
        self.norm = nn.LayerNorm(hidden, eps=eps)
        self.decoder = word_embeddings.weight  # tied: the input vocabulary is the output one
        self.bias = nn.Parameter(torch.zeros(word_embeddings.weight.shape[0]))
        nn.init.normal_(self.dense.weight, std=0.02)
        nn.init.zeros_(self.dense.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.norm(F.gelu(self.dense(h))) @ self.decoder.T + self.bias


def corpus(files: dict[str, Path]) -> list[tuple[str, str | None]]:
    """Unique training texts of the files (see `texts`)."""
    return texts({task: load(path, task, labelled=True).examples for task, path in files.items()})


def texts(examples: dict[str, list]) -> list[tuple[str, str | None]]:
    """Unique texts of task -> examples: SST and STS sentences alone, Quora pairs as pairs (first
    seen kept), in the order of the tasks given."""
    seen, out = set(), []
    for task, rows in examples.items():
        for ex in rows:
            items = [(ex.sent1, ex.sent2)] if task == "para" else [(s, None) for s in (ex.sent1, ex.sent2) if s]
            for item in items:
                if item not in seen:
                    seen.add(item)
                    out.append(item)
    return out


def mask_tokens(ids: torch.Tensor, attention: torch.Tensor, special: list[int], mask_id: int,
                vocab: int, g: torch.Generator, p: float = 0.15) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels): labels are -100 except at the positions to predict."""
    candidates = attention.bool() & ~torch.isin(ids, torch.tensor(special))
    chosen = candidates & (torch.rand(ids.shape, generator=g) < p)
    labels = ids.masked_fill(~chosen, -100)
    u = torch.rand(ids.shape, generator=g)
    inputs = ids.masked_fill(chosen & (u < 0.8), mask_id)
    swap = chosen & (u >= 0.8) & (u < 0.9)
    return torch.where(swap, torch.randint(vocab, ids.shape, generator=g), inputs), labels


def mlm_loss(bert: BertModel, head: MLMHead, batch: dict) -> torch.Tensor:
    hidden = bert(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])["last_hidden_state"]
    where = batch["labels"] != -100
    return F.cross_entropy(head(hidden[where]), batch["labels"][where])


def batches(items: list, tokenizer: BertTokenizer, batch_size: int, seed: int):
    """Endless shuffled passes over `items`: each batch a list of one or two padded parts (its
    single texts, its pairs), as the tokenizer pads either but not both in one grid."""
    rng = random.Random(seed)
    while True:
        order = list(range(len(items)))
        rng.shuffle(order)
        for i in range(0, len(order) - batch_size + 1, batch_size):
            chunk = [items[j] for j in order[i:i + batch_size]]
            singles = [a for a, b in chunk if b is None]
            pairs = [(a, b) for a, b in chunk if b is not None]
            yield ([tokenizer(singles)] if singles else []) + (
                [tokenizer([a for a, _ in pairs], [b for _, b in pairs])] if pairs else [])


def save(bert: BertModel, base: Path, out: Path, info: dict, overwrite: bool):
    state = {ENCODER + k: v for k, v in bert.state_dict().items()}
    encoder, _ = split_state(state)
    texts = {"config.json": json.dumps(hf_config(bert.config.to_dict()), indent=2),
             "mlm.json": json.dumps(info, indent=2)}
    files = {name: base / name for name in COPIED if (base / name).is_file()}
    write_export(out, texts, {"model.safetensors": encoder}, files, overwrite)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir", type=Path, help="checkpoint folder to write")
    p.add_argument("--bert_model", default="minilm", help="the encoder to start from (as multitask_classifier.py)")
    for task, file in TRAIN_FILES.items():
        p.add_argument(f"--{task}_train", type=Path, default=DATA / file)
    p.add_argument("--epochs", type=float, default=1.0, help="passes over the text (fractions allowed)")
    p.add_argument("--steps", type=int, default=0, help="optimizer steps, overriding --epochs (tests)")
    p.add_argument("--batch_size", type=int, default=64, help="texts per step")
    p.add_argument("--lr", type=float, default=5e-5, help="peak learning rate of the encoder")
    p.add_argument("--head_lr", type=float, default=1e-3, help="learning rate of the new MLM head")
    p.add_argument("--warmup_ratio", type=float, default=0.1)
    p.add_argument("--mask_prob", type=float, default=0.15)
    p.add_argument("--max_length", type=int, default=128)
    p.add_argument("--seed", type=int, default=11711)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--use_gpu", action="store_true", help="train on the GPU (CUDA)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it exists")
    return p


def pretrain(bert_model: str, items: list, out: Path, s: argparse.Namespace, overwrite: bool = False,
             device: torch.device = torch.device("cpu")) -> dict:
    """Train `bert_model` by MLM on `items` with the settings `s` (the parser's fields) and write
    the encoder to `out`; returns what mlm.json records. Seeded by s.seed alone, so the encoder
    does not depend on what ran before in the process (the main job's fine-tuning seed)."""
    torch.manual_seed(s.seed)
    base = resolve_model_dir(bert_model)
    tokenizer = BertTokenizer.from_pretrained(bert_model, s.max_length)
    mask_id = tokenizer.tok.token_to_id("[MASK]")
    if mask_id is None:
        raise CheckpointError(f"{base / 'vocab.txt'}: vocabulary lacks [MASK]")
    bert = BertModel.from_pretrained(bert_model, verbose=False)
    bert.train()
    bert.embeddings.word_embeddings.weight.requires_grad_(False)  # frozen, as fine-tuning keeps them
    head = MLMHead(bert.embeddings.word_embeddings, bert.config.layer_norm_eps)
    bert.to(device), head.to(device)
    total = s.steps or max(1, math.ceil(s.epochs * len(items) / s.batch_size))
    warmup = int(s.warmup_ratio * total)
    groups = [{"params": [p for p in bert.parameters() if p.requires_grad], "lr": s.lr, "peak": s.lr,
               "weight_decay": 0.01},
              {"params": [p for n, p in head.named_parameters() if n != "decoder"], "lr": s.head_lr,
               "peak": s.head_lr, "weight_decay": 0.0}]
    opt = AdamW(groups)
    g = torch.Generator().manual_seed(s.seed)  # masks drawn on the CPU, the same on any device
    special = [tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id]
    stream = batches(items, tokenizer, s.batch_size, s.seed)
    curve, window, start = [], [], time.time()
    bar = tqdm(range(total), desc="mlm", unit="step", disable=None)
    for step in bar:
        # The encoder warms up from 0; the head trains at its peak from the start (see above).
        groups[0]["lr"] = s.lr * lr_factor(step, total, warmup)
        groups[1]["lr"] = s.head_lr * lr_factor(step, total, 0)
        loss = torch.zeros((), device=device)
        for part in next(stream):
            inputs, labels = mask_tokens(part["input_ids"], part["attention_mask"], special, mask_id,
                                         tokenizer.vocab_size, g, s.mask_prob)
            if (labels != -100).any():
                batch = {k: v.to(device) for k, v in {**part, "input_ids": inputs, "labels": labels}.items()}
                loss = loss + mlm_loss(bert, head, batch) * part["input_ids"].shape[0] / s.batch_size
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for grp in groups for p in grp["params"]], 1.0)
        opt.step()
        window.append(loss.item())
        if step % 50 == 0 or step == total - 1:  # the curve: the mean loss of the steps since the last point
            mean = sum(window) / len(window)
            curve.append({"step": step, "loss": round(mean, 4)})
            window = []
            bar.set_postfix(loss=f"{mean:.3f}")
            if bar.disable:  # no terminal (a log file): a line now and then instead of the bar
                print(f"mlm step {step + 1}/{total}: loss {mean:.3f}", file=sys.stderr, flush=True)
    info = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(s).items()},
            "texts": len(items), "steps": total, "minutes": round((time.time() - start) / 60, 2),
            "loss": curve}
    save(bert.cpu(), base, out, info, overwrite)
    return info


# -- the main job's stage: one encoder per base, text and settings, trained once -----------------
SETTINGS = ("epochs", "steps", "batch_size", "lr", "head_lr", "warmup_ratio", "mask_prob", "max_length", "seed")


def defaults() -> argparse.Namespace:
    """The MLM settings (SETTINGS) at the command line's defaults."""
    parser = get_parser()
    return argparse.Namespace(**{k: parser.get_default(k) for k in SETTINGS})


def cache_name(bert_model: str, items: list, s: argparse.Namespace) -> str:
    """LABEL-HASH: HASH covers the base checkpoint's weights (their content: a copy of the same
    checkpoint elsewhere, or reinstalled, reuses the encoder; an edited one does not), every text
    in order and every setting, so a changed input never reuses an old encoder. Hashing reads the
    weights once (0.05-0.07 s for MiniLM's 91 MB here)."""
    base = resolve_model_dir(bert_model).resolve()
    weights = [(f.name, sha256(f)) for f in sorted(base.iterdir()) if f.name in WEIGHT_FILES]
    h = hashlib.sha256(json.dumps({"weights": weights, "settings": {k: getattr(s, k) for k in SETTINGS}}).encode())
    for a, b in items:
        h.update(f"{a}\t{b}\n".encode())
    label = "minilm" if bert_model == "minilm" else re.sub(r"[^\w.-]+", "_", base.name) or "base"
    return f"{label}-mlm-{h.hexdigest()[:12]}"


def cached_encoder(bert_model: str, examples: dict[str, list], epochs: float, max_length: int, root: Path,
                   device: torch.device = torch.device("cpu")) -> tuple[Path, dict]:
    """The main job's --mlm_epochs: the folder of `bert_model` trained by MLM on the texts of
    `examples` (pretrain_mlm.py's other settings at their defaults), trained now unless a run
    before this one left it in `root`; and its mlm.json plus whether it was reused. Under torchrun
    rank 0 trains it while the other ranks wait for the folder."""
    s = defaults()
    s.epochs, s.max_length, s.bert_model = epochs, max_length, bert_model
    items = texts(examples)
    folder = Path(root) / cache_name(bert_model, items, s)
    done = folder / "mlm.json"  # written with the weights, renamed into place with them
    if not distributed.main_process():
        reused = done.is_file()
        while not done.is_file():  # rank 0 is training it
            time.sleep(5)
    else:
        # two runs at once (a sweep with JOBS=2): the second waits, then reuses the first's
        with waiting_lock(folder.with_name(f".{folder.name}.lock"),
                          f"in-domain MLM: another run is training {folder}; waiting for it"):
            reused = done.is_file()
            if reused:
                print(f"in-domain MLM encoder: {folder} (trained by an earlier run: reused)", file=sys.stderr)
            else:
                print(f"in-domain MLM of {bert_model}: {len(items):,} training texts, {epochs:g} pass(es), "
                      f"into {folder}", file=sys.stderr)
                pretrain(bert_model, items, folder, s, overwrite=True, device=device)
    return folder, {**json.loads(done.read_text()), "reused": reused}


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    if args.out_dir.is_dir() and any(args.out_dir.iterdir()) and not args.overwrite:
        print(f"error: {args.out_dir}: folder exists and is not empty; pass --overwrite to replace it",
              file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.use_gpu and not torch.cuda.is_available():
        print("error: --use_gpu given but CUDA is not available", file=sys.stderr)
        return 2
    try:
        items = corpus({t: getattr(args, f"{t}_train") for t in TRAIN_FILES})
        info = pretrain(args.bert_model, items, args.out_dir, args, args.overwrite,
                        torch.device("cuda" if args.use_gpu else "cpu"))
    except (CheckpointError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.out_dir}: {info['steps']} steps over {info['texts']} texts in {info['minutes']} min, "
          f"loss {info['loss'][0]['loss']} -> {info['loss'][-1]['loss']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
