"""benchmarks/bench_speed.py: --short runs every code path and writes the whole table, and the two
sides it compares (mtbert, transformers) compute the same loss from the same weights on the same
batches, so its ratios compare like with like."""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import multitask_classifier as mc
from batching import TASKS
from tokenizer import BertTokenizer

pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "bench_speed.py"
NUMBER = r"(\d+(?:\.\d+)?)"


@pytest.fixture(scope="module")
def bench():
    if not (ROOT / "data" / "quora-train.csv").is_file():
        pytest.skip("data/ is missing: run `bash setup.sh` to fill it")
    spec = importlib.util.spec_from_file_location("bench_speed", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cell_values(text: str, first: str) -> list[float]:
    """The numbers of the table row starting with `first` ('train | mtbert', 'speed-up', ...)."""
    m = re.search(rf"^\| {re.escape(first)} \|(.*)\|$", text, re.M)
    assert m, f"no row '{first}' in:\n{text}"
    return [float(re.fullmatch(NUMBER + r"[%x]?", c.strip()).group(1)) for c in m.group(1).split("|")]


def test_short_mode_writes_every_row(bench, minilm_folder, tmp_path):
    published = (ROOT / "results" / "speed.md").read_bytes()
    out = tmp_path / "speed.md"
    proc = subprocess.run([sys.executable, str(BENCH), "--short", "--threads", "1", "--out", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = out.read_text()
    assert "cross-encoded Quora pairs" in text  # the main job's default PARA head
    for mode in ("train", "inference"):
        for impl in ("mtbert", "transformers eager", "transformers sdpa", "transformers sdpa, oneDNN linears"):
            ex_s, tok_s, gflops, of_peak = cell_values(text, f"{mode} | {impl}")
            assert ex_s > 0 and tok_s > ex_s and gflops > 0 and of_peak >= 0
    for impl in ("eager", "sdpa", "sdpa, oneDNN linears"):
        assert all(r > 0 for r in cell_values(text, f"mtbert / transformers {impl}"))
    # int8 inference, the same layers in both encoders; int8 is never trained
    for impl in ("mtbert int8", "transformers sdpa int8"):
        ex_s, tok_s, gflops, of_peak = cell_values(text, f"inference | {impl}")
        assert ex_s > 0 and tok_s > ex_s and gflops > 0
        assert f"| train | {impl} |" not in text
    for theirs in ("transformers sdpa", "transformers sdpa int8"):
        ratio = re.search(rf"^\| mtbert int8 / {theirs} \| – \| {NUMBER}x \|$", text, re.M)
        assert ratio and float(ratio.group(1)) > 0
    for row in ("bucketed + unpadded (default)", "random batches, padded layers", "speed-up"):
        assert cell_values(text, row)[0] > 0
    # where inference time goes: every part a share, together the whole pass; matrix products lead
    shares = {part: cell_values(text, part)[0] for part in [*bench.PARTS, "other ops", "outside torch ops"]}
    assert sum(shares.values()) == pytest.approx(100, abs=len(shares) / 2)  # each rounded to 1%
    assert shares["matrix products"] == max(shares.values())
    assert cell_values(text, "bound: mtbert / transformers sdpa with all but the matrix products free")[0] > 0
    assert re.search(r"^\| 2\.5x sdpa would remove, of the time outside matrix products \| (\d+%|none \(reached\)|more than all of it .*) \|$",
                     text, re.M)
    assert (ROOT / "results" / "speed.md").read_bytes() == published  # a test never rewrites it


@pytest.mark.parametrize("argv, message", [
    (["--short"], "--out"),
    (["--pal", "--out", "x.md"], "--pal"),
    (["--steps", "0", "--out", "x.md"], "--steps"),
])
def test_bad_usage_exits_2_before_any_work(bench, tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    assert bench.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and err.count("\n") == 1
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("flags", [
    (),  # the main job: cross-encoded PARA, cosine STS, mean pooling, frozen word embeddings
    ("--para_head", "concat", "--para_symmetric", "--sts_head", "concat", "--pooling", "pooler",
     "--freeze_layers", "2"),
    ("--sts_head", "cross", "--pooling", "cls", "--no-freeze_embeddings"),
], ids=["default", "bi-encoder", "cross-sts"])
def test_both_sides_compute_the_same_loss(bench, minilm_folder, flags):
    _, margs, _ = bench.parse(["--max_train_examples", "16", *flags])
    data = bench.load_data(margs, BertTokenizer.from_pretrained(margs.bert_model, max_length=margs.max_length))
    torch.manual_seed(0)
    ours = mc.build_model(margs).eval()
    trainable = lambda m: sum(p.numel() for p in m.parameters() if p.requires_grad)
    for impl in bench.IMPLS:
        theirs = bench.HFMultitask(ours, impl).eval()
        assert trainable(theirs) == trainable(ours)  # same backward and AdamW work
        for task in TASKS:
            batch = data[task].batch(range(8))
            cross = {"sst": True, "para": margs.para_head == "cross", "sts": margs.sts_head == "cross"}[task]
            assert ("b" not in batch) == cross  # pairs encoded the way the heads read them
            assert not batch["a"]["attention_mask"].bool().all()  # padding is exercised
            with torch.no_grad():
                a, b = bench.step(ours, task, batch), bench.step(theirs, task, batch)
            assert a.item() > 0 and abs(a.item() - b.item()) < 1e-4, (impl, task, a.item(), b.item())


@pytest.mark.parametrize("p", ["0", "0.2"])
def test_both_sides_use_the_same_dropout(bench, minilm_folder, p):
    """Attention dropout decides which CPU attention kernel runs: both sides must get the same."""
    _, margs, _ = bench.parse(["--max_train_examples", "16", "--attention_dropout", p, "--hidden_dropout_prob", "0.05"])
    ours = mc.build_model(margs)
    for impl in bench.IMPLS:
        cfg = bench.HFMultitask(ours, impl).bert.config
        assert cfg.attention_probs_dropout_prob == ours.bert.config.attention_probs_dropout_prob == float(p)
        assert cfg.hidden_dropout_prob == ours.bert.config.hidden_dropout_prob == 0.05


def test_profiled_ops_fall_in_their_parts(bench):
    part = bench.part_of
    assert part("aten::addmm") == part("aten::mm") == part("aten::_int_mm") == "matrix products"
    assert part("mkldnn::_linear_pointwise") == "matrix products"  # onednn.py's products
    assert part("aten::_scaled_dot_product_flash_attention_for_cpu") == "attention"
    assert part("aten::gelu") == "GELU" and part("aten::native_layer_norm") == "LayerNorm"
    assert part("aten::index_select") == part("aten::index_copy_") == "gather, scatter, grid fill and copies"
    assert part("aten::add") == part("aten::_log_softmax") == "other ops"  # a head's loss is not attention


def test_needed_cut(bench):
    # 2.0x with 72% in matrix products: 2.5x needs the pass 20% shorter, 0.20 / 0.28 of the rest
    assert bench.needed_cut(2.0, 0.72) == "71%"
    assert bench.needed_cut(2.6, 0.72) == "none (reached)"
    assert bench.needed_cut(1.0, 0.5).startswith("more than all of it")  # 60% to cut, 50% outside
