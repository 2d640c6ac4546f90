"""The CUDA path end to end (--use_gpu): training steps in each precision, evaluation, an
interrupted run resumed, eval-only predictions and --compile, on a tiny model and tiny data.
Skipped where CUDA is absent (CI has no GPU); on a GPU machine: pytest -m cuda tests/test_cuda.py"""
from __future__ import annotations

import json
import math
import os
import signal

import numpy as np
import pytest
import torch
from conftest import DATA_FILES
from safetensors.torch import load_file

# Deterministic cuBLAS, for the resume test: read when cuBLAS starts, so set before any CUDA work.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import multitask_classifier as mc  # noqa: E402
from batching import TASKS, encode_task  # noqa: E402
from datasets import load  # noqa: E402
from evaluation import scores  # noqa: E402
from precision import choose  # noqa: E402
from tokenizer import BertTokenizer  # noqa: E402

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

SHORT = ("--max_train_examples", "16", "--epochs", "2", "--steps_per_epoch", "6", "--save_every", "1")
STEPS = 12
DEV_ROWS = DATA_FILES["sst_dev"][1]


@pytest.fixture(autouse=True)
def _restore_global_state():
    """main() switches on TF32 and sets the thread count for the whole process: put them back."""
    tf32, threads = torch.backends.cuda.matmul.allow_tf32, torch.get_num_threads()
    yield
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.set_num_threads(threads)


