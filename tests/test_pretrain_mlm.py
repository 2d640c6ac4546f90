"""pretrain_mlm.py: the masking recipe, the text it reads, and an MLM run on the tiny model whose
output folder is a checkpoint that fine-tuning starts from."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import save_file
from conftest import DATA_FILES

import multitask_classifier as mc
import pretrain_mlm as mlm
from bert import BertModel

pytestmark = pytest.mark.usefixtures("one_thread")


def test_masking_picks_real_tokens_only_in_berts_proportions():
    g = torch.Generator().manual_seed(0)
    B, T, CLS, SEP, PAD, MASK = 400, 50, 101, 102, 0, 103
    ids = torch.randint(1000, 30000, (B, T), generator=g)
    lengths = torch.randint(5, T + 1, (B,), generator=g)
    attention = (torch.arange(T)[None] < lengths[:, None]).long()
    ids[:, 0] = CLS
    ids[torch.arange(B), lengths - 1] = SEP
    ids[attention == 0] = PAD
    inputs, labels = mlm.mask_tokens(ids, attention, [CLS, SEP, PAD], MASK, 30522, g, p=0.15)
    chosen = labels != -100
    real = attention.bool() & (ids != CLS) & (ids != SEP)
    assert not (chosen & ~real).any()  # never [CLS], [SEP] or padding
    assert torch.equal(labels[chosen], ids[chosen])  # the label is the original token
    assert torch.equal(inputs[~chosen], ids[~chosen])  # nothing else changes
    share = chosen.sum() / real.sum()
    assert 0.14 < share < 0.16
    masked = (inputs[chosen] == MASK).float().mean()
    kept = (inputs[chosen] == ids[chosen]).float().mean()
    assert 0.77 < masked < 0.83 and 0.08 < kept < 0.12  # 80% [MASK], 10% kept, 10% random


def test_corpus_keeps_quora_pairs_whole_and_every_other_sentence_once(tiny_data_dir):
    files = {t: tiny_data_dir / DATA_FILES[f"{t}_train"][0] for t in mlm.TRAIN_FILES}
    items = mlm.corpus(files)
    assert len(items) == len(set(items))
    pairs = [it for it in items if it[1] is not None]
    rows = {t: mlm.load(f, t, labelled=True).examples for t, f in files.items()}
    assert pairs == list(dict.fromkeys((e.sent1, e.sent2) for e in rows["para"]))
    singles = {a for a, b in items if b is None}
    assert singles == {e.sent1 for e in rows["sst"]} | {s for e in rows["sts"] for s in (e.sent1, e.sent2)}


def mlm_argv(out, tiny_bert_dir, tiny_data_dir, *extra):
    argv = [str(out), "--bert_model", str(tiny_bert_dir), "--batch_size", "8", "--threads", "1"]
    for t in mlm.TRAIN_FILES:
        argv += [f"--{t}_train", str(tiny_data_dir / DATA_FILES[f"{t}_train"][0])]
    return argv + list(extra)


def test_an_mlm_run_learns_and_writes_a_checkpoint_fine_tuning_starts_from(tmp_path, tiny_bert_dir, tiny_data_dir,
                                                                           run_argv):
    out = tmp_path / "mlm"
    assert mlm.main(mlm_argv(out, tiny_bert_dir, tiny_data_dir, "--steps", "101", "--lr", "3e-3",
                             "--head_lr", "1e-1")) == 0
    info = json.loads((out / "mlm.json").read_text())
    assert info["steps"] == 101 and info["texts"] > 100
    assert info["loss"][-1]["loss"] < info["loss"][0]["loss"] - 1.0  # it learned to predict words
    base, tuned = BertModel.from_pretrained(str(tiny_bert_dir)), BertModel.from_pretrained(str(out))
    assert tuned.load_report == {"missing": [], "unexpected": []}
    assert tuned.config == base.config
    b, t = base.state_dict(), tuned.state_dict()
    assert torch.equal(b["embeddings.word_embeddings.weight"], t["embeddings.word_embeddings.weight"])  # frozen
    assert not torch.equal(b["layers.1.attention.qkv.weight"], t["layers.1.attention.qkv.weight"])
    assert (out / "vocab.txt").read_bytes() == (tiny_bert_dir / "vocab.txt").read_bytes()
    # a folder in use is not overwritten unless asked
    assert mlm.main(mlm_argv(out, tiny_bert_dir, tiny_data_dir, "--steps", "1")) == 2
    # and the main job fine-tunes from it
    argv = run_argv("ft", "--bert_model", str(out), "--epochs", "1", "--steps_per_epoch", "2", "--no_predictions")
    assert mc.main(argv) == 0
    saved = json.loads((tmp_path / "ft" / "run" / "best" / "args.json").read_text())
    assert saved["bert_model"] == str(out)


def test_a_missing_training_file_is_a_one_line_error(tmp_path, tiny_bert_dir, tiny_data_dir, capsys):
    argv = mlm_argv(tmp_path / "mlm", tiny_bert_dir, tiny_data_dir, "--sst_train", str(tmp_path / "none.csv"))
    assert mlm.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "none.csv" in err and len(err.splitlines()) == 1


# -- the main job's stage (--mlm_epochs): trained once, reused, the same as the two-step recipe ----
SHORT = ("--epochs", "1", "--steps_per_epoch", "3", "--no_predictions")


def encoders(cache):
    """The encoders in a cache folder (not the hidden lock files beside them)."""
    return [p for p in cache.iterdir() if not p.name.startswith(".")]


def weights(folder):
    from safetensors.torch import load_file
    return load_file(str(folder / "model.safetensors"))


def test_the_main_job_trains_the_encoder_once_and_fine_tunes_as_from_its_folder(tmp_path, tiny_bert_dir,
                                                                                tiny_data_dir, run_argv):
    assert mc.main(run_argv("a", "--mlm_epochs", "1", *SHORT)) == 0
    record = json.loads((tmp_path / "a" / "run" / "mlm.json").read_text())
    folder, = encoders(tmp_path / "mlm-cache")
    assert record["encoder"] == str(folder) and record["reused"] is False and record["steps"] >= 1
    # the encoder is pretrain_mlm.py's with its defaults on the same training files, bit for bit
    assert mlm.main(mlm_argv(tmp_path / "standalone", tiny_bert_dir, tiny_data_dir, "--batch_size", "64")) == 0
    cached, alone = weights(folder), weights(tmp_path / "standalone")
    assert cached.keys() == alone.keys() and all(torch.equal(cached[k], alone[k]) for k in cached)
    assert not torch.equal(cached["encoder.layer.0.attention.self.query.weight"],
                           weights(tiny_bert_dir)["encoder.layer.0.attention.self.query.weight"])
    # fine-tuning from it is the run from that folder with the stage off, bit for bit
    assert mc.main(run_argv("b", "--bert_model", folder, "--mlm_epochs", "0", *SHORT)) == 0
    a, b = weights(tmp_path / "a" / "run" / "best"), weights(tmp_path / "b" / "run" / "best")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (tmp_path / "b" / "run" / "mlm.json").exists()
    # a second run reuses the encoder: no training, the same folder
    (folder / "mlm.json").touch()
    before = (folder / "model.safetensors").stat().st_mtime_ns
    assert mc.main(run_argv("c", "--mlm_epochs", "1", *SHORT)) == 0
    again = json.loads((tmp_path / "c" / "run" / "mlm.json").read_text())
    assert again["encoder"] == str(folder) and again["reused"] is True
    assert (folder / "model.safetensors").stat().st_mtime_ns == before
    assert encoders(tmp_path / "mlm-cache") == [folder]
    # the same folder run again without the stage keeps no record of the stage it no longer ran
    assert mc.main(run_argv("c", "--overwrite", *SHORT)) == 0
    assert not (tmp_path / "c" / "run" / "mlm.json").exists()


def test_the_cache_name_changes_with_the_text_the_settings_and_the_base(tiny_bert_dir, minilm_folder, tmp_path):
    s = mlm.defaults()
    items = [("a movie .", None), ("is it ?", "is it so ?")]
    name = mlm.cache_name(str(tiny_bert_dir), items, s)
    # the base's weights by content: a copy elsewhere is the same base, an edited one is not
    copy = shutil.copytree(tiny_bert_dir, tmp_path / "copy")
    assert mlm.cache_name(str(copy), items, s).split("-mlm-")[1] == name.split("-mlm-")[1]
    state = weights(copy)
    state["embeddings.word_embeddings.weight"][0, 0] += 1.0
    save_file(state, str(copy / "model.safetensors"))
    assert mlm.cache_name(str(copy), items, s).split("-mlm-")[1] != name.split("-mlm-")[1]
    assert name == mlm.cache_name(str(tiny_bert_dir), list(items), mlm.defaults())  # a function of them alone
    assert name != mlm.cache_name(str(tiny_bert_dir), items[:1], s)
    assert name != mlm.cache_name(str(tiny_bert_dir), items[::-1], s)
    assert name != mlm.cache_name(str(tiny_bert_dir), items, mlm.defaults().__class__(**{**vars(s), "epochs": 2.0}))
    assert name != mlm.cache_name(str(minilm_folder), items, s)
    assert mlm.cache_name("minilm", items, s).startswith("minilm-mlm-")


def test_the_stage_is_off_for_a_frozen_encoder(tmp_path, run_argv):
    # the starter's --option pretrain probes the encoder as loaded: no MLM, no cache, no record
    assert mc.main(run_argv("p", "--mlm_epochs", "1", "--option", "pretrain", *SHORT)) == 0
    assert not (tmp_path / "p" / "run" / "mlm.json").exists() and not (tmp_path / "mlm-cache").exists()


def train_examples(tiny_data_dir):
    """The tiny data's training examples of the three tasks, as the main job hands them over."""
    files = {t: tiny_data_dir / DATA_FILES[f"{t}_train"][0] for t in mlm.TRAIN_FILES}
    return {t: mlm.load(f, t, labelled=True).examples for t, f in files.items()}


