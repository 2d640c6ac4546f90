"""batching: per-batch dynamic padding, length-bucketed shuffled passes, resumable streams,
data-parallel sharding of global batches, and the evaluation order."""
from __future__ import annotations

import csv
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from batching import Encoded, TaskData, TaskStream, bucketed_order, encode_task, eval_order
from conftest import DATA

pytestmark = pytest.mark.usefixtures("one_thread")


def make_data(lengths, task="sst", pairs=False, seed=0) -> TaskData:
    """TaskData whose item i has len lengths[i]; token ids encode (item, position) as 1000·i + t + 1."""
    def items(lens):
        return [([1000 * i + t + 1 for t in range(n)], [0] * n) for i, n in enumerate(lens)]
    lengths = list(lengths)
    b = None
    if pairs:
        rng = np.random.default_rng(seed)
        b = Encoded.build(items(rng.integers(2, 30, len(lengths)).tolist()), pad_id=0)
    labels = torch.arange(len(lengths)) % 5
    return TaskData(task, [f"id{i}" for i in range(len(lengths))], Encoded.build(items(lengths), 0),
                    b, labels, 0)


def real_lengths(n=2000) -> list[int]:
    """Word-piece-ish lengths of the first n SST training sentences (whitespace words + 2)."""
    path = DATA / "ids-sst-train.csv"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t")
        next(reader)
        return [len(row[2].split()) + 2 for row, _ in zip(reader, range(n))]


# -- Encoded ---------------------------------------------------------------------------------
def test_batch_pads_to_longest_in_batch_only():
    items = [([5, 6], [0, 0]), ([1, 2, 3, 4, 5], [0, 0, 1, 1, 1]), ([7, 8, 9], [0, 0, 0]),
             (list(range(10, 19)), [0] * 9)]
    enc = Encoded.build(items, pad_id=0)
    assert enc.ids.shape == (4, 9)  # the global matrix is padded to the global max
    b = enc.batch(torch.tensor([0, 2]))
    assert b["input_ids"].shape == (2, 3)  # but a batch only to its own longest item
    assert torch.equal(b["input_ids"], torch.tensor([[5, 6, 0], [7, 8, 9]]))
    assert torch.equal(b["attention_mask"], torch.tensor([[1, 1, 0], [1, 1, 1]]))
    assert torch.equal(b["token_type_ids"], torch.zeros(2, 3, dtype=torch.long))
    b = enc.batch(torch.tensor([1, 0]))
    assert torch.equal(b["input_ids"], torch.tensor([[1, 2, 3, 4, 5], [5, 6, 0, 0, 0]]))
    assert torch.equal(b["token_type_ids"], torch.tensor([[0, 0, 1, 1, 1], [0, 0, 0, 0, 0]]))
    assert torch.equal(b["attention_mask"], torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]))
    assert torch.equal(enc.lengths, torch.tensor([2, 5, 3, 9]))


def test_pair_batch_and_lengths():
    data = make_data([3, 8, 4, 2], task="para", pairs=True)
    assert torch.equal(data.lengths(), torch.maximum(data.a.lengths, data.b.lengths))
    out = data.batch([2, 3])
    assert set(out) == {"index", "a", "b", "labels"}
    assert out["a"]["input_ids"].shape == (2, 4)
    assert out["b"]["input_ids"].shape[1] == int(data.b.lengths[[2, 3]].max())
    assert torch.equal(out["labels"], torch.tensor([2, 3]))


def test_encode_task_with_tokenizer(minilm_folder):
    from tokenizer import BertTokenizer

    tok = BertTokenizer(minilm_folder / "vocab.txt")
    ex = [SimpleNamespace(id="a", sent1="A cat sat.", sent2="A dog ran far away.", label=1),
          SimpleNamespace(id="b", sent1="Hello", sent2="Hi there", label=0)]
    bi = encode_task("para", ex, tok)
    assert bi.b is not None and len(bi) == 2 and bi.labels.dtype == torch.long
    cross = encode_task("para", ex, tok, cross=True)
    assert cross.b is None
    L = int(cross.a.lengths[0])
    assert L == int(bi.a.lengths[0]) + int(bi.b.lengths[0]) - 1  # [CLS] a [SEP] b [SEP]
    types = cross.a.types[0, :L].tolist()
    first = int(bi.a.lengths[0])
    assert types == [0] * first + [1] * (L - first)
    sts = encode_task("sts", [SimpleNamespace(id="x", sent1="a", sent2="b", label=3.4)], tok)
    assert sts.labels.dtype == torch.float32
    # singles: a cross-encoded pair also keeps each sentence alone, served as s1 and s2
    both = encode_task("para", ex, tok, cross=True, singles=True)
    assert cross.singles is None and encode_task("para", ex, tok, singles=True).singles is None
    out = both.subset(1).batch([0])
    for key, side in (("s1", bi.a), ("s2", bi.b)):
        n = int(side.lengths[0])
        assert out[key]["input_ids"].tolist() == [side.ids[0, :n].tolist()], key
    assert torch.equal(out["a"]["input_ids"], cross.batch([0])["a"]["input_ids"])


# -- passes ----------------------------------------------------------------------------------
def _pass(stream, n_batches):
    return [next(stream) for _ in range(n_batches)]


