"""sweeps/collect.py: a sweep folder's runs become one markdown row per configuration, naming the
flags that differ from the defaults, with mean ± sd over seeds and Δ overall against the
reference row with its bootstrap CI (compare.py); ensemble sweeps add their ensemble's row."""
from __future__ import annotations

import json
import re
import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sweeps"))
import collect  # noqa: E402
from test_compare import make_run  # noqa: E402

import multitask_classifier as mc  # noqa: E402


def _finished(folder: Path, metrics=None, wall_s=90.0, parameters=23_453_576):
    (folder / "summary.json").write_text(json.dumps(
        {"best": metrics or {}, "wall_s": wall_s, "parameters": parameters}))
    return folder


def _sweep_run(sweep: Path, name: str, argv=(), **kw) -> Path:
    """A finished sweep run; folders get increasing mtimes so the table keeps their order."""
    folder = _finished(make_run(sweep / name, argv, **kw))
    t = time.time() + len(list(sweep.iterdir()))
    os.utime(folder, (t, t))
    return folder


def test_ablation_rows_group_seeds_and_give_delta_with_ci(tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    base = ["--epochs", "1", "--steps_per_epoch", "5", "--no_predictions"]
    _sweep_run(sweep, "fgsm-s1", [*base, "--fgsm", "--seed", "1"], sst_wrong=40)
    _sweep_run(sweep, "fgsm-s2", [*base, "--fgsm", "--seed", "2"], sst_wrong=40)
    _sweep_run(sweep, "default-s1", [*base, "--seed", "1"])
    _sweep_run(sweep, "default-s2", [*base, "--seed", "2"], sst_wrong=2)
    (sweep / "unfinished-s1").mkdir()  # no summary.json: not a row
    out, plot = tmp_path / "table.md", tmp_path / "table.png"
    collect.main([str(sweep), str(out), "--steps", "5", "--script", "sweeps/x.sh",
                  "--reference", "default", "--plot", str(plot), "--resamples", "5000"])
    text = out.read_text()
    rows = [l for l in text.splitlines() if l.startswith("| ") and not l.startswith("| run")]
    assert [r.split(" | ")[0] for r in rows] == ["| default", "| fgsm *"]  # the reference first
    assert "| `(defaults)` | 2 |" in rows[0] and "| reference |" in rows[0]
    assert "| `--fgsm` | 2 |" in rows[1]
    # fgsm's seeds both miss 40 of 200 SST examples: Δ SST = (0.8 - 0.995) / 1, overall a third
    d, lo, hi = collect.compare.compare([sweep / "default-s1", sweep / "default-s2",
                                         sweep / "fgsm-s1", sweep / "fgsm-s2"], 5000)[1]["delta"]["overall"]
    assert d == pytest.approx((0.8 - 0.995) / 3) and lo < d < hi < 0
    assert f"fgsm: Δ overall {d:+.4f} 95% CI [{lo:.4f}, {hi:.4f}]" in text
    assert "5 optimizer steps" in text and "`bash sweeps/x.sh`" in text
    assert "1 of the 1 95% CIs of Δ here exclude 0; were no change real, about 0.05 would" in text
    assert re.search(r"to resolve ±0\.0030: fgsm ±0\.\d{4} at 2 seeds, about \d+\. From the noise", text)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _three_rows(tmp_path: Path, both_wrong: int) -> Path:
    """A sweep of rows default (40 SST errors), new (--fgsm, 10) and both (--fgsm --mnrl), two seeds each."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    for seed in (1, 2):
        _sweep_run(sweep, f"default-s{seed}", ["--seed", seed], sst_wrong=40)
        _sweep_run(sweep, f"new-s{seed}", ["--seed", seed, "--fgsm"], sst_wrong=10)
        _sweep_run(sweep, f"both-s{seed}", ["--seed", seed, "--fgsm", "--mnrl"], sst_wrong=both_wrong)
    return sweep


def test_versus_rows_are_compared_with_their_own_base(tmp_path):
    # a row measured on a later default (new) gets its Δ against that row, not the table's reference
    sweep = _three_rows(tmp_path, both_wrong=10)
    out = tmp_path / "t.md"
    collect.main([str(sweep), str(out), "--resamples", "5000", "--versus", "both=new", "absent=new"])
    text = out.read_text()
    both = next(l for l in text.splitlines() if l.startswith("| both"))
    assert "| +0.0000 [0.0000, 0.0000] vs new |" in both and "| both * |" not in both
    assert "both: Δ overall +0.0000 95% CI [0.0000, 0.0000] against new" in text
    new = next(l for l in text.splitlines() if l.startswith("| new"))
    assert new.startswith("| new * |") and " vs " not in new  # against default: 30 fewer SST errors
    assert "A Δ marked 'vs X' is against row X instead" in text
    with pytest.raises(SystemExit, match="no finished run of the reference row 'gone'"):
        collect.main([str(sweep), str(out), "--versus", "both=gone"])


def test_a_row_training_like_its_reference_at_some_of_its_seeds_is_compared_at_those_seeds(tmp_path):
    # new has a third, worse seed; new-one (PARA from one pair order: new's training) ran only its
    # first two, scoring like new there; both (--mnrl on top: another training) is unpaired
    sweep = _three_rows(tmp_path, both_wrong=10)
    _sweep_run(sweep, "new-s3", ["--seed", 3, "--fgsm"], sst_wrong=70)
    for seed in (1, 2):
        _sweep_run(sweep, f"new-one-s{seed}", ["--seed", seed, "--fgsm", "--pair_orders", "one"], sst_wrong=10)
    out = tmp_path / "t.md"
    collect.main([str(sweep), str(out), "--resamples", "5000", "--versus", "both=new", "new-one=new"])
    text = out.read_text()
    row = next(l for l in text.splitlines() if l.startswith("| new-one"))
    assert "| +0.0000 [" in row and "] vs new at seeds 1, 2 |" in row
    assert "new-one: Δ overall +0.0000 95% CI [" in text and "] against new at seeds 1, 2\n" in text
    assert "A Δ 'at seeds S' is against the reference's runs at those seeds alone" in text
    both = next(l for l in text.splitlines() if l.startswith("| both"))
    assert "at seeds" not in both and "| +0.0333 [" in both  # SST: 10 errors against new's mean of 30
    # How many seeds: both's count is against new's three seeds, not the table reference's two
    b = next(r for r in collect.against(collect.finished(sweep), "new", 5000) if r["name"] == "both")
    power = collect.compare.power
    seeds = power.seeds_needed(power.per_seed_variance(b["boot_se"], b["seed_sd"], 2, 3), 0.003)
    assert b["n_ref"] == 3 and re.search(rf"; both ±0\.\d{{4}} at 2 seeds, about {seeds}[;.]", text)


def test_only_tabulates_the_named_rows(tmp_path):
    # a machine holding only some rows' runs rebuilds the table of those rows, and no other
    sweep = _three_rows(tmp_path, both_wrong=20)
    out = tmp_path / "t.md"
    collect.main([str(sweep), str(out), "--resamples", "5000", "--reference", "new", "--only", "new", "both"])
    rows = [l for l in out.read_text().splitlines() if l.startswith("| ") and not l.startswith("| run")]
    assert [r.split(" | ")[0] for r in rows] == ["| new", "| both *"]  # 10 more SST errors of 200: a loss
    assert "| reference |" in rows[0] and "| default" not in out.read_text()
    with pytest.raises(SystemExit, match="no finished run of the reference row 'default'"):
        collect.main([str(sweep), str(out), "--only", "new", "both"])


def test_a_table_is_not_rebuilt_thinner_on_a_machine_without_some_of_its_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("REPLACE", raising=False)
    sweep = _three_rows(tmp_path, both_wrong=20)
    out = tmp_path / "t.md"
    argv = [str(sweep), str(out), "--resamples", "5000", "--reference", "new"]
    collect.main(argv)
    full = out.read_text()
    assert collect.table_rows(full) == {"default": 2, "new": 2, "both": 2}
    # another machine: both's runs gone, one of default's too; the table is kept as it was
    for gone in ("both-s1", "both-s2", "default-s2"):
        (sweep / gone / "summary.json").unlink()
    collect.main(argv)
    assert out.read_text() == full
    err = capsys.readouterr().err
    assert f"{out}: kept as it was" in err and "default (2 seeds, 1 here), both (2 seeds, 0 here)" in err
    # more runs than the table had, or --replace / REPLACE=1: written
    collect.main([*argv, "--only", "new", "default", "--replace"])
    assert collect.table_rows(out.read_text()) == {"new": 2, "default": 1}
    monkeypatch.setenv("REPLACE", "1")
    collect.main([*argv, "--only", "new"])
    assert collect.table_rows(out.read_text()) == {"new": 2}
    monkeypatch.delenv("REPLACE")
    _sweep_run(sweep, "default-s3", ["--seed", 3], sst_wrong=40)
    collect.main([*argv, "--only", "new", "default"])  # nothing lost against the table at OUT
    assert collect.table_rows(out.read_text()) == {"new": 2, "default": 2}


def test_missing_reference_is_refused(tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    _sweep_run(sweep, "fgsm-s1", ["--fgsm"])
    with pytest.raises(SystemExit, match="no finished run of the reference row 'default'"):
        collect.main([str(sweep), str(tmp_path / "t.md")])


def test_flags_name_what_the_row_changes():
    cfg = lambda *a: vars(mc.parse_args(["--epochs", "1", "--steps_per_epoch", "9", "--seed", "3", *a]))
    assert collect.flags(cfg()) == "(defaults)"  # length and seed are the sweep's own settings
    assert collect.flags(cfg("--lr", "3e-4", "--no-freeze_embeddings", "--pcgrad")) == \
        "--no-freeze_embeddings --lr 0.0003 --pcgrad"  # not the --update global it implies
    assert collect.flags(cfg("--update", "global")) == "--update global"  # a row of its own
    assert collect.flags(cfg("--option", "pretrain")) == "--option pretrain"  # not its implied lr
    assert collect.flags(cfg(), full_runs=True) == "--epochs 1.0 --steps_per_epoch 9 --seed 3"
    # full-length rows pooled over seeds (quality.sh): a longer run shows its length, not its seed
    assert collect.flags(cfg(), full_runs=True, seed_rows=True) == "--epochs 1.0 --steps_per_epoch 9"
    full = vars(mc.parse_args(["--seed", "3"]))
    assert collect.flags(full, full_runs=True, seed_rows=True) == "(defaults)"
    # a setting of an extension that is off was never read: not a flag of the row (--smart_eps was 1e-5)
    assert collect.flags(cfg("--smart_eps", "1e-5")) == "(defaults)"
    assert collect.flags(cfg("--smart", "--smart_eps", "1e-5")) == "--smart --smart_eps 1e-05"


def test_collect_ensemble_adds_a_row_from_the_eval_log(tmp_path):
    sweep = tmp_path / "ensemble"
    for seed, sst in ((1, 0.5), (2, 0.4)):
        folder = sweep / f"seed-{seed}"
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps(vars(mc.parse_args(["--seed", str(seed)]))))
        _finished(folder, {"sst_acc": sst, "para_acc": 0.8, "sts_r": 0.9, "overall": 0.7333})
    log = sweep / "ensemble.log"
    log.write_text("runs/x: sst_acc 0.1, para_acc 0.1, sts_r 0.1, overall 0.1\n"
                   "ensemble dev: sst_acc 0.5123, para_acc 0.8456, sts_r 0.8789, overall 0.7658\n")
    out = tmp_path / "table.md"
    collect.main([str(sweep), str(out), "--ensemble", str(log)])
    rows = [l for l in out.read_text().splitlines() if l.startswith("| ") and not l.startswith("| run")]
    assert rows[0].startswith("| seed-1 | `--seed 1` |")
    assert rows[2] == ("| ensemble | `--eval_only --checkpoint seed-1 seed-2` | 0.512 | 0.846 | 0.879 | "
                       "0.766 | 46.91M | 3.0 |")
