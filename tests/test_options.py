"""options.py: the command line, the settings that follow from others, and saved arguments."""
from __future__ import annotations

import json

import pytest

import options


def test_eval_batch_size_follows_the_device(tmp_path):
    assert options.parse_args([]).eval_batch_size == options.EVAL_BATCH_SIZE["cpu"] == 128
    assert options.parse_args(["--use_gpu"]).eval_batch_size == options.EVAL_BATCH_SIZE["cuda"] == 512
    assert options.parse_args(["--use_gpu", "--eval_batch_size", "64"]).eval_batch_size == 64  # given: kept
    # config.json records the value that ran: a replay keeps it on either device
    config = tmp_path / "config.json"
    config.write_text(json.dumps(vars(options.parse_args(["--use_gpu"]))))
    assert options.parse_args(["--config", str(config), "--no-use_gpu"]).eval_batch_size == 512


def test_the_starters_modes_set_what_trains_and_its_learning_rate():
    pretrain = options.parse_args(["--fine-tune-mode", "last-linear-layer"])
    assert pretrain.option == "pretrain" and pretrain.lr == 1e-3 and pretrain.head_lr == 0.0
    full = options.parse_args(["--fine-tune-mode", "full-model"])
    assert full.option == "finetune" and full.lr == 1e-4 and full.head_lr == 1e-3
    assert options.parse_args(["--option", "pretrain", "--lr", "5e-3"]).lr == 5e-3  # given: kept


def test_pcgrad_implies_global_updates():
    assert options.parse_args([]).update == "local"
    assert options.parse_args(["--pcgrad"]).update == "global"


def test_saved_args_are_the_run_s_arguments_resolved(tmp_path):
    saved = vars(options.parse_args(["--seed", "7", "--option", "pretrain", "--rdrop", "2"]))
    (tmp_path / "config.json").write_text(json.dumps(saved))
    again = options.saved_args(tmp_path, "config.json")
    assert vars(again) == saved


def test_a_bad_flag_exits_with_status_2(capsys):
    with pytest.raises(SystemExit) as e:
        options.parse_args(["--sampling", "nonsense"])
    assert e.value.code == 2 and "--sampling" in capsys.readouterr().err


def test_clashing_flags_exit_with_status_2_and_one_line(capsys):
    # caught by the parser, before data or weights are read (build_model used to find it)
    with pytest.raises(SystemExit) as e:
        options.parse_args(["--para_cosine", "--para_head", "concat"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and err[-1].endswith("--para_cosine needs --para_head cross (the bi-encoded "
                                                  "head already reads both sentences)")
    assert options.parse_args(["--para_cosine"]).para_cosine  # with the default cross-encoded head
    with pytest.raises(SystemExit) as e:
        options.parse_args(["--sts_cosent", "1", "--sts_head", "cross"])
    assert e.value.code == 2 and capsys.readouterr().err.strip().splitlines()[-1].endswith(
        "--sts_cosent ranks the cosines of the bi-encoded STS head: it needs --sts_head cosine")
    assert options.parse_args(["--sts_cosent", "1"]).sts_cosent == 1.0  # with the default cosine head