@pytest.mark.parametrize("bucket", [True, False])
def test_one_pass_visits_every_example_once(bucket):
    N, bs = 103, 8
    data = make_data(np.random.default_rng(0).integers(3, 40, N).tolist())
    stream = TaskStream(data, bs, seed=1, bucket=bucket)
    batches = _pass(stream, math.ceil(N / bs))
    assert stream.state_dict() == {"passes": 0, "pos": math.ceil(N / bs)}
    seen = np.concatenate([b["index"].numpy() for b in batches])
    assert sorted(seen.tolist()) == list(range(N))
    assert all(len(b["index"]) <= bs for b in batches)
    for b in batches:  # rows are the right examples, padded to the batch's own maximum
        idx = b["index"]
        assert b["a"]["input_ids"].shape[1] == int(data.a.lengths[idx].max())
        assert torch.equal(b["a"]["input_ids"][:, 0], idx * 1000 + 1)
        assert torch.equal(b["labels"], data.labels[idx])
    nxt = next(stream)  # the next call starts pass 1, in a different order
    assert stream.state_dict() == {"passes": 1, "pos": 1}
    second = [nxt] + _pass(stream, math.ceil(N / bs) - 1)
    assert sorted(np.concatenate([b["index"].numpy() for b in second]).tolist()) == list(range(N))
    assert [b["index"].tolist() for b in second] != [b["index"].tolist() for b in batches]


def _padding(data, batches):
    lens = data.lengths().numpy()
    return sum(len(b) * lens[b].max() - lens[b].sum() for b in batches)


def test_bucketing_reduces_padding_on_real_lengths():
    lengths = real_lengths()
    data = make_data(lengths)
    bs = 32
    bucketed = bucketed_order(data.lengths(), bs, np.random.default_rng(0), bucket=True)
    rand = bucketed_order(data.lengths(), bs, np.random.default_rng(0), bucket=False)
    for order in (bucketed, rand):
        assert sorted(np.concatenate(order).tolist()) == list(range(len(lengths)))
    pb, pr = _padding(data, bucketed), _padding(data, rand)
    assert pb < 0.5 * pr, (pb, pr)
    # still shuffled: batches of a bucketed pass are not in length order
    maxes = [int(data.lengths()[b].max()) for b in bucketed]
    assert maxes != sorted(maxes) and maxes != sorted(maxes, reverse=True)
    # the stream uses the bucketing too
    s_b = TaskStream(data, bs, seed=0, bucket=True)
    s_r = TaskStream(data, bs, seed=0, bucket=False)
    n = math.ceil(len(lengths) / bs)
    pad_b = sum(int((1 - b["a"]["attention_mask"]).sum()) for b in _pass(s_b, n))
    pad_r = sum(int((1 - b["a"]["attention_mask"]).sum()) for b in _pass(s_r, n))
    assert pad_b < 0.5 * pad_r


@pytest.mark.parametrize("bucket", [True, False])
def test_state_dict_replays_identical_batches(bucket):
    data = make_data(np.random.default_rng(1).integers(3, 30, 45).tolist())
    a = TaskStream(data, 8, seed=3, bucket=bucket)  # 6 batches per pass
    run = _pass(a, 5)
    state = a.state_dict()
    rest = _pass(a, 12)  # crosses two pass boundaries
    b = TaskStream(data, 8, seed=3, bucket=bucket)
    b.load_state_dict(state)
    replay = _pass(b, 12)
    for x, y in zip(rest, replay):
        assert torch.equal(x["index"], y["index"])
        assert torch.equal(x["a"]["input_ids"], y["a"]["input_ids"])
    # a different seed gives a different sequence
    c = TaskStream(data, 8, seed=4, bucket=bucket)
    assert [x["index"].tolist() for x in _pass(c, 5)] != [x["index"].tolist() for x in run]


@pytest.mark.parametrize("N", [103, 97])  # 97 = 6·16 + 1: the last global batch has one item
def test_rank_shards_union_is_the_global_batch(N):
    data = make_data(np.random.default_rng(2).integers(3, 30, N).tolist())
    bs, world = 8, 2
    single = TaskStream(data, bs * world, seed=5)
    ranks = [TaskStream(data, bs * world, seed=5, rank=r, world=world) for r in range(world)]  # global batch
    steps = 3 * math.ceil(N / (bs * world)) + 2  # several passes
    for step in range(steps):
        glob = next(single)["index"].tolist()
        shards = [next(s)["index"].tolist() for s in ranks]
        assert all(len(s) >= 1 for s in shards)
        assert not set(shards[0]) & set(shards[1]) or len(glob) < world, step
        assert set(shards[0]) | set(shards[1]) == set(glob), step
        assert all(len(s) <= bs for s in shards)
        # every rank is at the same point of the same pass
        assert ranks[0].state_dict() == ranks[1].state_dict() == single.state_dict()


def test_eval_order_covers_all_indices_once_sorted():
    lengths = torch.tensor([5, 2, 9, 2, 7, 1, 3])
    batches = eval_order(lengths, 3)
    assert [len(b) for b in batches] == [3, 3, 1]
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(7))
    assert lengths[flat].tolist() == sorted(lengths.tolist())
    assert eval_order(lengths, 3)[0].tolist() == batches[0].tolist()  # deterministic
    assert flat.tolist()[:3] == [5, 1, 3]  # stable for equal lengths
