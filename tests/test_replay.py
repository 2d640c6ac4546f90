"""replay.py: --config RUN_DIR/config.json starts a new run with a saved run's configuration,
flags on the command line override it, and the file is validated by the same parser."""
from __future__ import annotations

import json

import pytest

import multitask_classifier as mc
from base_bert import CheckpointError


def _saved(tmp_path, *argv) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(vars(mc.parse_args(["--out_dir", "runs/old", *argv]))))
    return str(path)


def test_config_replays_every_setting_and_the_command_line_overrides(tmp_path):
    path = _saved(tmp_path, "--lr", "3e-4", "--fgsm", "--seed", "5", "--wise_alphas", "0.5", "0.7",
                  "--no-freeze_embeddings", "--option", "finetune")
    old = json.loads(open(path).read())
    new = vars(mc.parse_args(["--config", path, "--seed", "6"]))
    assert new["seed"] == 6 and new["config"] == path
    assert new["out_dir"] == ""  # where a run writes is never replayed: a new run gets a new folder
    same = {k for k in old if k not in ("seed", "out_dir", "config")}
    assert {k: new[k] for k in same} == {k: old[k] for k in same}
    off = mc.parse_args(["--config", path, "--no-fgsm", "--freeze_embeddings"])
    assert off.fgsm is False and off.freeze_embeddings is True and off.lr == 3e-4


def test_replay_of_pretrain_keeps_its_resolved_learning_rates(tmp_path):
    path = _saved(tmp_path, "--fine-tune-mode", "last-linear-layer")
    args = mc.parse_args(["--config", path])
    assert args.option == "pretrain" and args.lr == 1e-3 and args.head_lr == 0.0


def test_a_configuration_from_before_a_default_changed_replays_as_its_run_trained(tmp_path):
    # --rdrop was added with default 0 and is 3 now: a run saved before the flag existed has no
    # "rdrop" key and trained without R-Drop, so its replay must too; a saved value is kept
    assert mc.parse_args([]).rdrop == 3
    config = vars(mc.parse_args(["--out_dir", "runs/old"]))
    del config["rdrop"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    assert mc.parse_args(["--config", str(path)]).rdrop == 0
    assert mc.parse_args(["--config", str(path), "--rdrop", "2"]).rdrop == 2
    assert mc.parse_args(["--config", _saved(tmp_path)]).rdrop == 3
    # the same for the speed flags that draw other dropout masks than the runs before them
    for flag in ("fast_dropout", "attention_groups"):
        assert getattr(mc.parse_args([]), flag)
        del config[flag]
    path.write_text(json.dumps(config))
    old = mc.parse_args(["--config", str(path)])
    assert not old.fast_dropout and not old.attention_groups and old.rdrop == 0
    # the in-domain MLM stage is off by default, as it was before the flag: nothing to map
    assert mc.parse_args([]).mlm_epochs == 0


@pytest.mark.parametrize("content, why", [
    ('{"sampling": "bogus"}', "invalid choice: 'bogus'"),
    ('{"not_a_flag": 1}', "unknown setting 'not_a_flag'"),
    ("[1, 2]", "expected a JSON object"),
    ("{", "not a readable JSON file"),
])
def test_a_bad_configuration_is_refused_naming_the_file(tmp_path, content, why):
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(CheckpointError, match=why) as e:
        mc.parse_args(["--config", str(path)])
    assert str(path) in str(e.value)


def test_config_through_the_command_line(run_argv, tmp_path, capsys):
    """A tiny run, then a second one from its config.json with one flag changed."""
    assert mc.main(run_argv("a", "--epochs", "1", "--steps_per_epoch", "3", "--lr", "2e-4",
                            "--no_predictions")) == 0
    first = tmp_path / "a" / "run"
    second = tmp_path / "b"
    assert mc.main(["--config", str(first / "config.json"), "--seed", "3", "--out_dir", str(second)]) == 0
    a, b = (json.loads((d / "config.json").read_text()) for d in (first, second))
    assert b["seed"] == 3 and b["lr"] == 2e-4 and b["steps_per_epoch"] == 3
    assert {k: v for k, v in a.items() if k not in ("seed", "out_dir", "config")} == \
        {k: v for k, v in b.items() if k not in ("seed", "out_dir", "config")}
    assert (second / "dev_scores.npz").is_file()
    capsys.readouterr()
    assert mc.main(["--config", str(tmp_path / "missing.json")]) == 2
    assert "missing.json: file not found" in capsys.readouterr().err


def test_trained_settings_reads_an_off_extensions_settings_at_the_defaults():
    from replay import USED_ONLY_WITH, trained_settings
    defaults = vars(mc.parse_args([]))
    assert all(k in defaults and v in defaults for k, v in USED_ONLY_WITH.items())  # no stale names
    off = vars(mc.parse_args(["--smart_eps", "1e-5", "--fgsm_eps", "0.5", "--rdrop", "0",
                              "--rdrop_tasks", "sst", "para", "--lr", "3e-4",
                              "--distill_wt", "0.3"]))
    read = trained_settings(off, defaults)
    assert {k: read[k] for k in ("smart_eps", "fgsm_eps", "rdrop_tasks", "distill_wt")} == \
        {k: defaults[k] for k in ("smart_eps", "fgsm_eps", "rdrop_tasks", "distill_wt")}
    assert read["lr"] == 3e-4 and read["rdrop"] == 0  # the rest as saved
    on = vars(mc.parse_args(["--smart", "--smart_eps", "1e-5", "--rdrop_tasks", "sst", "para",
                             "--distill", "teacher.npz", "--distill_wt", "0.3"]))
    assert trained_settings(on, defaults) == on  # extensions on: every setting counts


def test_a_configuration_saved_before_its_extension_changed_is_named_in_a_note(tmp_path, capsys):
    from replay import changed_training
    config = vars(mc.parse_args(["--out_dir", "runs/old", "--smart", "--smart_eps", "1e-5"]))
    del config["smart_tasks"]  # saved before SMART's perturbed passes replayed the dropout masks
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    assert mc.main(["--config", str(path), "--eval_only"]) == 2  # the note, then a refusal: nothing trains
    err = capsys.readouterr().err
    assert f"note: {path}: --smart: saved before a change: its perturbed passes now replay" in err
    assert "--eval_only needs --checkpoint" in err
    # nothing to say with the extension off in the new run, or for a configuration saved since
    assert changed_training(config, {**config, "smart": False}) == []
    now = vars(mc.parse_args(["--smart", "--fgsm"]))
    assert changed_training(now, now) == []
    # an old run without either, replayed with FGSM turned on: its saved FGSM settings are old ones
    plain = {k: v for k, v in vars(mc.parse_args([])).items() if k != "smart_tasks"}
    assert changed_training(plain, plain) == []
    assert [line.split(":")[0] for line in changed_training(plain, {**plain, "fgsm": True})] == ["--fgsm"]
    assert changed_training(plain, {**plain, "fgsm": True, "smart": True})[0].startswith("--fgsm and --smart:")
