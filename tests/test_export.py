"""export.py: one folder that transformers, sentence-transformers and mtbert all load, giving the
run's hidden states, sentence embeddings, token ids and predictions; PAL runs and non-runs refused."""
from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from test_cli import SMOKE, pred_files, tiny_argv

import export
import multitask_classifier as mc
import options
from bert import BertModel
from run_folder import load_weights
from tokenizer import BertTokenizer

transformers = pytest.importorskip("transformers")
ROOT = Path(__file__).resolve().parents[1]


# -- a tiny trained run and its export ---------------------------------------------------------
@pytest.fixture(scope="module")
def run(tiny_bert_dir, tiny_data_dir, tmp_path_factory) -> SimpleNamespace:
    """16 training examples per task, one epoch, predictions written (as test_cli's smoke run)."""
    out = tmp_path_factory.mktemp("run")
    assert mc.main(tiny_argv(tiny_bert_dir, tiny_data_dir, out, *SMOKE)) == 0
    return SimpleNamespace(out=out, run=out / "run", best=out / "run" / "best")


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("export") / "tiny-mtbert"
    assert export.main([str(run.run), str(folder)]) == 0
    return folder


def variant(run, tmp_path: Path, args=None, tokenizer_config=None) -> tuple[Path, Path]:
    """A copy of the run's best/ with edited args.json / tokenizer_config.json, and its export."""
    best = tmp_path / "variant" / "best"
    shutil.copytree(run.best, best)
    (best / "manifest.json").unlink()  # edited by hand: unverified, as folders saved before manifests
    saved = json.loads((best / "args.json").read_text())
    (best / "args.json").write_text(json.dumps({**saved, **(args or {})}))
    if tokenizer_config is not None:
        (best / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    assert export.main([str(best), str(tmp_path / "out")]) == 0
    return best, tmp_path / "out"


def mtbert(best: Path):
    """The run's own model and tokenizer, loaded as --eval_only loads a run."""
    args = options.saved_args(best, "args.json")
    model = mc.build_model(args, checkpoint=best)
    load_weights(model, best)
    return model.eval(), BertTokenizer.from_pretrained(str(best), max_length=args.max_length)


# -- transformers ------------------------------------------------------------------------------
def test_automodel_gives_the_encoders_hidden_states(run, exported, sentences, pairs):
    model, tok = mtbert(run.best)
    hf, info = transformers.AutoModel.from_pretrained(str(exported), output_loading_info=True)
    assert type(hf).__name__ == "BertModel"
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    hf.eval()
    for batch in (tok(sentences), tok([a for a, _ in pairs], [b for _, b in pairs])):
        mask = batch["attention_mask"].bool()
        assert not mask.all()  # padding is there to be excluded
        with torch.no_grad():
            ours, theirs = model.bert(**batch), hf(**batch)
        assert (ours["last_hidden_state"] - theirs.last_hidden_state)[mask].abs().max() <= 1e-5
        assert (ours["pooler_output"] - theirs.pooler_output).abs().max() <= 1e-5


@pytest.mark.parametrize("lowercase", [True, False])
def test_autotokenizer_gives_mtberts_ids(run, exported, tmp_path, sentences, pairs, lowercase):
    if lowercase:
        best, folder = run.best, exported
    else:
        best, folder = variant(run, tmp_path, tokenizer_config={"do_lower_case": False})
    _, tok = mtbert(best)
    hf = transformers.AutoTokenizer.from_pretrained(str(folder))
    long = " ".join(["Unbelievably"] * 300)  # cut at --max_length by both
    texts = [*sentences, long]
    got = hf(texts, truncation=True)
    assert got["input_ids"] == [ids for ids, _, _ in tok.encode(texts)]
    assert len(got["input_ids"][-1]) == tok.max_length
    a, b = [p[0] for p in pairs], [p[1] for p in pairs]
    got = hf(a, b, truncation=True)
    want = tok.encode(a, b)
    assert got["input_ids"] == [ids for ids, _, _ in want]
    assert got["token_type_ids"] == [tt for _, tt, _ in want]
    assert (hf.tokenize("Hello") == ["hello"]) == lowercase


# -- sentence-transformers ---------------------------------------------------------------------
@pytest.mark.parametrize("pooling", ["mean", "cls", "pooler"])
def test_sentence_transformer_encodes_mtberts_sentence_embeddings(run, exported, tmp_path, sentences, pooling):
    st = pytest.importorskip("sentence_transformers")
    best, folder = (run.best, exported) if pooling == "mean" else variant(run, tmp_path, {"pooling": pooling})
    model, tok = mtbert(best)
    assert model.args.pooling == pooling
    with torch.no_grad():
        want = model.embed("sst", tok(sentences))
    encoder = st.SentenceTransformer(str(folder), device="cpu")
    assert len(encoder) == (3 if pooling == "pooler" else 2)  # pooler: a tanh Dense after CLS pooling
    assert encoder.max_seq_length == model.args.max_length
    got = encoder.encode(sentences, convert_to_tensor=True, batch_size=8)
    assert got.shape == want.shape
    assert (got - want).abs().max() <= 1e-5


# -- mtbert loads it back ----------------------------------------------------------------------
def test_load_exported_rebuilds_the_run_bit_for_bit(run, exported):
    original, _ = mtbert(run.best)
    model, args = export.load_exported(exported)
    assert args.bert_model == str(exported)
    a, b = original.state_dict(), model.state_dict()
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    heads = load_file(str(exported / "heads.safetensors"))
    assert set(heads) == {k for k in a if not k.startswith("bert.")} and "sts_affine" in heads


def test_eval_only_from_the_export_writes_the_runs_predictions(run, exported, tiny_bert_dir, tiny_data_dir, tmp_path):
    out = tmp_path / "e"
    assert mc.main(tiny_argv(tiny_bert_dir, tiny_data_dir, out, "--checkpoint", exported, "--eval_only")) == 0
    for name, path in pred_files(out).items():
        assert path.read_bytes() == pred_files(run.out)[name].read_bytes(), name


def test_export_as_bert_model_starts_a_run(exported, tiny_data_dir, tmp_path):
    bert = BertModel.from_pretrained(str(exported), verbose=False)
    assert bert.load_report == {"missing": [], "unexpected": []}
    argv = tiny_argv(exported, tiny_data_dir, tmp_path, "--max_train_examples", "8", "--epochs", "1",
                     "--steps_per_epoch", "2", "--no_predictions", "--wise_alphas")
    assert mc.main(argv) == 0
    assert (tmp_path / "run" / "best" / "model.safetensors").is_file()
    assert (tmp_path / "run" / "best" / "vocab.txt").read_bytes() == (exported / "vocab.txt").read_bytes()


# -- what is refused ---------------------------------------------------------------------------
def test_pal_run_is_refused_with_one_line(tiny_bert_dir, tiny_data_dir, tmp_path):
    assert mc.main(tiny_argv(tiny_bert_dir, tiny_data_dir, tmp_path, *SMOKE, "--pal",
                             "--no_predictions", "--wise_alphas")) == 0
    out = tmp_path / "pal-export"
    res = subprocess.run([sys.executable, str(ROOT / "export.py"), str(tmp_path / "run"), str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--pal" in lines[0], res.stderr
    assert not out.exists()


def test_bad_usage_is_one_line_exit_2(run, exported, tiny_bert_dir, tmp_path, capsys):
    cases = [([str(tmp_path / "nowhere"), str(tmp_path / "a")], "folder not found"),
             ([str(tiny_bert_dir), str(tmp_path / "b")], "not a run folder"),
             ([str(run.run), str(exported)], "--overwrite")]
    for argv, words in cases:
        assert export.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and words in err[0], err
    # RUN_DIR/best works as RUN_DIR does, and --overwrite replaces the folder
    again = tmp_path / "again"
    assert export.main([str(run.best), str(again)]) == 0
    assert export.main([str(run.run), str(again), "--overwrite"]) == 0
    for name in ("model.safetensors", "heads.safetensors", "tokenizer.json", "modules.json"):
        assert (again / name).read_bytes() == (exported / name).read_bytes(), name


# -- the model card ----------------------------------------------------------------------------
def test_model_card_names_the_metrics_flags_and_data(run, exported, tiny_data_dir):
    yaml = pytest.importorskip("yaml")
    card = (exported / "README.md").read_text()
    _, front, body = card.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert meta["library_name"] == "sentence-transformers"
    assert {"accuracy", "pearsonr"} <= set(meta["metrics"]) and len(meta["datasets"]) == 3
    assert "base_model" not in meta  # the tiny run started from a local folder: no hub id
    for line in (run.run / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        assert " | ".join(f"{row[k]:.4f}" for k in ("sst_acc", "para_acc", "sts_r", "overall")) + " |" in body
    command = next(ln for ln in body.splitlines() if ln.strip().startswith("python multitask_classifier.py --"))
    for flag in ("--max_train_examples 16", "--batch_size 8", "--sst_train ids-sst-train.csv"):
        assert flag in command
    assert "--lr " not in command  # a default
    assert "| SST-5 sentiment | ids-sst-train.csv | 16 | ids-sst-dev.csv | 24 |" in body
    assert "PARA was trained on 16 Quora pairs, 48 in its file" in body
    assert str(tiny_data_dir) not in card  # data files by name, not by the machine's paths
    assert "SentenceTransformer(" in body and "AutoModel.from_pretrained(" in body
    assert json.loads((exported / "heads.json").read_text())["max_train_examples"] == 16
    assert not [k for k in json.loads((exported / "heads.json").read_text()) if k.endswith(("_train", "_out"))]


def test_model_card_of_a_minilm_run_names_its_base_and_the_quora_overlap(run):
    args = options.saved_args(run.best, "args.json")
    args.bert_model, args.max_train_examples = "minilm", 0
    card = export.model_card(args, "m", run.run, 32, 2, True)
    assert "base_model: sentence-transformers/all-MiniLM-L6-v2" in card
    assert "Quora duplicate questions" in card and "PARA was trained on 48 Quora pairs: the course's subset" in card


def test_model_card_says_when_the_encoder_was_trained_by_mlm_first(run):
    args = options.saved_args(run.best, "args.json")
    assert args.mlm_epochs == 0  # the tests' runs fine-tune the tiny model itself
    assert "masked-language modelling" not in export.model_card(args, "m", run.run, 32, 2, True)
    args.mlm_epochs = 1.0
    card = export.model_card(args, "m", run.run, 32, 2, True)
    assert "trained further by masked-language modelling on the training text (1 pass(es)" in card
    assert "--mlm_cache" not in card  # where a machine keeps its encoders is not part of the recipe


def test_an_interrupted_export_leaves_no_temporary_folder(tmp_path, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(export, "save_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export.write_export(tmp_path / "out", {"config.json": "{}"}, {"model.safetensors": {}}, {}, overwrite=False)
    assert list(tmp_path.iterdir()) == []


def test_an_export_clears_the_temporary_folders_of_killed_exports_on_this_machine_only(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid no process holds now
    host = re.sub(r"[^\w.]+", "_", platform.node()) or "host"
    killed = tmp_path / f"out.{host}-{gone.pid}-0123abcd.tmp"
    running = tmp_path / f"out.{host}-{os.getpid()}-0123abcd.tmp"  # a live process's: still writing
    elsewhere = tmp_path / f"out.other_machine-{gone.pid}-0123abcd.tmp"  # its pid means nothing here
    other_out = tmp_path / f"out2.{host}-{gone.pid}-0123abcd.tmp"  # another export's
    for folder in (killed, running, elsewhere, other_out):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"half")
    export.write_export(tmp_path / "out", {"config.json": "{}"}, {}, {}, overwrite=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out", running.name, elsewhere.name, other_out.name])
    assert (tmp_path / "out" / "config.json").read_text() == "{}"
