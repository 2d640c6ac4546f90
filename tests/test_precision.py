"""precision: which autocast dtype and gradient scaler a device gets, and the fp16 scaler path of
the loop (trainer.clip_and_step, skipped steps, resume), all on CPU: CUDA's answers are
monkeypatched, and torch's CPU autocast and CPU GradScaler stand in for the GPU's. Also the other
settings that follow the device: --eval_batch_size, and --compile (tested with the aot_eager
backend: inductor's C++ compilation takes over a minute on a small CPU)."""
from __future__ import annotations

import json
import os
import random
import signal

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import multitask_classifier as mc
import precision
import trainer
from evaluation import scores
from pcgrad import pcgrad_backward
from precision import Precision, PrecisionError, choose

pytestmark = pytest.mark.usefixtures("one_thread")


def fake_gpu(monkeypatch, bf16: bool, emulated_bf16: bool = True):
    """CUDA 'available', with or without native bf16 (torch counts emulated bf16 by default)."""
    asked = []

    def is_bf16_supported(including_emulation: bool = True):
        asked.append(including_emulation)
        return bf16 or (including_emulation and emulated_bf16)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    return asked


# -- the choice ------------------------------------------------------------------------------------
def test_auto_is_bf16_on_an_ampere_gpu_fp16_on_older_ones_fp32_on_cpu(monkeypatch):
    asked = fake_gpu(monkeypatch, bf16=True)
    assert choose("auto", torch.device("cuda")) == Precision("bf16", "cuda")
    assert choose("auto", "cpu") == Precision("fp32", "cpu")  # a GPU in the machine changes nothing on CPU
    fake_gpu(monkeypatch, bf16=False)  # a T4 or V100: bf16 only emulated
    assert choose("auto", "cuda") == Precision("fp16", "cuda")
    assert asked and not any(asked)  # the question was about native bf16, never emulated
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)  # a torch without the keyword
    assert precision.native_bf16()


def test_explicit_choices(monkeypatch):
    fake_gpu(monkeypatch, bf16=False)
    assert choose("fp16", "cuda") == Precision("fp16", "cuda")
    assert choose("fp32", "cuda") == Precision("fp32", "cuda")
    with pytest.raises(PrecisionError, match=r"--precision bf16: this GPU has no native bf16.*fp16"):
        choose("bf16", "cuda")
    # on CPU an explicit low precision is torch's CPU autocast, with or without a GPU around
    assert choose("bf16", "cpu") == Precision("bf16", "cpu")
    assert choose("fp16", "cpu") == Precision("fp16", "cpu")
    with pytest.raises(PrecisionError, match="choose one of auto, fp32, bf16, fp16"):
        choose("fp8", "cpu")


def test_only_fp16_gets_a_working_scaler():
    assert Precision("fp16", "cpu").scaler().is_enabled()
    assert not Precision("bf16", "cpu").scaler().is_enabled()
    assert not Precision("fp32", "cpu").scaler().is_enabled()


def test_autocast_dtype_of_a_forward():
    lin = nn.Linear(4, 3)
    x = torch.randn(2, 4)
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
        with Precision(name, "cpu").autocast():
            assert lin(x).dtype == dtype, name
    with Precision("fp32", "cpu").autocast():
        assert not torch.is_autocast_enabled("cpu")  # fp32 opens no autocast context at all


def test_bf16_on_a_gpu_without_it_is_one_line_and_exit_2(monkeypatch, run_argv, capsys):
    fake_gpu(monkeypatch, bf16=False)
    tf32 = torch.backends.cuda.matmul.allow_tf32  # main sets it for CUDA runs: put it back
    try:
        assert mc.main(run_argv("b", "--use_gpu", "--precision", "bf16")) == 2
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --precision bf16: this GPU has no native bf16")


# -- the scaler's step: unscale, clip, step or skip -----------------------------------------------
def scaled_grads(model: nn.Linear, g: torch.Tensor, scaler):
    """The backward of a scaled loss whose gradient is g: leaves scale · g in weight.grad."""
    model.zero_grad()
    scaler.scale((model.weight * g).sum() + 0.0 * model.bias.sum()).backward()


def test_a_finite_step_is_unscaled_before_the_clip_and_taken():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    w0, g = model.weight.detach().clone(), torch.tensor([[0.3, -0.4, 0.0]])  # |g| = 0.5
    scaled_grads(model, g, scaler)
    assert torch.allclose(model.weight.grad, 1024 * g)
    # max_norm 1 clips the scaled gradient (norm 512) but not the true one (0.5): clipping
    # before unscaling would leave 1/1024 of the step
    assert trainer.clip_and_step(opt, scaler, model.parameters(), 1.0)
    assert torch.allclose(model.weight, w0 - 0.1 * g, atol=1e-7)
    assert scaler.get_scale() == 1024.0
    # a true gradient over the limit is clipped to it
    w1 = model.weight.detach().clone()
    scaled_grads(model, 10 * g, scaler)  # |g| = 5
    assert trainer.clip_and_step(opt, scaler, model.parameters(), 1.0)
    assert torch.allclose(model.weight, w1 - 0.1 * 2 * g, atol=1e-6)


