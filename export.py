"""Export a run's fine-tuned encoder as one folder that transformers, sentence-transformers and
mtbert all load.

    python export.py RUN_DIR OUT_DIR [--overwrite]     # RUN_DIR: a run folder or its best/

OUT_DIR is at the same time
  - a Hugging Face BERT checkpoint: config.json, model.safetensors (BertModel's key names:
    separate query/key/value, encoder.layer.N.*), vocab.txt, tokenizer.json, tokenizer_config.json,
    special_tokens_map.json -> transformers.AutoModel / AutoTokenizer.from_pretrained(OUT_DIR);
  - a sentence-transformers model: modules.json (Transformer, Pooling, and for --pooling pooler a
    tanh Dense layer holding the pooler weights), sentence_bert_config.json, 1_Pooling/ ->
    SentenceTransformer(OUT_DIR).encode(...) gives the run's sentence embeddings;
  - mtbert's task heads: heads.safetensors (every tensor that is not the encoder) and heads.json
    (the run's arguments) -> `multitask_classifier.py --eval_only --checkpoint OUT_DIR` predicts
    as the run did, `--bert_model OUT_DIR` fine-tunes from the encoder;
  - README.md, a model card written from the run (metrics.jsonl, summary.json, arguments, data).
A run trained with --pal has task-specific attention inside the encoder: no single BERT to export.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import re
import secrets
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

import multitask_classifier as mc
import options
from base_bert import CheckpointError, hf_names
from batching import TASKS
from bert import BertModel
from checkpoint import read_json, read_tensors, recover_folder, verify_folder
from config import BertConfig, ConfigError
from datasets import DataError, load
from evaluation import METRIC_NAMES
from replay import BOOKKEEPING, args_to_argv
from run_folder import alive

ROOT = Path(__file__).resolve().parent
ENCODER = "bert."  # MultitaskBERT's prefix of the encoder's tensors; everything else is a head
SPECIAL_TOKENS = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                  "cls_token": "[CLS]", "mask_token": "[MASK]"}
# Hub ids of the public sources of the course's data, for the model card's metadata.
HUB_DATASETS = {"sst": "stanfordnlp/sst", "para": "nyu-mll/glue", "sts": "mteb/stsbenchmark-sts"}
TASK_NAMES = {"sst": "SST-5 sentiment", "para": "Quora paraphrase", "sts": "STS similarity"}


# -- reading the run ---------------------------------------------------------------------------
def find_run(path: Path) -> tuple[Path, Path | None]:
    """(best/ folder, run folder or None) of RUN_DIR, which may be the run folder or its best/."""
    if not path.is_dir():
        raise CheckpointError(f"{path}: folder not found")
    recover_folder(path / "best")  # a crash while best/ was being replaced leaves best.old
    if (path / "best").is_dir():
        path = path / "best"
    if not ((path / "model.safetensors").is_file() and (path / "args.json").is_file()):
        raise CheckpointError(f"{path}: not a run folder (expected best/model.safetensors and "
                              "best/args.json, as multitask_classifier.py writes them)")
    verify_folder(path)  # every file of best/ as it was saved, before any is read
    run = path.parent if (path.parent / "metrics.jsonl").is_file() else None
    return path, run


def split_state(state: dict) -> tuple[dict, dict]:
    """MultitaskBERT's state dict -> (encoder under Hugging Face BertModel names, heads as they are).
    The inverse of base_bert's loading: hf_names says which Hugging Face tensors each of ours is
    made of, and the fused QKV projection is cut back into query, key and value."""
    encoder, heads = {}, {}
    for name, tensor in state.items():
        if not name.startswith(ENCODER):
            heads[name] = tensor
            continue
        parts = hf_names(name[len(ENCODER):])
        # clone: safetensors refuses tensors that share memory, as chunks of one tensor do
        for hf, chunk in zip(parts, tensor.chunk(len(parts), 0)):
            encoder[hf] = chunk.clone()
    return encoder, heads


def lowercases(best: Path) -> bool:
    """The run's casing, read as tokenizer.BertTokenizer reads it (uncased when unsaid)."""
    cfg = best / "tokenizer_config.json"
    return bool(read_json(cfg).get("do_lower_case", True)) if cfg.is_file() else True