@pytest.fixture
def deterministic():
    """Deterministic kernels (index_add, attention backward): a resumed run can then be compared
    with an uninterrupted one to the bit. warn_only: an op without such a kernel warns."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    yield
    torch.use_deterministic_algorithms(False)


def predictions(out) -> dict[str, list[str]]:
    """The six prediction files of a run under `out`: their value column, by task and split."""
    files = {f"{t}-{s}": out / "predictions" / f"{t}-{s}-output.csv" for t in TASKS for s in ("dev", "test")}
    return {k: [line.split(",")[1].strip() for line in f.read_text().splitlines()[1:]] for k, f in files.items()}


def state(run):
    return (load_file(str(run / "state" / "model.safetensors")),
            json.loads((run / "state" / "trainer.json").read_text())["progress"])


@pytest.mark.parametrize("prec", ["auto", "fp16", "fp32"])
def test_training_run_on_cuda(prec, run_argv, tmp_path, capsys):
    expected = choose(prec, "cuda")
    assert mc.main(run_argv("g", "--use_gpu", "--precision", prec, *SHORT)) == 0
    assert f"precision: {expected.describe()}" in capsys.readouterr().out
    run = tmp_path / "g" / "run"
    config = json.loads((run / "config.json").read_text())
    assert config["use_gpu"] and config["precision"] == prec  # (--resume picks again: the card may differ)
    best = json.loads((run / "summary.json").read_text())["best"]
    assert all(math.isfinite(best[k]) for k in ("sst_acc", "para_acc", "sts_r", "overall"))
    weights, prog = state(run)
    assert prog["step"] == STEPS and all(w.device.type == "cpu" and w.isfinite().all() for w in weights.values())
    assert ("scaler" in prog) == (expected.name == "fp16")  # only fp16 has a scaler state to keep
    with np.load(run / "dev_scores.npz") as z:
        assert z["sst_scores"].dtype == np.float32 and z["sst_scores"].shape == (DEV_ROWS, 5)
        assert np.isfinite(z["sts_scores"]).all()
    preds = predictions(tmp_path / "g")
    assert all(len(v) == DEV_ROWS for v in preds.values())
    assert set(preds["sst-dev"]) <= set("01234") and set(preds["para-test"]) <= {"0", "1"}


def test_resume_on_cuda_ends_where_the_uninterrupted_run_does(deterministic, run_argv, tmp_path, monkeypatch):
    assert mc.main(run_argv("ref", "--use_gpu", *SHORT)) == 0
    real, calls = mc.training_loss, [0]

    def interrupted(*a):
        calls[0] += 1
        if calls[0] == 5:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C during step 5
        return real(*a)
    monkeypatch.setattr(mc, "training_loss", interrupted)
    run = tmp_path / "int" / "run"
    assert mc.main(run_argv("int", "--use_gpu", *SHORT)) == 130
    assert state(run)[1]["step"] == 5
    monkeypatch.undo()
    assert mc.main(["--resume", str(run)]) == 0
    (ref, ref_prog), (got, got_prog) = state(tmp_path / "ref" / "run"), state(run)
    assert got_prog["step"] == ref_prog["step"] == STEPS
    diff = torch.cat([(ref[k].float() - got[k].float()).abs().flatten() for k in ref])
    # bitwise with deterministic kernels; a lost optimizer, scaler or RNG state moves nearly every
    # weight by about the learning rate
    assert diff.mean() < 1e-7 and diff.max() < 1e-2, (diff.mean(), diff.max())
    overall = [[h["overall"] for h in p["history"]] for p in (ref_prog, got_prog)]
    assert overall[1] == pytest.approx(overall[0], abs=1e-3)


def test_scores_on_cuda_match_cpu(tiny_bert_dir, tiny_data_dir):
    """Pinned copies in, fp32 numpy out, in file order: the same scores as on CPU."""
    torch.manual_seed(0)
    model = mc.build_model(mc.parse_args(["--bert_model", str(tiny_bert_dir)])).eval()
    tok = BertTokenizer.from_pretrained(str(tiny_bert_dir), max_length=32)
    data = encode_task("sst", load(tiny_data_dir / "ids-sst-dev.csv", "sst", labelled=True).examples, tok)
    cpu = scores(model, data, 8, "cpu", False)
    torch.backends.cuda.matmul.allow_tf32 = False  # full fp32 matmuls: compare with CPU to 1e-5
    model.cuda()
    gpu = scores(model, data, 8, torch.device("cuda"), False)
    low = scores(model, data, 8, torch.device("cuda"), False, choose("auto", "cuda"))
    assert gpu.dtype == low.dtype == np.float32 and gpu.shape == cpu.shape == (DEV_ROWS, 5)
    assert np.allclose(gpu, cpu, atol=1e-5)
    assert np.allclose(low, cpu, atol=0.05)  # bf16 or fp16 rounding, nothing worse


def test_eval_only_on_cuda_predicts_what_cpu_does(run_argv, tmp_path):
    assert mc.main(run_argv("g", "--use_gpu", *SHORT, "--no_predictions")) == 0
    run = tmp_path / "g" / "run"
    for where, flags in (("cpu", ()), ("gpu", ("--use_gpu", "--precision", "fp32"))):
        argv = run_argv(where, "--checkpoint", str(run), "--eval_only", *flags)
        assert mc.main(argv) == 0
    cpu, gpu = predictions(tmp_path / "cpu"), predictions(tmp_path / "gpu")
    # main() runs CUDA matmuls in TF32 (10-bit mantissa): close, not equal. Predictions in the
    # wrong rows or from other weights would be off by far more.
    for k in cpu:
        if k.startswith("sts"):
            assert np.allclose(np.array(gpu[k], float), np.array(cpu[k], float), atol=0.05), k
        else:  # a probability within TF32's error of the boundary may fall the other way
            assert np.mean(np.array(gpu[k]) == np.array(cpu[k])) >= 0.9, k


def test_compile_on_cuda_matches_eager(run_argv, tmp_path, monkeypatch):
    pytest.importorskip("triton")
    import torch._inductor.config as inductor
    monkeypatch.setattr(inductor, "fallback_random", True)  # dropout draws what eager draws
    short = ("--use_gpu", "--precision", "fp32", "--max_train_examples", "16", "--epochs", "1",
             "--steps_per_epoch", "4", "--no_predictions")
    try:
        assert mc.main(run_argv("c", *short, "--compile")) == 0
    finally:
        torch._dynamo.reset()
    assert mc.main(run_argv("e", *short)) == 0
    c, e = [[json.loads(line) for line in (tmp_path / x / "run" / "metrics.jsonl").read_text().splitlines()]
            for x in ("c", "e")]
    keys = [k for k in e[-1] if k.startswith(("loss_", "sts_r", "overall"))]
    assert [h[k] for h in c for k in keys] == pytest.approx([h[k] for h in e for k in keys], abs=1e-3)
