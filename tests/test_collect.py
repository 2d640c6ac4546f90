"""sweeps/collect.py: a sweep folder's runs become one markdown row each, naming the flags that
differ from the defaults."""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sweeps"))
import collect  # noqa: E402

import multitask_classifier as mc  # noqa: E402


def _run(folder: Path, argv: list[str], metrics: dict):
    folder.mkdir(parents=True)
    config = vars(mc.parse_args(argv))
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "summary.json").write_text(json.dumps(
        {"best": metrics, "wall_s": 90.0, "parameters": 23_453_576}))


def test_collect_rows_and_flags(tmp_path, monkeypatch):
    sweep = tmp_path / "sweep"
    m = {"sst_acc": 0.5, "para_acc": 0.8, "sts_r": 0.9, "overall": 0.7333}
    _run(sweep / "plain", ["--wise_alphas", "--epochs", "1"], m)
    _run(sweep / "wise", [], m)
    _run(sweep / "tweaked", ["--wise_alphas", "--lr", "3e-4", "--no-freeze_embeddings", "--pcgrad"], m)
    (sweep / "unfinished").mkdir()  # no summary.json: not a row
    out = tmp_path / "table.md"
    monkeypatch.setattr(sys, "argv", ["collect.py", str(sweep), str(out), "--steps", "50",
                                      "--script", "sweeps/x.sh"])
    collect.main()
    text = out.read_text()
    rows = [l for l in text.splitlines() if l.startswith("| ") and not l.startswith("| run")]
    assert [r.split(" | ")[0] for r in rows] == ["| plain", "| wise", "| tweaked"]
    assert "`(defaults)`" in rows[0]  # epochs and a switched-off WiSE-FT are the sweep's own settings
    assert "`--wise_alphas 0.5 0.7 0.85`" in rows[1]
    assert "`--no-freeze_embeddings --lr 0.0003 --pcgrad`" in rows[2]
    assert "| 0.500 | 0.800 | 0.900 | 0.733 | 23.45M | 1.5 |" in rows[2]
    assert "50 optimizer steps" in text and "`bash sweeps/x.sh`" in text


def test_collect_ensemble_adds_a_row_from_the_eval_log(tmp_path, monkeypatch):
    sweep = tmp_path / "ensemble"
    _run(sweep / "seed-1", ["--seed", "1"], {"sst_acc": 0.5, "para_acc": 0.8, "sts_r": 0.9, "overall": 0.7333})
    _run(sweep / "seed-2", ["--seed", "2"], {"sst_acc": 0.4, "para_acc": 0.8, "sts_r": 0.9, "overall": 0.7})
    log = sweep / "ensemble.log"
    log.write_text("runs/x: sst_acc 0.1, para_acc 0.1, sts_r 0.1, overall 0.1\n"
                   "ensemble dev: sst_acc 0.5123, para_acc 0.8456, sts_r 0.8789, overall 0.7658\n")
    out = tmp_path / "table.md"
    monkeypatch.setattr(sys, "argv", ["collect.py", str(sweep), str(out), "--ensemble", str(log)])
    collect.main()
    rows = [l for l in out.read_text().splitlines() if l.startswith("| ") and not l.startswith("| run")]
    assert rows[0].startswith("| seed-1 | `--seed 1` |")  # full runs: WiSE-FT at its default is not a flag
    assert rows[2] == ("| ensemble | `--eval_only --checkpoint seed-1 seed-2` | 0.512 | 0.846 | 0.879 | "
                       "0.766 | 46.91M | 3.0 |")
