"""Tokenize once per run, then serve dynamically padded, length-bucketed batches.

Each task's sentences are encoded once into a padded id matrix; a batch is a slice of rows cut
to the longest item in it, so collating does no per-example Python work. Training batches are
*length-bucketed*: indices are shuffled, cut into large chunks, sorted by length inside each
chunk and split into batches whose order is shuffled again. Sentences of similar length share a
batch (little padding) while batch composition stays random.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

TASKS = ("sst", "para", "sts")
BUCKET_CHUNK = 50  # batches per sorted chunk: larger = less padding, less randomness


@dataclass
class Encoded:
    """Token ids of N sequences, padded to the longest: ids/types [N, L], lengths [N]."""
    ids: torch.Tensor
    types: torch.Tensor
    lengths: torch.Tensor

    @classmethod
    def build(cls, items: list[tuple], pad_id: int) -> "Encoded":
        lengths = np.fromiter((len(item[0]) for item in items), dtype=np.int64, count=len(items))
        L = int(lengths.max()) if len(items) else 1
        ids = np.full((len(items), L), pad_id, dtype=np.int64)
        types = np.zeros((len(items), L), dtype=np.int64)
        for i, (seq, tt, *_) in enumerate(items):  # once per run, not per batch
            ids[i, :len(seq)] = seq
            types[i, :len(tt)] = tt
        return cls(torch.from_numpy(ids), torch.from_numpy(types), torch.from_numpy(lengths))

    def batch(self, index: torch.Tensor) -> dict:
        lengths = self.lengths[index]
        T = int(lengths.max())
        return {"input_ids": self.ids[index, :T], "token_type_ids": self.types[index, :T],
                "attention_mask": (torch.arange(T) < lengths[:, None]).long()}


@dataclass
class TaskData:
    """One split of one task, tokenized. Bi-encoder pairs keep two sequences (`a`, `b`);
    single sentences and cross-encoded pairs keep one (`a`, with `b` None), or with both pair
    orders, (s1, s2) in `a` and (s2, s1) in `b`. A cross-encoded pair may also keep its two
    sentences alone (`singles`, served as batch["s1"], batch["s2"]) for a bi-encoder feature.
    Training data may carry a teacher's scores of its examples (`teacher`, served as
    batch["teacher"]: --distill, distill.py)."""
    task: str
    ids: list[str]
    a: Encoded
    b: Encoded | None
    labels: torch.Tensor | None
    truncated: int  # how many sequences were cut at max_length
    singles: tuple[Encoded, Encoded] | None = None
    teacher: torch.Tensor | None = None

    def __len__(self):
        return len(self.ids)

    def lengths(self) -> torch.Tensor:
        return self.a.lengths if self.b is None else torch.maximum(self.a.lengths, self.b.lengths)

    def subset(self, n: int) -> "TaskData":
        """The first n examples (all when n >= len)."""
        if n >= len(self):
            return self
        cut = lambda e: None if e is None else Encoded(e.ids[:n], e.types[:n], e.lengths[:n])
        return TaskData(self.task, self.ids[:n], cut(self.a), cut(self.b),
                        None if self.labels is None else self.labels[:n], self.truncated,
                        None if self.singles is None else tuple(map(cut, self.singles)),
                        None if self.teacher is None else self.teacher[:n])

    def batch(self, index) -> dict:
        index = torch.as_tensor(index, dtype=torch.long)
        out = {"index": index, "a": self.a.batch(index)}
        if self.b is not None:
            out["b"] = self.b.batch(index)
        if self.singles is not None:
            out["s1"], out["s2"] = (e.batch(index) for e in self.singles)
        if self.labels is not None:
            out["labels"] = self.labels[index]
        if self.teacher is not None:
            out["teacher"] = self.teacher[index]
        return out


def encode_task(task: str, examples, tokenizer, cross: bool = False, both_orders: bool = False,
                singles: bool = False) -> TaskData:
    """Tokenize a task's examples (objects with id, sent1, sent2, label). A cross-encoded pair is
    one sequence "[CLS] s1 [SEP] s2 [SEP]" in `a`; with `both_orders`, `b` holds "[CLS] s2 [SEP] s1 [SEP]";
    with `singles`, "[CLS] s1 [SEP]" and "[CLS] s2 [SEP]" are kept as well."""
    s1 = [e.sent1 for e in examples]
    s2 = None if task == "sst" else [e.sent2 for e in examples]
    if task == "sst":
        enc_a, enc_b = tokenizer.encode(s1), None
    elif cross:
        enc_a, enc_b = tokenizer.encode(s1, s2), (tokenizer.encode(s2, s1) if both_orders else None)
    else:
        enc_a, enc_b = tokenizer.encode(s1), tokenizer.encode(s2)
    truncated = sum(tokenizer.was_truncated(e) for e in enc_a + ([] if cross else enc_b or []))
    labels = None
    if examples and examples[0].label is not None:
        dtype = torch.float32 if task == "sts" else torch.long
        labels = torch.tensor([e.label for e in examples], dtype=dtype)
    alone = None
    if cross and singles:
        alone = tuple(Encoded.build(tokenizer.encode(s), tokenizer.pad_id) for s in (s1, s2))
    return TaskData(task, [e.id for e in examples], Encoded.build(enc_a, tokenizer.pad_id),
                    None if enc_b is None else Encoded.build(enc_b, tokenizer.pad_id),
                    labels, truncated, alone)


def bucketed_order(lengths: torch.Tensor, batch_size: int, rng: np.random.Generator,
                   bucket: bool = True) -> list[np.ndarray]:
    """One pass over the data as a list of index batches, shuffled (and length-bucketed)."""
    order = rng.permutation(len(lengths))
    if bucket:
        chunk = batch_size * BUCKET_CHUNK
        lens = lengths.numpy()
        order = np.concatenate([c[np.argsort(lens[c], kind="stable")]
                                for c in np.array_split(order, max(1, -(-len(order) // chunk)))])
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if bucket:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def eval_order(lengths: torch.Tensor, batch_size: int) -> list[np.ndarray]:
    """Deterministic batches sorted by length (fastest for inference); callers restore order."""
    order = np.argsort(lengths.numpy(), kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


class TaskStream:
    """An endless stream of training batches of one task, pass after pass.

    Pass p's order depends only on (seed, task, p), so the stream's whole state is two integers
    (`passes`, `pos`): resuming a run restores them and replays the same batches."""

    def __init__(self, data: TaskData, batch_size: int, seed: int, bucket: bool = True,
                 rank: int = 0, world: int = 1):
        self.data, self.batch_size, self.seed, self.bucket = data, batch_size, seed, bucket
        self.rank, self.world = rank, world
        self.passes, self.pos = 0, 0
        self._order = None

    def _pass_order(self):
        rng = np.random.default_rng([self.seed, TASKS.index(self.data.task), self.passes])
        # Under data parallelism every rank draws the same global batches and keeps its shard.
        # A global batch with fewer items than ranks is repeated cyclically, so that every rank
        # has a non-empty shard of every batch and all ranks stay at the same batch.
        batches = bucketed_order(self.data.lengths(), self.batch_size, rng, self.bucket)
        return [np.resize(b, max(len(b), self.world))[self.rank::self.world] for b in batches]

    def __next__(self) -> dict:
        if self._order is None:
            self._order = self._pass_order()
        if self.pos >= len(self._order):
            self.passes, self.pos = self.passes + 1, 0
            self._order = self._pass_order()
        index = self._order[self.pos]
        self.pos += 1
        return self.data.batch(index)

    def state_dict(self) -> dict:
        return {"passes": self.passes, "pos": self.pos}

    def load_state_dict(self, state: dict):
        self.passes, self.pos, self._order = int(state["passes"]), int(state["pos"]), None