@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_an_overflowed_step_is_skipped_and_the_scale_lowered(bad):
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scaled_grads(model, torch.tensor([[0.3, bad, 0.0]]), scaler)
    assert not trainer.clip_and_step(opt, scaler, model.parameters(), 1.0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert scaler.get_scale() == 512.0
    assert scaler.state_dict()["scale"] == 512.0  # what the checkpoint keeps


def test_without_fp16_the_step_is_exactly_clip_and_step():
    torch.manual_seed(0)
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    opts = [torch.optim.AdamW(m.parameters(), lr=0.1) for m in (a, b)]
    x = torch.randn(4, 3)
    for _ in range(3):
        for m, opt in zip((a, b), opts):
            opt.zero_grad()
            (100 * m(x).square().sum()).backward()
        assert trainer.clip_and_step(opts[0], Precision("fp32", "cpu").scaler(), a.parameters(), 1.0)
        nn.utils.clip_grad_norm_(b.parameters(), 1.0)
        opts[1].step()
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_pcgrad_of_scaled_losses_is_the_scaled_pcgrad():
    """The loop scales each of PCGrad's losses: the projections do not change with the scale."""
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    x = torch.randn(6, 4)
    shared = list(model.parameters())

    def grads(s: float) -> list[torch.Tensor]:
        out = [model(x).squeeze(-1) for _ in range(3)]  # a forward per task, as in the loop
        losses = [s * out[0].mean(), s * (-out[1][:3]).sum(), s * out[2].square().mean()]
        pcgrad_backward(losses, shared, random.Random(0))
        g = [p.grad.clone() / s for p in shared]
        for p in shared:
            p.grad = None
        return g
    plain, scaled = grads(1.0), grads(4096.0)
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(plain, scaled))


# -- the loop in fp16 (CPU autocast, CPU GradScaler) ----------------------------------------------
FP16 = ("--precision", "fp16", "--max_train_examples", "16", "--epochs", "2", "--steps_per_epoch", "6",
        "--save_every", "1", "--warmup_ratio", "0.5")
STEPS = 12


def nan_gradient_at(monkeypatch, step: int):
    """A finite loss whose gradient is NaN at this (1-based) call: what an fp16 overflow looks
    like to the scaler (the loss itself is fine, so the non-finite-loss check lets it through)."""
    real, calls = mc.training_loss, [0]

    def poisoned(model, task, batch, args):
        loss = real(model, task, batch, args)
        calls[0] += 1
        if calls[0] == step:
            b = model.sst_head[-1].bias
            loss = loss + 0.0 * (b - b.detach()).abs().sqrt().sum()  # value 0, gradient 0·∞ = NaN
        return loss
    monkeypatch.setattr(mc, "training_loss", poisoned)


def state(run) -> tuple[dict, dict, dict]:
    progress = json.loads((run / "state" / "trainer.json").read_text())["progress"]
    return (load_file(str(run / "state" / "model.safetensors")),
            load_file(str(run / "state" / "optimizer.safetensors")), progress)


def test_fp16_skips_an_overflowed_step_without_moving_the_schedule(run_argv, tmp_path, monkeypatch, capsys):
    """Step 2's gradients are made NaN; fp16's own overflows (at the default scale of 2^16 even
    this tiny model has some) count alike. Every skipped step leaves the schedule where it was."""
    nan_gradient_at(monkeypatch, 2)
    log = []  # per step: (the largest learning rate of the step, whether it was taken)
    real_step = trainer.clip_and_step

    def spy(opt, scaler, params, max_norm):
        lr = max(g["lr"] for g in opt.param_groups)
        log.append((lr, real_step(opt, scaler, params, max_norm)))
        return log[-1][1]
    monkeypatch.setattr(trainer, "clip_and_step", spy)
    assert mc.main(run_argv("f", *FP16)) == 0
    out = capsys.readouterr()
    assert out.out.count("precision: fp16 autocast with a gradient scaler on cpu") == 1
    skipped = [i for i, (_, taken) in enumerate(log) if not taken]
    assert len(log) == STEPS and 1 in skipped
    assert f"the fp16 gradient scaler skipped {len(skipped)} steps" in out.err
    run = tmp_path / "f" / "run"
    _, _, prog = state(run)
    assert prog["step"] == STEPS and prog["scaler_skipped"] == len(skipped)
    assert prog["scaler"]["scale"] == 2.0 ** 16 / 2 ** len(skipped)  # halved by each skip (no growth yet)
    # skipped steps are no optimizer steps: AdamW counted the others, and the schedule (6 steps of
    # warm-up, head lr 1e-3 the largest) moved on the taken steps only
    opt_meta = json.loads((run / "state" / "trainer.json").read_text())["optimizer"]
    assert max(v for k, v in opt_meta["scalars"].items() if k.endswith(".step")) == STEPS - len(skipped)
    done = [i - sum(j < i for j in skipped) for i in range(STEPS)]
    assert [lr for lr, _ in log] == pytest.approx([1e-3 * trainer.lr_factor(d, STEPS, 6) for d in done])
    assert log[2][0] == log[1][0]  # the step after the injected skip ran at the skipped step's lr
    assert all(p.isfinite().all() for p in state(run)[0].values())


