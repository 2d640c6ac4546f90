"""tokenizer.BertTokenizer against transformers' tokenizer for the same checkpoint."""
from __future__ import annotations

import pytest
import torch

from base_bert import CheckpointError
from tokenizer import BertTokenizer

transformers = pytest.importorskip("transformers")

KEYS = ("input_ids", "token_type_ids", "attention_mask")


@pytest.fixture(scope="module")
def toks(minilm_folder):
    return (BertTokenizer.from_pretrained(str(minilm_folder)),
            transformers.AutoTokenizer.from_pretrained(str(minilm_folder)))


def _theirs(hf, *texts, max_length=128):
    return hf(*texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")


def _assert_same(mine: dict, theirs):
    for k in KEYS:
        assert mine[k].dtype == torch.long
        assert torch.equal(mine[k], theirs[k]), k


def test_single_sentences(toks, sentences):
    ours, hf = toks
    assert len(sentences) >= 32
    mine = ours(sentences)
    _assert_same(mine, _theirs(hf, sentences))
    assert mine["attention_mask"].sum(1).unique().numel() > 5  # mixed lengths, real padding
    assert ours.vocab_size == hf.vocab_size


def test_pairs(toks, pairs):
    ours, hf = toks
    a, b = [p[0] for p in pairs], [p[1] for p in pairs]
    mine = ours(a, b)
    _assert_same(mine, _theirs(hf, a, b))
    assert mine["token_type_ids"].eq(1).any()


@pytest.mark.parametrize("max_length", [16, 9])
def test_truncation(minilm_folder, toks, sentences, pairs, max_length):
    hf = toks[1]
    ours = BertTokenizer.from_pretrained(str(minilm_folder), max_length=max_length)
    mine = ours(sentences)
    assert mine["input_ids"].shape[1] == max_length
    assert (mine["input_ids"][:, mine["attention_mask"].sum(1) - 1].diagonal()
            == ours.sep_id).all()  # every row still ends with [SEP]
    _assert_same(mine, _theirs(hf, sentences, max_length=max_length))
    a, b = [p[0] for p in pairs], [p[1] for p in pairs]
    mine = ours(a, b)
    assert mine["input_ids"].shape[1] == max_length
    _assert_same(mine, _theirs(hf, a, b, max_length=max_length))


def test_padding_to_longest(toks):
    ours = toks[0]
    batch = ours(["short", "a somewhat longer sentence than the first one", "mid length one"])
    lengths = batch["attention_mask"].sum(1)
    assert batch["input_ids"].shape[1] == lengths.max() == 10
    assert lengths.tolist() == [3, 10, 5]
    assert (batch["input_ids"][batch["attention_mask"] == 0] == ours.pad_id).all()
    assert batch["input_ids"][0, 0] == ours.cls_id and batch["input_ids"][0, 2] == ours.sep_id


def test_encode_unpadded_and_errors(toks, tmp_path):
    ours = toks[0]
    ids, types = ours.encode(["Hello, World!"])[0][:2]
    assert ids[0] == ours.cls_id and ids[-1] == ours.sep_id and types == [0] * len(ids)
    assert ours.tok.id_to_token(ids[1]) == "hello"  # uncased checkpoint: lowercased
    with pytest.raises(ValueError):
        ours.encode(["a", "b"], ["c"])
    with pytest.raises(CheckpointError, match="vocab.txt"):
        BertTokenizer(tmp_path / "vocab.txt")
    (tmp_path / "vocab.txt").write_text("[UNK]\nhello\n", encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"\[CLS\]"):
        BertTokenizer(tmp_path / "vocab.txt")


def test_was_truncated(minilm_folder):
    ours = BertTokenizer.from_pretrained(str(minilm_folder), max_length=9)
    items = ours.encode(["one two three four five six seven eight nine ten", "one two"])
    assert [ours.was_truncated(item) for item in items] == [True, False]
    items = ours.encode(["one two three four", "x"], ["five six seven eight", "y"])
    assert [ours.was_truncated(item) for item in items] == [True, False]
