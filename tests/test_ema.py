"""ema.py: the weight averages' update rules (--ema, --swa), swapping them in and out, their state,
and runs whose best checkpoint holds the average while training continued from the raw weights."""
from __future__ import annotations

import os
import signal

import pytest
import torch
from torch import nn

import multitask_classifier as mc
from checkpoint import read_tensors
from ema import COUNT, FILE, WeightAverage

pytestmark = pytest.mark.usefixtures("one_thread")


def small_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    model[0].bias.requires_grad_(False)  # frozen parameters are not averaged
    return model


def test_update_is_the_exponential_moving_average():
    model = small_model()
    ema = WeightAverage(model, 0.9)
    assert set(ema.average) == {"0.weight", "1.weight", "1.bias"}
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    want = dict(start)
    for k in range(3):
        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad:
                    p.add_(float(k + 1))
        ema.update(k + 1)
        want = {n: 0.9 * want[n] + 0.1 * p.detach() for n, p in model.named_parameters()}
    for n in ema.average:
        assert torch.allclose(ema.average[n], want[n], atol=1e-6), n
        assert not torch.allclose(ema.average[n], dict(model.named_parameters())[n])


def test_swa_is_the_mean_of_the_weights_after_its_start():
    model = small_model()
    swa = WeightAverage(model, start=2)  # the mean of the weights after steps 3, 4 and 5
    seen = []
    for step in range(1, 6):
        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad:
                    p.mul_(1.5).add_(float(step))
        swa.update(step)
        seen.append({n: p.detach().clone() for n, p in model.named_parameters()})
        if step == 2:  # not begun: evaluation sees the raw weights
            with swa.swapped_in():
                assert all(torch.equal(p, seen[-1][n]) for n, p in model.named_parameters())
    assert swa.count == 3
    for n in swa.average:
        want = sum(s[n] for s in seen[2:]) / 3
        assert torch.allclose(swa.average[n], want, atol=1e-5), n
    again = WeightAverage(small_model(), start=2)  # the count travels with the state (--resume)
    again.load_state_dict(swa.state_dict())
    assert again.count == 3 and all(torch.equal(again.average[n], t) for n, t in swa.average.items())


@pytest.mark.parametrize("flags, message", [(("--ema", "0.9", "--swa", "0.5"), "choose one"),
                                            (("--swa", "1.5"), "lies in [0, 1]")])
def test_swa_flags_that_cannot_be(flags, message, capsys):
    with pytest.raises(SystemExit):
        mc.parse_args(list(flags))
    assert message in capsys.readouterr().err


def moved_average(model, param: str):
    """An average of decay 0.5 after one step that moved `param` by 1."""
    ema = WeightAverage(model, 0.5)
    with torch.no_grad():
        model.get_parameter(param).add_(1.0)
    ema.update(1)
    return ema


def test_swapped_in_puts_the_average_in_and_the_raw_weights_back():
    model = small_model()
    ema = moved_average(model, "1.weight")
    raw = {n: p.detach().clone() for n, p in model.named_parameters()}
    with ema.swapped_in():
        for n, p in model.named_parameters():
            assert torch.equal(p, ema.average[n] if n in ema.average else raw[n]), n
    for n, p in model.named_parameters():
        assert torch.equal(p, raw[n]), n
    with pytest.raises(RuntimeError), ema.swapped_in():  # restored on an error as well
        raise RuntimeError("boom")
    assert torch.equal(model[1].weight, raw["1.weight"])


def test_state_round_trip_and_checks():
    model = small_model()
    ema = moved_average(model, "1.bias")
    other = WeightAverage(small_model(), 0.5)
    other.load_state_dict(ema.state_dict())
    assert all(torch.equal(other.average[n], t) for n, t in ema.average.items())
    with pytest.raises(ValueError, match="does not match"):
        other.load_state_dict({"0.weight": ema.average["0.weight"]})
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="strictly between"):
            WeightAverage(model, bad)


def run_dir(argv):
    return mc.Path(argv[argv.index("--out_dir") + 1])


def test_run_with_ema_keeps_the_average_as_its_best(run_argv):
    argv = run_argv("ema", "--epochs", "1", "--steps_per_epoch", "6", "--ema", "0.8", "--no_predictions")
    assert mc.main(argv) == 0
    run = run_dir(argv)
    best = read_tensors(run / "best" / "model.safetensors")
    raw = read_tensors(run / "state" / "model.safetensors")
    average = read_tensors(run / "state" / FILE)
    assert average.pop(COUNT) == 6
    assert set(average) < set(best) and "sts_affine" in average
    for n, t in average.items():  # the one evaluation (the last step) scored the average
        assert torch.equal(best[n], t), n
    assert any(not torch.equal(raw[n], t) for n, t in average.items())  # training kept the raw weights


def test_run_with_swa_keeps_the_mean_of_its_last_steps_as_its_best(run_argv):
    argv = run_argv("swa", "--epochs", "1", "--steps_per_epoch", "8", "--swa", "0.5", "--no_predictions")
    assert mc.main(argv) == 0
    run = run_dir(argv)
    best = read_tensors(run / "best" / "model.safetensors")
    average = read_tensors(run / "state" / FILE)
    assert average.pop(COUNT) == 4  # steps 5 to 8
    assert all(torch.equal(best[n], t) for n, t in average.items())
    raw = read_tensors(run / "state" / "model.safetensors")
    assert any(not torch.equal(raw[n], t) for n, t in average.items())


@pytest.mark.parametrize("average", [("--ema", "0.8"), ("--swa", "0.6")])
def test_interrupted_run_resumes_to_the_same_average(average, run_argv, monkeypatch):
    flags = ("--epochs", "2", "--steps_per_epoch", "4", *average, "--no_predictions")
    whole = run_argv("whole", *flags)
    assert mc.main(whole) == 0
    real, calls = mc.training_loss, [0]

    def interrupted(*a):
        calls[0] += 1
        if calls[0] == 6:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C during step 6: state saved after it
        return real(*a)
    monkeypatch.setattr(mc, "training_loss", interrupted)
    cut = run_argv("cut", *flags)
    assert mc.main(cut) == 130
    monkeypatch.undo()
    assert mc.main(["--resume", str(run_dir(cut))]) == 0
    for f in (f"state/{FILE}", "best/model.safetensors"):
        a, b = read_tensors(run_dir(whole) / f), read_tensors(run_dir(cut) / f)
        assert all(torch.equal(a[n], b[n]) for n in a), f