def test_fp16_resume_restores_the_scaler_exactly(run_argv, tmp_path, monkeypatch):
    nan_gradient_at(monkeypatch, 3)
    assert mc.main(run_argv("ref", *FP16)) == 0
    ref = state(tmp_path / "ref" / "run")
    # the same run, stopped by Ctrl-C during step 7 and resumed
    nan_gradient_at(monkeypatch, 3)
    real, calls = mc.training_loss, [0]

    def interrupted(*a):
        calls[0] += 1
        if calls[0] == 7:
            os.kill(os.getpid(), signal.SIGINT)
        return real(*a)
    monkeypatch.setattr(mc, "training_loss", interrupted)
    run = tmp_path / "int" / "run"
    assert mc.main(run_argv("int", *FP16)) == 130
    at_stop = state(run)[2]
    assert at_stop["step"] == 7 and at_stop["scaler"]["scale"] < 2.0 ** 16  # not a fresh scaler's
    monkeypatch.undo()
    assert mc.main(["--resume", str(run)]) == 0
    got = state(run)
    for a, b in zip(ref[:2], got[:2]):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert got[2]["scaler"] == ref[2]["scaler"] and got[2]["scaler_skipped"] == ref[2]["scaler_skipped"] >= 1


# -- evaluation in the run's precision ------------------------------------------------------------
def test_scores_run_in_the_autocast_and_come_back_fp32(tiny_bert_dir, tiny_data_dir):
    from batching import encode_task
    from datasets import load
    from tokenizer import BertTokenizer

    torch.manual_seed(0)
    model = mc.build_model(mc.parse_args(["--bert_model", str(tiny_bert_dir)])).eval()
    tok = BertTokenizer.from_pretrained(str(tiny_bert_dir), max_length=32)
    data = encode_task("sst", load(tiny_data_dir / "ids-sst-dev.csv", "sst", labelled=True).examples, tok)
    seen, real = [], model.scores

    def spy(task, batch):
        seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return real(task, batch)
    model.scores = spy
    fp32 = scores(model, data, 8, "cpu", False)
    bf16 = scores(model, data, 8, "cpu", False, Precision("bf16", "cpu"))
    n = len(seen) // 2
    assert seen[:n] == [None] * n and seen[n:] == [torch.bfloat16] * n
    assert bf16.dtype == fp32.dtype == "float32"
    assert abs(bf16 - fp32).max() < 0.05 and not (bf16 == fp32).all()  # bf16 rounding, nothing worse


def test_compile_keeps_the_checkpoint_keys_and_the_results(run_argv, tmp_path, monkeypatch):
    """A compiled tiny run (dynamo graphs of every layer, aot_eager backend) ends where the eager
    one does: the same dev metrics and train losses, the same state_dict keys."""
    monkeypatch.setattr(mc, "COMPILE_BACKEND", "aot_eager")
    compiled = []
    real = mc.compile_encoder

    def spy(bert):
        real(bert)
        compiled.append(all(layer._compiled_call_impl is not None for layer in bert.layers))
    monkeypatch.setattr(mc, "compile_encoder", spy)
    short = ("--max_train_examples", "16", "--epochs", "1", "--steps_per_epoch", "4", "--no_predictions")
    from torch._dynamo.utils import counters
    counters.clear()
    try:
        assert mc.main(run_argv("c", *short, "--compile")) == 0
        graphs = counters["stats"]["unique_graphs"]
    finally:
        torch._dynamo.reset()
    assert compiled == [True] and graphs >= 1  # the layers really ran as captured graphs
    assert mc.main(run_argv("e", *short)) == 0
    runs = [tmp_path / x / "run" for x in ("c", "e")]
    (c, e) = [[json.loads(line) for line in (r / "metrics.jsonl").read_text().splitlines()] for r in runs]
    keys = [k for k in e[-1] if k.startswith(("loss_", "sst", "para", "sts", "overall"))]
    assert len(keys) >= 5
    assert [h[k] for h in c for k in keys] == pytest.approx([h[k] for h in e for k in keys], abs=1e-5)
    assert load_file(str(runs[0] / "best" / "model.safetensors")).keys() == \
        load_file(str(runs[1] / "best" / "model.safetensors")).keys()