def data_file(value: str) -> Path:
    """A data path from the run's arguments: as given (the run's working folder is usually this
    repository), else relative to the repository."""
    path = Path(value)
    return path if path.is_absolute() or path.exists() else ROOT / path


def count_rows(value: str, task: str, strict: bool) -> int | None:
    """Rows a run reads from a labelled file (bad rows skipped as in training); None if unreadable."""
    try:
        return len(load(data_file(value), task, labelled=True, strict=strict).examples)
    except DataError:
        return None


def read_metrics(run: Path | None) -> list[dict]:
    """metrics.jsonl's dev evaluations; lines that are not JSON objects are skipped."""
    rows = []
    if run is None:
        return rows
    for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def model_arguments(saved: dict) -> dict:
    """The run's arguments without its data files and outputs (paths of the machine it ran on):
    what rebuilds MultitaskBERT; multitask_classifier's parser fills in the rest as defaults."""
    return {k: v for k, v in saved.items()
            if k not in BOOKKEEPING and not k.endswith(("_out", "_train", "_dev", "_test"))}


# -- the files of the export -------------------------------------------------------------------
def hf_config(bert: dict) -> dict:
    """config.json for transformers: our BertConfig's fields plus those it needs to pick the class."""
    return {"architectures": ["BertModel"], "model_type": "bert", **bert,
            "position_embedding_type": "absolute", "classifier_dropout": None, "use_cache": False}


def tokenizer_texts(vocab: Path, lowercase: bool, max_length: int) -> dict[str, str]:
    """tokenizer.json, tokenizer_config.json, special_tokens_map.json for this vocabulary and casing.
    model_max_length = the run's --max_length, so `truncation=True` cuts where mtbert did."""
    from tokenizers.implementations import BertWordPieceTokenizer
    tok = BertWordPieceTokenizer(str(vocab), lowercase=lowercase, strip_accents=None,
                                 clean_text=True, handle_chinese_chars=True)
    vocab_ids = tok.get_vocab()
    if [t for k, t in SPECIAL_TOKENS.items() if k != "mask_token" and t not in vocab_ids]:
        raise CheckpointError(f"{vocab}: vocabulary lacks one of [UNK] [SEP] [PAD] [CLS]")
    special = {k: t for k, t in SPECIAL_TOKENS.items() if t in vocab_ids}  # [MASK] only where it is
    config = {"tokenizer_class": "BertTokenizer", "do_lower_case": lowercase, "strip_accents": None,
              "tokenize_chinese_chars": True, "do_basic_tokenize": True, "never_split": None,
              "model_max_length": max_length, **special}
    return {"tokenizer.json": tok.to_str(pretty=True),
            "tokenizer_config.json": json.dumps(config, indent=2),
            "special_tokens_map.json": json.dumps(special, indent=2)}


