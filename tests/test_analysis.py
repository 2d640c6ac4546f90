"""analysis.py on synthetic dev scores: confusion matrix, reliability/ECE, Spearman with ties, the
most confident errors, markdown escaping, and the command line."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import analysis
from evaluation import save_dev_scores

ROOT = Path(__file__).resolve().parents[1]


def save_run(folder: Path, **tasks) -> Path:
    """A run folder with dev_scores.npz written by evaluation.save_dev_scores from stand-ins.
    Each task is (scores, labels, sent1 list[, sent2 list]); ids are `t0`, `t1`, ..."""
    folder.mkdir(parents=True, exist_ok=True)
    scores, dev, examples = {}, {}, {}
    for t, (s, labels, sent1, *rest) in tasks.items():
        sent2 = rest[0] if rest else [None] * len(sent1)
        scores[t] = np.asarray(s)
        dtype = torch.float32 if t == "sts" else torch.long
        dev[t] = SimpleNamespace(labels=torch.tensor(labels, dtype=dtype),
                                 ids=[f"{t}{i}" for i in range(len(labels))])
        examples[t] = [SimpleNamespace(sent1=a, sent2=b) for a, b in zip(sent1, sent2)]
    save_dev_scores(folder / "dev_scores.npz", scores, dev, examples)
    return folder


def sst_probs(pred: list[int], conf: list[float]) -> np.ndarray:
    """Class probabilities whose argmax is `pred` with probability `conf` (> 0.2), the rest equal."""
    p = np.repeat(((1 - np.asarray(conf)) / 4)[:, None], 5, axis=1)
    p[np.arange(len(pred)), pred] = conf
    return p


def cells(line: str) -> list[str]:
    """A markdown table row split into its cells as a GFM renderer does: `\\x` is an escaped
    character, an unescaped `|` separates cells. Escapes are removed from the cell text."""
    out, cur, i = [], "", 0
    while i < len(line):
        if line[i] == "\\" and i + 1 < len(line):
            cur, i = cur + line[i + 1], i + 2
        elif line[i] == "|":
            out, cur, i = out + [cur.strip()], "", i + 1
        else:
            cur, i = cur + line[i], i + 1
    return out[1:]  # the text before the leading `|` is empty


def table_after(md: str, heading: str) -> list[list[str]]:
    """The data rows of the first table after the line `heading`, each checked to have as many
    cells as the header."""
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    rows = []
    for line in lines[start + 1:]:
        if line.startswith("|"):
            rows.append(cells(line))
        elif rows:
            break
    header, body = rows[0], rows[2:] if rows[1][0].startswith("---") else rows[1:]
    assert all(len(r) == len(header) for r in body), f"ragged table after {heading!r}: {rows}"
    return body


# -- SST -----------------------------------------------------------------------------------------
GOLD = [0, 0, 0, 1, 1, 2, 3, 4, 4, 4]
PRED = [0, 1, 3, 1, 0, 2, 4, 4, 4, 0]


def test_confusion_matrix_recall_and_adjacent_share(tmp_path):
    run = save_run(tmp_path / "run", sst=(sst_probs(PRED, [0.6] * 10), GOLD, [f"s{i}" for i in range(10)]))
    s = analysis.analyse(analysis.read_scores(run))["sst"]
    expected = np.array([[1, 1, 0, 1, 0],   # counted by hand from GOLD/PRED
                         [1, 1, 0, 0, 0],
                         [0, 0, 1, 0, 0],
                         [0, 0, 0, 0, 1],
                         [1, 0, 0, 0, 2]])
    np.testing.assert_array_equal(s["confusion"], expected)
    np.testing.assert_array_equal(s["support"], [3, 2, 1, 1, 3])
    np.testing.assert_allclose(s["recall"], [1 / 3, 1 / 2, 1, 0, 2 / 3])
    assert s["accuracy"] == pytest.approx(0.5)
    # errors 0->1, 1->0, 3->4 are adjacent; 0->3 and 4->0 are off by >= 2
    assert (s["errors"], s["adjacent"], s["far"]) == (5, 3, 2)
    assert s["adjacent_share"] == pytest.approx(0.6) and s["far_share"] == pytest.approx(0.4)
    md, _ = analysis.write_analysis(run)
    rows = table_after(md.read_text(), "Confusion matrix")
    assert rows[0] == ["negative", "1", "1", "0", "1", "0", "3", "0.3333"]
    assert [r[0] for r in rows] == list(analysis.SST_CLASSES)
    assert "off by one class: 3 (60.0%)" in md.read_text()


def test_recall_of_a_class_without_examples_is_nan():
    s = analysis.sst_stats(sst_probs([0, 1], [0.9, 0.9]), np.array([0, 0]))
    assert np.isnan(s["recall"][1]) and s["recall"][0] == 0.5 and s["support"][1] == 0


# -- PARA: reliability and ECE ---------------------------------------------------------------------
def test_reliability_buckets_are_exact():
    p = np.array([0.55, 0.45, 0.75, 0.75, 0.75, 0.7, 1.0, 0.0, 0.02], dtype=np.float32)
    y = np.array([1, 1, 1, 1, 0, 1, 1, 0, 1])
    r = analysis.reliability(p, y)
    # [0.5,0.6): 0.55 right, 0.45 wrong (confidence 0.55). [0.7,0.8): three 0.75 (two right) and
    # 0.7 right, which float32 stores as 0.69999999 but belongs here. [0.9,1.0]: 1.0 and 0.0 right,
    # 0.02 wrong with confidence 0.98.
    np.testing.assert_array_equal(r["count"], [2, 0, 4, 0, 3])
    np.testing.assert_allclose(r["accuracy"], [0.5, np.nan, 0.75, np.nan, 2 / 3], equal_nan=True)
    np.testing.assert_allclose(r["mean_conf"], [0.55, np.nan, 0.7375, np.nan, 2.98 / 3], equal_nan=True)
    ece = (2 * 0.05 + 4 * 0.0125 + 3 * (2.98 / 3 - 2 / 3)) / 9
    assert r["ece"] == pytest.approx(ece)
    assert r["overall_accuracy"] == pytest.approx(6 / 9)


def test_ece_of_calibrated_and_miscalibrated_sets():
    # confidence 0.65 right 13 of 20 times, confidence 0.85 (p = 0.15, predicting 0) right 17 of 20
    p = np.array([0.65] * 20 + [0.15] * 20, dtype=np.float32)
    y = np.array([1] * 13 + [0] * 7 + [0] * 17 + [1] * 3)
    assert analysis.reliability(p, y)["ece"] == pytest.approx(0, abs=1e-6)
    # confidence 0.95 right half the time (gap 0.45), confidence 0.6 always right (gap 0.4)
    p = np.array([0.95] * 30 + [0.6] * 10, dtype=np.float32)
    y = np.array([1, 0] * 15 + [1] * 10)
    assert analysis.reliability(p, y)["ece"] == pytest.approx((30 * 0.45 + 10 * 0.4) / 40, abs=1e-6)


# -- STS: Spearman --------------------------------------------------------------------------------
def test_spearman_of_monotone_transforms():
    x = np.linspace(-2, 3, 17)
    assert analysis.spearman(x, np.exp(3 * x)) == pytest.approx(1)
    assert analysis.spearman(x, -x ** 3) == pytest.approx(-1)
    assert analysis.pearson(x, np.exp(3 * x)) < 0.9  # not linear: Pearson alone would not say 1


def test_ties_get_the_mean_rank():
    np.testing.assert_allclose(analysis.rankdata(np.array([10, 20, 20, 30, 20, 5])), [2, 4, 4, 6, 4, 1])
    # ranks x = [1, 2.5, 2.5, 4], y = [1, 2, 3, 4]: r = 4.5 / sqrt(4.5 * 5) = 3 / sqrt(10)
    rho = analysis.spearman(np.array([1, 2, 2, 3.]), np.array([1, 2, 3, 4.]))
    assert rho == pytest.approx(3 / np.sqrt(10))


def test_spearman_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    g = np.random.default_rng(0)
    x, y = g.integers(0, 6, 200).astype(float), g.integers(0, 4, 200) + g.random(200).round(1)
    assert analysis.spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)


def test_sts_stats():
    s = analysis.sts_stats(np.array([1, 2, 3.]), np.array([1, 3, 5.]))
    assert s["mae"] == pytest.approx(1)
    assert s["pearson"] == pytest.approx(1) and s["spearman"] == pytest.approx(1)


# -- most confident errors and escaping ------------------------------------------------------------
def test_most_confident_errors_in_order_and_escaped(tmp_path):
    # SST: 12 errors (gold 0, predicted 2) with these confidences, between right answers at 0.95
    err_conf = [0.31, 0.85, 0.47, 0.62, 0.78, 0.40, 0.55, 0.70, 0.36, 0.66, 0.81, 0.50]
    conf, pred, gold = [], [], []
    for c in err_conf:
        conf += [c, 0.95]
        pred += [2, 1]
        gold += [0, 1]
    sents = [f"sentence {i}" for i in range(len(gold))]
    sents[2] = "left | right\nsecond line \\ end"  # the 0.85 error: first row of the table
    # PARA: three errors (confidence 0.99, 0.97, 0.6) and a right answer at 0.999
    p = [0.6, 0.999, 0.99, 0.03]
    # STS: errors |pred - gold| = 0.1, 0.2, ..., 1.2 in a scrambled order
    diffs = np.array([0.5, 1.2, 0.1, 0.9, 0.3, 1.1, 0.7, 0.2, 1.0, 0.4, 0.8, 0.6])
    run = save_run(tmp_path / "run",
                   sst=(sst_probs(pred, conf), gold, sents),
                   para=(p, [0, 1, 0, 1], ["q a", "q b", "a|b", "c\r\nd"], ["r a", "r b", "x", "y"]),
                   sts=(2 + diffs, [2.0] * 12, [f"a{i}" for i in range(12)], [f"b{i}" for i in range(12)]))
    md = analysis.write_analysis(run)[0].read_text()

    sst = table_after(md, "### Most confident errors (probability")
    by_conf = sorted(range(12), key=lambda k: -err_conf[k])[:10]  # error k is example 2k
    assert [r[0] for r in sst] == [f"sst{2 * k}" for k in by_conf]
    assert [float(r[3]) for r in sst] == sorted(err_conf, reverse=True)[:10]
    assert sst[0][1:3] == ["negative", "neutral"]
    assert sst[0][4] == "left | right<br>second line \\ end"  # one cell, text intact

    para = table_after(md, "## PARA")  # the reliability table
    assert [r[1] for r in para] == ["0", "1", "0", "0", "3"]
    para = table_after(md.split("## PARA", 1)[1], "### Most confident errors")
    assert [(r[0], r[3]) for r in para] == [("para2", "0.9900"), ("para3", "0.9700"), ("para0", "0.6000")]
    assert para[0][4:] == ["a|b", "x"] and para[1][4:] == ["c<br>d", "y"]

    sts = table_after(md, "### Largest errors")
    assert [r[0] for r in sts] == [f"sts{i}" for i in np.argsort(-diffs)[:10]]
    assert [float(r[3]) for r in sts] == pytest.approx(np.arange(1.2, 0.25, -0.1))
    assert sts[0][4:] == ["a1", "b1"]


def test_md_cell_keeps_each_row_on_one_line():
    row = analysis.md_table(["a", "b"], [["x|y\nz", "p\\|q"]]).splitlines()[2]
    assert cells(row) == ["x|y<br>z", "p\\|q"]


# -- whole runs and the command line ---------------------------------------------------------------
def test_absent_tasks_are_skipped(tmp_path):
    run = save_run(tmp_path / "run", sts=([1.0, 2.5, 4.0], [1.0, 3.0, 3.5], ["a", "b", "c"], ["d", "e", "f"]))
    md, png = analysis.write_analysis(run)
    text = md.read_text()
    assert "## STS" in text and "## SST" not in text and "## PARA" not in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def cli(*argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "analysis.py"), *map(str, argv)], cwd=ROOT,
                          capture_output=True, check=False, text=True, timeout=120)


def test_cli_writes_both_files(tmp_path):
    g = np.random.default_rng(0)
    runs = [save_run(tmp_path / name,
                     sst=(g.dirichlet(np.ones(5), 40), g.integers(0, 5, 40), ["s"] * 40),
                     para=(g.random(40), g.integers(0, 2, 40), ["q1"] * 40, ["q2"] * 40),
                     sts=(5 * g.random(40), g.integers(0, 6, 40).astype(float), ["a"] * 40, ["b"] * 40))
            for name in ("run1", "run2")]
    res = cli(*runs)
    assert res.returncode == 0, res.stderr
    for run in runs:
        assert (run / "analysis.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (run / "analysis.md").read_text().startswith(f"# Error analysis: {run.name}")


def test_cli_refuses_a_folder_without_dev_scores(tmp_path):
    good = save_run(tmp_path / "good", sts=([1.0, 2.0], [1.0, 3.0], ["a", "b"], ["c", "d"]))
    (tmp_path / "empty").mkdir()
    res = cli(good, tmp_path / "empty")
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and "dev_scores.npz" in res.stderr
    assert not (good / "analysis.md").exists()  # checked before anything is written


def test_unreadable_scores_file_is_one_line_error(tmp_path):
    (tmp_path / "dev_scores.npz").write_text("not a zip")
    with pytest.raises(analysis.AnalysisError, match="dev_scores.npz"):
        analysis.read_scores(tmp_path)