def test_two_runs_at_once_train_the_encoder_once(tmp_path, tiny_bert_dir, tiny_data_dir):
    # a sweep with JOBS=2 starts two seeds of an MLM row together: one trains, the other waits for
    # the lock and reuses that encoder (unlocked, both trained it and wrote the same folder)
    import threading
    examples = train_examples(tiny_data_dir)
    results, start = [], threading.Barrier(2)

    def run():
        start.wait()
        results.append(mlm.cached_encoder(str(tiny_bert_dir), examples, 0.1, 64, tmp_path / "cache"))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (one, first), (two, second) = results
    assert one == two and sorted([first["reused"], second["reused"]]) == [False, True]
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted([one.name, f".{one.name}.lock"])


def test_a_filesystem_without_locks_trains_unlocked(tmp_path, tiny_bert_dir, tiny_data_dir, monkeypatch, capsys):
    import errno
    def refused(*a):
        raise OSError(errno.ENOLCK, "No locks available")
    import run_folder
    monkeypatch.setattr(run_folder.fcntl, "flock", refused)
    examples = train_examples(tiny_data_dir)
    folder, info = mlm.cached_encoder(str(tiny_bert_dir), examples, 0.1, 64, tmp_path / "cache")
    assert info["reused"] is False and (folder / "model.safetensors").is_file()
    assert "No locks available); going on unlocked" in capsys.readouterr().err
