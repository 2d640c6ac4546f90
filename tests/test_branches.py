"""branches.py: the fork's saved state, each branch restarted from it on its own draws, the mean of
their weights; runs with --branches against the same run without, and resumed after a stop."""
from __future__ import annotations

import os
import signal

import pytest
import torch
from torch import nn

import multitask_classifier as mc
from branches import SEED_STRIDE, Branches
from checkpoint import read_tensors
from optimizer import AdamW

pytestmark = pytest.mark.usefixtures("one_thread")


class Stream:
    """The part of batching.TaskStream that a fork touches: its seed and its place."""

    def __init__(self, seed):
        self.seed, self.passes, self.pos = seed, 0, 0

    def state_dict(self):
        return {"passes": self.passes, "pos": self.pos}

    def load_state_dict(self, state):
        self.passes, self.pos = state["passes"], state["pos"]


def train_step(model, optimizer, stream, prog):
    loss = model(torch.randn(5, 3)).pow(2).sum()  # torch's RNG: a branch's own draws
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    stream.pos += 1
    prog["step"] += 1


def test_each_branch_starts_from_the_fork_and_the_model_ends_as_their_mean():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    optimizer, scaler = AdamW(model.parameters(), lr=0.1), torch.amp.GradScaler("cpu", enabled=False)
    streams, prog = {"sst": Stream(7)}, {"step": 0, "scaler_skipped": 0}
    for _ in range(3):
        train_step(model, optimizer, streams["sst"], prog)
    fork = Branches(3, fork_step=3, seed=7)
    assert fork.steps(5) == 3 + 3 * 2 and not fork.forked
    fork.fork(model, optimizer, streams, prog, scaler)
    at_fork = {k: v.clone() for k, v in model.state_dict().items()}
    adam_at_fork = {k: torch.as_tensor(v).clone() for k, v in optimizer.state[model.weight].items()}
    ends = []
    for b in range(3):
        assert fork.branch == b
        assert all(torch.equal(v, at_fork[k]) for k, v in model.state_dict().items())
        assert all(torch.equal(torch.as_tensor(v), adam_at_fork[k]) for k, v in optimizer.state[model.weight].items())
        assert streams["sst"].state_dict() == {"passes": 0, "pos": 3} and prog["step"] == 3
        assert streams["sst"].seed == 7 + SEED_STRIDE * b  # branch 0 keeps the run's own draws
        for _ in range(2):
            train_step(model, optimizer, streams["sst"], prog)
        ends.append({k: v.clone() for k, v in model.state_dict().items()})
        more = fork.end_branch(model, optimizer, streams, prog, scaler)
        assert more == (b < 2)
    assert not torch.equal(ends[0]["weight"], ends[1]["weight"])  # the branches' draws differ
    for k, v in model.state_dict().items():
        assert torch.allclose(v, sum(e[k] for e in ends) / 3, atol=1e-6), k


def test_a_fork_needs_two_branches():
    with pytest.raises(ValueError, match="at least 2"):
        Branches(1, 3, 0)


@pytest.mark.parametrize("flags, message", [(("--branches", "0"), "at least 1"),
                                            (("--branches", "2", "--branch_at", "1.0"), "in (0, 1)"),
                                            (("--branches", "2", "--swa", "0.5"), "not with --ema or --swa")])
def test_branch_flags_that_cannot_be(flags, message, capsys):
    with pytest.raises(SystemExit):
        mc.parse_args(list(flags))
    assert message in capsys.readouterr().err


def run_dir(argv):
    return mc.Path(argv[argv.index("--out_dir") + 1])


def records(argv):
    return [mc.json.loads(line) for line in (run_dir(argv) / "metrics.jsonl").read_text().splitlines()]


FLAGS = ("--epochs", "2", "--steps_per_epoch", "4", "--no_predictions")


def test_run_with_branches_keeps_the_mean_and_its_branch_0_is_the_run_without(run_argv, monkeypatch, capsys):
    plain = run_argv("plain", *FLAGS)
    assert mc.main(plain) == 0
    real, ends = Branches.end_branch, []

    def kept(self, model, *rest):
        ends.append({k: v.clone() for k, v in model.state_dict().items()})
        return real(self, model, *rest)
    monkeypatch.setattr(Branches, "end_branch", kept)
    forked = run_argv("forked", *FLAGS, "--branches", "2", "--branch_at", "0.5")
    assert mc.main(forked) == 0
    # Evaluated: the trunk at epoch 1 (the fork's step), each branch's end, then their mean.
    got = records(forked)
    assert [(r["step"], r.get("branch")) for r in got] == [(4, None), (8, 0), (8, 1), (8, None)]
    want = records(plain)
    assert [r["step"] for r in want] == [4, 8]
    for key in ("sst_acc", "para_acc", "sts_r", "overall"):  # branch 0 is the run without a fork
        assert got[0][key] == want[0][key] and got[1][key] == want[1][key], key
    without = read_tensors(run_dir(plain) / "state" / "model.safetensors")
    assert all(torch.equal(ends[0][k], v) for k, v in without.items())
    assert any(not torch.equal(ends[0][k], ends[1][k]) for k in without)
    summary = mc.json.loads((run_dir(forked) / "summary.json").read_text())
    assert summary["steps"] == 8 and summary["best"].get("branch") is None  # a branch is never the best
    assert summary["best"]["overall"] == max(got[0]["overall"], got[3]["overall"])
    # its state/ is the trunk's: scoring "the last step's weights" from it would be wrong, so it says so
    capsys.readouterr()
    assert mc.main(["--eval_only", "--checkpoint", str(run_dir(forked)), "--raw_weights", "--no_predictions"]) == 2
    assert "saves no state after its fork" in capsys.readouterr().err
    if summary["best"]["step"] == 8:  # the mean is the best: its weights are the ones kept
        best = read_tensors(run_dir(forked) / "best" / "model.safetensors")
        for k, v in best.items():
            assert torch.allclose(v, (ends[0][k] + ends[1][k]) / 2, atol=1e-6), k


def test_run_stopped_in_a_branch_resumes_from_the_fork_to_the_same_mean(run_argv, monkeypatch, capsys):
    flags = (*FLAGS, "--branches", "2", "--branch_at", "0.5")
    whole = run_argv("whole", *flags)
    assert mc.main(whole) == 0
    real, calls = mc.training_loss, [0]

    def interrupted(*a):
        calls[0] += 1
        if calls[0] == 10:  # Ctrl-C in branch 1's second step: the last save is the fork's step 4
            os.kill(os.getpid(), signal.SIGINT)
        return real(*a)
    monkeypatch.setattr(mc, "training_loss", interrupted)
    cut = run_argv("cut", *flags)
    assert mc.main(cut) == 130
    assert "trains the branches again" in capsys.readouterr().err
    monkeypatch.undo()
    assert mc.main(["--resume", str(run_dir(cut))]) == 0
    a = read_tensors(run_dir(whole) / "best" / "model.safetensors")
    b = read_tensors(run_dir(cut) / "best" / "model.safetensors")
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert [r["overall"] for r in records(whole)] == [r["overall"] for r in records(cut)][-4:]