def sentence_transformers_files(pooling: str, hidden: int, max_length: int,
                                encoder: dict) -> tuple[dict[str, str], dict[str, dict]]:
    """(text files, tensor files) of the sentence-transformers modules that pool as the run did.
    Written in the classic module layout, which every sentence-transformers release reads."""
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    pool = {"word_embedding_dimension": hidden, "pooling_mode_cls_token": pooling != "mean",
            "pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False}
    # do_lower_case here would lowercase the text a second time, in Python, before tokenizer.json's
    # own normalizer does: not always the same thing (a word-final Greek sigma), so it stays off.
    texts = {"sentence_bert_config.json": json.dumps({"max_seq_length": max_length, "do_lower_case": False}),
             "config_sentence_transformers.json": json.dumps(
                 {"prompts": {}, "default_prompt_name": None, "similarity_fn_name": "cosine"}, indent=2),
             "1_Pooling/config.json": json.dumps(pool, indent=2)}
    tensors = {}
    if pooling == "pooler":  # BERT's pooler is tanh(W·h_CLS + b): CLS pooling, then a tanh Dense
        modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
        texts["2_Dense/config.json"] = json.dumps(
            {"in_features": hidden, "out_features": hidden, "bias": True,
             "activation_function": "torch.nn.modules.activation.Tanh"}, indent=2)
        tensors["2_Dense/model.safetensors"] = {"linear.weight": encoder["pooler.dense.weight"].clone(),
                                                "linear.bias": encoder["pooler.dense.bias"].clone()}
    texts["modules.json"] = json.dumps(modules, indent=2)
    return texts, tensors


def write_export(out: Path, texts: dict[str, str], tensors: dict[str, dict], files: dict[str, Path],
                 overwrite: bool):
    """Write everything into a temporary folder beside OUT, then rename it to OUT: a failed export
    leaves no half folder. The temporary name is this process's own (OUT.HOST-PID-XXXX.tmp), so two
    processes writing the same OUT at once (even on two machines sharing the folder) do not write
    into each other's files."""
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise CheckpointError(f"{out}: folder exists and is not empty; pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    host = re.sub(r"[^\w.]+", "_", platform.node()) or "host"
    clear_leftovers(out, host)
    # (not tempfile.mkdtemp: its folder is private to the user, and the rename would keep that)
    tmp = out.with_name(f"{out.name}.{host}-{os.getpid()}-{secrets.token_hex(4)}.tmp")
    tmp.mkdir()
    try:
        for name, text in texts.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_text(text, encoding="utf-8")
        for name, state in tensors.items():  # "format": transformers checks it when loading
            save_file({k: v.contiguous() for k, v in state.items()}, str(tmp / name), metadata={"format": "pt"})
        for name, src in files.items():
            shutil.copyfile(src, tmp / name)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:  # Ctrl-C too: the name is this process's, so no later export clears it
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def clear_leftovers(out: Path, host: str):
    """Remove the temporary folders of exports to OUT that were killed outright (SIGKILL, a power
    cut: no handler ran): those of this machine whose process is gone. Another machine's, or a
    live process's, are left alone."""
    mine = re.compile(rf"{re.escape(out.name)}\.{re.escape(host)}-(\d+)-[0-9a-f]{{8}}\.tmp")
    for p in out.parent.iterdir():
        m = mine.fullmatch(p.name)
        if m and p.is_dir() and not p.is_symlink() and not alive(m.group(1)):
            shutil.rmtree(p, ignore_errors=True)


# -- the model card ----------------------------------------------------------------------------
def base_model_id(name: str) -> str | None:
    """The hub id of the model the run started from; None for a local folder (no id to give)."""
    if name == "minilm":
        return "sentence-transformers/all-MiniLM-L6-v2"
    return None if Path(name).expanduser().exists() else name


def shown(key: str, value) -> str:
    """An argument's value for the card: data files by name only (not the paths of the machine)."""
    if key.endswith(("_train", "_dev", "_test")) or (key == "bert_model" and Path(str(value)).exists()):
        return Path(str(value)).name
    if isinstance(value, list):
        return " ".join(map(str, value)) or "(none)"
    return str(value)


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def when(row: dict) -> str:
    """Which evaluation a metrics row is: its epoch and step, as far as the run recorded them."""
    return " ".join(f"{k} {row[k]:g}" if isinstance(row[k], (int, float)) else f"{k} {row[k]}"
                    for k in ("epoch", "step") if k in row)


def fmt(row: dict, key: str) -> str:
    value = row.get(key)
    return f"{value:.4f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "–"


POOLING = {"mean": "the mean of the token embeddings (padding excluded)", "cls": "the [CLS] token embedding",
           "pooler": "BERT's pooler, tanh(W·h_[CLS] + b) (in sentence-transformers: CLS pooling, then a tanh Dense)"}
EMBED = {"mean": ['mask = batch["attention_mask"].unsqueeze(-1).float()',
                  "embeddings = (out.last_hidden_state * mask).sum(1) / mask.sum(1)"],
         "cls": ["embeddings = out.last_hidden_state[:, 0]"],
         "pooler": ["embeddings = out.pooler_output"]}


def front_matter(base: str | None, tasks: list[str]) -> list[str]:
    """The hub's YAML metadata block."""
    tags = ("sentence-transformers", "feature-extraction", "sentence-similarity", "transformers", "bert",
            "multitask", "mtbert")
    return ["---", "library_name: sentence-transformers", "pipeline_tag: sentence-similarity",
            "tags:", *[f"- {t}" for t in tags], *([f"base_model: {base}"] if base else []),
            "datasets:", *[f"- {d}" for d in dict.fromkeys(HUB_DATASETS[t] for t in tasks)],
            "metrics:", "- accuracy", "- pearsonr", "---", ""]


def data_section(args, tasks: list[str], used: dict) -> list[str]:
    cap = args.max_train_examples
    L = ["## Data", "",
         ("The CS224N default-project release: SST-5 (Stanford Sentiment Treebank, 5 classes), a subset of "
          "Quora Question Pairs (binary), STS Benchmark (similarity 0-5)."
          + (f" Training was capped at {cap} examples per task (`--max_train_examples`)." if cap else "")), "",
         "| task | train file | training rows used | dev file | dev rows |", "|---|---|---|---|---|"]
    for t in TASKS:
        dev = count_rows(getattr(args, f"{t}_dev"), t, args.strict)
        rows = "not trained" if t not in tasks else str(used[t][0]) if t in used else "file not found at export"
        train, dev_file = (shown(f"{t}_{s}", getattr(args, f"{t}_{s}")) for s in ("train", "dev"))
        L.append(f"| {TASK_NAMES[t]} | {train} | {rows} | {dev_file} | {'–' if dev is None else dev} |")
    return L + [""]


def config_section(args) -> list[str]:
    """The flags that differ from the defaults as a command line, then every argument."""
    saved, defaults = vars(args), vars(options.parse_args([]))
    keys = [k for k in saved if k not in BOOKKEEPING and not k.endswith("_out")]
    changed = [k for k in keys if saved[k] != defaults.get(k)]
    argv = args_to_argv({k: shown(k, saved[k]) if isinstance(saved[k], str) else saved[k] for k in changed},
                        options.get_parser())
    return ["## Configuration", "", "Flags that differ from `multitask_classifier.py`'s defaults (data files by name):",
            "", "    python multitask_classifier.py " + (" ".join(argv) or "(all defaults)"), "",
            "<details><summary>Every argument</summary>", "", "| argument | value |", "|---|---|",
            *[f"| `--{k}` | {shown(k, saved[k])}{'' if k in changed else ' (default)'} |"
              for k in [*changed, *[k for k in keys if k not in changed]]],
            "", "</details>", ""]


def results_section(metrics: list[dict], best: dict) -> list[str]:
    cols = [*METRIC_NAMES.values(), "overall"]
    L = ["## Dev results", "",
         ("One row per dev evaluation of the run (`metrics.jsonl`); "
          "overall = (SST acc + PARA acc + (STS r + 1) / 2) / 3."), "",
         "| evaluation | SST acc | PARA acc | STS r | overall |", "|---|---|---|---|---|"]
    L += [f"| {when(row) or f'#{i}'} | " + " | ".join(fmt(row, c) for c in cols) + " |"
          for i, row in enumerate(metrics, 1)]
    if not metrics:
        L.append("| (no metrics.jsonl beside this checkpoint) | – | – | – | – |")
    if best:
        wise = f"; WiSE-FT α = {best['wise_alpha']}" if "wise_alpha" in best else ""
        L.append(f"| **exported weights** ({when(best) or 'best dev overall'}{wise}) | "
                 + " | ".join(f"**{fmt(best, c)}**" for c in cols) + " |")
    return L + [""]


def environment_section(args, summary: dict) -> list[str]:
    """Wall time from summary.json; the device from the run's arguments; the rest from this machine."""
    L = ["## Training cost and environment", ""]
    if isinstance(summary.get("wall_s"), (int, float)):
        seen = summary.get("examples")
        L.append(f"- wall time: {summary['wall_s'] / 60:.1f} min for the whole run (loading, training, "
                 "evaluations, predictions)" + (f", {seen:,} training examples seen" if isinstance(seen, int) else ""))
    device = "cpu"
    if args.use_gpu:
        device = "cuda" + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "")
    packages = ("torch", "transformers", "sentence-transformers", "tokenizers", "safetensors")
    return L + [f"- torch device: {device}" + (f", --threads {args.threads}" if args.threads else ""),
                (f"- platform (where this export ran): {platform.platform()}, {platform.machine()}, "
                 f"{os.cpu_count()} CPUs, Python {platform.python_version()}"),
                "- packages: " + ", ".join(f"{p} {version(p)}" for p in packages), ""]


def limitations_section(args, base: str | None, tasks: list[str], used: dict, lowercase: bool) -> list[str]:
    L = ["## Limitations", ""]
    if base == "sentence-transformers/all-MiniLM-L6-v2":
        L.append("- all-MiniLM-L6-v2 was pretrained on about a billion sentence pairs that include Quora "
                 "duplicate questions, so the PARA dev accuracy overstates how well the model transfers "
                 "to paraphrase data it has not seen.")
    if used.get("para"):
        n, total = used["para"]
        L.append(f"- PARA was trained on {n:,} Quora pairs" + (f", {total:,} in its file" if n < total else "")
                 + (": the course's subset of the about 400k of Quora Question Pairs." if total < 100_000 else "."))
    if (args.para_head == "cross" and "para" in tasks) or (args.sts_head == "cross" and "sts" in tasks):
        L.append("- Cross-encoded heads (--para_head / --sts_head cross) read a sentence pair as one sequence; "
                 "the sentence-transformers model embeds single sentences and does not include them.")
    return L + [("- The dev numbers are one run at one seed, on the dev sets counted above: compare runs "
                 "over several seeds before reading much into small differences."),
                f"- English only; inputs are truncated to {args.max_length} tokens"
                + (" and lowercased." if lowercase else " (cased)."), ""]


def usage_section(name: str, pooling: str) -> list[str]:
    sentences = '["A great movie.", "A wonderful film."]'
    return ["## How to use", "", "sentence-transformers:", "", "```python",
            "from sentence_transformers import SentenceTransformer",
            f'model = SentenceTransformer("{name}")  # this folder, or its hub id once uploaded',
            f"embeddings = model.encode({sentences})", "print(model.similarity(embeddings, embeddings))", "```",
            "", "transformers:", "", "```python", "import torch", "from transformers import AutoModel, AutoTokenizer",
            f'tokenizer = AutoTokenizer.from_pretrained("{name}")',
            f'model = AutoModel.from_pretrained("{name}").eval()',
            f'batch = tokenizer({sentences}, padding=True, truncation=True, return_tensors="pt")',
            "with torch.no_grad():", "    out = model(**batch)", *EMBED[pooling], "```",
            "", "mtbert, with its task heads:", "", "```bash",
            f"python multitask_classifier.py --eval_only --checkpoint {name}   # dev metrics, prediction files",
            f"python multitask_classifier.py --bert_model {name}               # fine-tune further",
            "```", "",
            "In Python, `export.load_exported(folder)` returns mtbert's `MultitaskBERT` and the run's arguments.", ""]


def model_card(args, name: str, run: Path | None, hidden: int, layers: int, lowercase: bool) -> str:
    """README.md of the export, from the run's arguments, data files, metrics.jsonl and summary.json."""
    summary = read_json(run / "summary.json") if run is not None and (run / "summary.json").is_file() else {}
    best = summary.get("best") if isinstance(summary.get("best"), dict) else {}
    base = base_model_id(args.bert_model)
    tasks = [t for t in TASKS if t in args.tasks]
    cap = args.max_train_examples
    used = {}  # task -> (training rows the run used, rows in its file); absent: file not found
    for t in tasks:
        n = count_rows(getattr(args, f"{t}_train"), t, args.strict)
        if n is not None:
            used[t] = (min(n, cap) if cap else n, n)
    intro = (f"A BERT encoder ({layers} layers, hidden size {hidden}) fine-tuned with mtbert jointly on "
             f"{', '.join(TASK_NAMES[t] for t in tasks)}, exported from the run's best dev checkpoint. "
             f"Sentence embedding: {POOLING[args.pooling]}, {hidden} dimensions.")
    started = f"`{base}`" if base else f"`{shown('bert_model', args.bert_model)}` (a local checkpoint folder)"
    if args.mlm_epochs and args.option == "finetune":
        started += (f", trained further by masked-language modelling on the training text ({args.mlm_epochs:g} "
                    "pass(es), labels unused) before fine-tuning")
    use = ("Sentence embeddings for English sentiment, paraphrase and semantic-similarity work (compare "
           "sentences by cosine similarity), and mtbert's three task predictions through the task heads in "
           "`heads.safetensors`. A research artefact of a course-project suite, not a production model.")
    lines = [*front_matter(base, tasks), f"# {name}", "", intro, "", f"Base model: {started}.", "",
             *data_section(args, tasks, used), *config_section(args), *results_section(read_metrics(run), best),
             *environment_section(args, summary), "## Intended use", "", use, "",
             *limitations_section(args, base, tasks, used, lowercase), *usage_section(name, args.pooling)]
    return "\n".join(lines)


# -- export and load back ----------------------------------------------------------------------
def export(run_path: Path, out: Path, overwrite: bool = False) -> Path:
    best, run = find_run(Path(run_path))
    out = Path(out)
    if out.resolve() in (best.resolve(), best.parent.resolve()):
        raise CheckpointError(f"{out}: the export cannot replace the run it reads")
    args = options.saved_args(best, "args.json")
    state = read_tensors(best / "model.safetensors")
    if args.pal or any(k.startswith("pal.") for k in state):
        raise CheckpointError(f"{best}: trained with --pal, whose task-specific attention layers run "
                              "inside the encoder: there is no single BERT encoder to export")
    try:
        bert_cfg = BertConfig.from_json(best / "config.json")
    except ConfigError as e:
        raise CheckpointError(str(e)) from None
    encoder, heads = split_state(state)
    expected = {p for name, _ in BertModel(bert_cfg).named_parameters() for p in hf_names(name)}
    if set(encoder) != expected:
        raise CheckpointError(f"{best / 'model.safetensors'}: the encoder's tensors do not match "
                              f"{best / 'config.json'} (e.g. {sorted(set(encoder) ^ expected)[:3]})")
    if not (best / "vocab.txt").is_file():
        raise CheckpointError(f"{best}: no vocab.txt (saved by multitask_classifier.py with the weights)")
    lowercase = lowercases(best)
    st_texts, st_tensors = sentence_transformers_files(args.pooling, bert_cfg.hidden_size,
                                                       args.max_length, encoder)
    texts = {"config.json": json.dumps(hf_config(bert_cfg.to_dict()), indent=2),
             **tokenizer_texts(best / "vocab.txt", lowercase, args.max_length), **st_texts,
             "heads.json": json.dumps(model_arguments(read_json(best / "args.json")), indent=2),
             "README.md": model_card(args, out.name, run, bert_cfg.hidden_size,
                                     bert_cfg.num_hidden_layers, lowercase)}
    write_export(out, texts, {"model.safetensors": encoder, "heads.safetensors": heads, **st_tensors},
                 {"vocab.txt": best / "vocab.txt"}, overwrite)
    return out


def load_exported(folder) -> tuple:
    """(MultitaskBERT, args) from an exported folder: the encoder from its Hugging Face checkpoint,
    the heads from heads.safetensors, the run's arguments from heads.json."""
    folder = Path(folder)
    args = options.saved_args(folder, "heads.json")
    args.bert_model = str(folder)  # the encoder is this folder now, not the run's starting point
    model = mc.build_model(args)
    if model.bert.load_report["missing"] or model.bert.load_report["unexpected"]:
        raise CheckpointError(f"{folder / 'model.safetensors'}: not the encoder of heads.json's model "
                              f"(missing {model.bert.load_report['missing'][:3]}, "
                              f"unexpected {model.bert.load_report['unexpected'][:3]})")
    file = folder / "heads.safetensors"
    try:
        missing, unexpected = model.load_state_dict(read_tensors(file), strict=False)
    except RuntimeError as e:  # a tensor of the wrong shape
        raise CheckpointError(f"{file}: does not match heads.json ({' '.join(str(e).split())[:300]})") from None
    missing = [k for k in missing if not k.startswith(ENCODER)]
    if missing or unexpected:
        raise CheckpointError(f"{file}: does not match heads.json (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]})")
    return model.eval(), args


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="run folder (or its best/ folder) written by multitask_classifier.py")
    p.add_argument("out", help="folder to write the export into")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    a = p.parse_args(argv)
    try:
        out = export(Path(a.run), Path(a.out), a.overwrite)
    except (CheckpointError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: cannot write {e.filename or a.out}: {e.strerror or e}", file=sys.stderr)
        return 1
    print(f"exported {a.run} to {out}: transformers + sentence-transformers model, mtbert heads, README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
