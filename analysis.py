"""Error analysis of one run from its saved dev scores: no model, no new inference.

    python analysis.py RUN_DIR [RUN_DIR ...]    -> RUN_DIR/analysis.md and RUN_DIR/analysis.png

Reads RUN_DIR/dev_scores.npz (evaluation.save_dev_scores) and, for each task present:
SST: 5x5 confusion matrix, recall and support per class, errors off by one class vs off by two or more.
PARA: reliability diagram (accuracy per confidence bucket) and expected calibration error (ECE).
STS: Pearson r, Spearman rho, mean absolute error, scatter of predicted vs gold.
Each task: the ten most confident errors with their sentences.

Computing (pure functions returning dicts/arrays) is kept apart from rendering (markdown, PNG).
"""
from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path

import numpy as np

from evaluation import decide, load_dev_scores, pearson
from run_folder import write_folder_file

SST_CLASSES = ("negative", "somewhat negative", "neutral", "somewhat positive", "positive")
SST_SHORT = ("neg", "s.neg", "neu", "s.pos", "pos")  # axis labels of the heat map
# Confidence buckets of PARA: [0.5, 0.6), ..., [0.8, 0.9), [0.9, 1.0] (the last one closed).
BUCKET_EDGES = np.round(np.linspace(0.5, 1.0, 6), 10)
TOP_K = 10
SCORES_FILE = "dev_scores.npz"


# -- computing -----------------------------------------------------------------------------------
def confusion_matrix(gold: np.ndarray, pred: np.ndarray, k: int = len(SST_CLASSES)) -> np.ndarray:
    """Counts [k, k]: rows gold class, columns predicted class."""
    return np.bincount(gold.astype(np.int64) * k + pred.astype(np.int64), minlength=k * k).reshape(k, k)


def sst_stats(scores: np.ndarray, labels: np.ndarray) -> dict:
    """Confusion matrix, recall and support per class, and how far off the errors are. SST-5's
    classes are ordered, so an error into a neighbouring class (neutral read as somewhat positive)
    is a milder mistake than one across the scale; the split says which kind dominates."""
    pred = decide("sst", scores)
    cm = confusion_matrix(labels, pred)
    support = cm.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, np.diag(cm) / support, np.nan)
    distance = np.abs(pred - labels.astype(np.int64))
    errors = int((distance > 0).sum())
    adjacent = int((distance == 1).sum())
    return {"confusion": cm, "support": support, "recall": recall, "n": len(labels),
            "accuracy": float((distance == 0).mean()) if len(labels) else float("nan"),
            "errors": errors, "adjacent": adjacent, "far": errors - adjacent,
            "adjacent_share": adjacent / errors if errors else float("nan"),
            "far_share": (errors - adjacent) / errors if errors else float("nan")}


def para_confidence(p: np.ndarray) -> np.ndarray:
    """Probability of the predicted class. Rounded to 6 decimals because the scores are stored as
    float32: a probability of 0.7 reads back as 0.69999999 and would fall one bucket too low."""
    p = p.astype(np.float64)
    return np.round(np.maximum(p, 1 - p), 6)


def reliability(p: np.ndarray, labels: np.ndarray, edges: np.ndarray = BUCKET_EDGES) -> dict:
    """Reliability diagram of PARA: per confidence bucket the count, mean confidence and accuracy
    (NaN for an empty bucket), and the ECE: the count-weighted mean of |accuracy - confidence|."""
    conf = para_confidence(p)
    correct = decide("para", p) == labels.astype(np.int64)
    # Bucket b holds edges[b] <= conf < edges[b + 1]; the top bucket also takes conf == 1.
    bucket = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, len(edges) - 2)
    nb = len(edges) - 1
    count = np.bincount(bucket, minlength=nb)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(bucket, weights=conf, minlength=nb) / count
        accuracy = np.bincount(bucket, weights=correct, minlength=nb) / count
    gaps = np.where(count > 0, np.abs(accuracy - mean_conf), 0.0)
    n = len(p)
    return {"edges": edges, "count": count, "mean_conf": mean_conf, "accuracy": accuracy, "n": n,
            "overall_accuracy": float(correct.mean()) if n else float("nan"),
            "ece": float((count * gaps).sum() / n) if n else float("nan")}


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..N, tied values sharing the mean of the ranks they span (as scipy's 'average')."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    first = np.cumsum(counts) - counts  # ranks before each distinct value
    return (first + (counts + 1) / 2)[inverse]


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    return pearson(rankdata(x), rankdata(y))


def sts_stats(scores: np.ndarray, labels: np.ndarray) -> dict:
    pred, gold = scores.astype(np.float64), labels.astype(np.float64)
    return {"n": len(gold), "pearson": pearson(pred, gold), "spearman": spearman(pred, gold),
            "mae": float(np.abs(pred - gold).mean()) if len(gold) else float("nan")}


def top_errors(wrong: np.ndarray, severity: np.ndarray, k: int = TOP_K) -> np.ndarray:
    """Indices of the `k` wrong examples of highest severity, highest first (ties in file order)."""
    idx = np.flatnonzero(wrong)
    return idx[np.argsort(-severity[idx], kind="stable")][:k]


def error_severity(task: str, scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(wrong, severity) per example. SST: the probability given to the wrong predicted class;
    PARA: the confidence of the wrong decision; STS: every pair is off by |pred - gold|."""
    if task == "sst":
        pred = decide("sst", scores)
        return pred != labels, scores[np.arange(len(pred)), pred].astype(np.float64)
    if task == "para":
        return decide("para", scores) != labels, para_confidence(scores)
    diff = np.abs(scores.astype(np.float64) - labels.astype(np.float64))
    return diff > 0, diff


def analyse(data: dict) -> dict:
    """Everything the report shows, per task present in `data` (load_dev_scores' layout)."""
    stats = {"sst": sst_stats, "para": reliability, "sts": sts_stats}
    out = {}
    for task, d in data.items():
        wrong, severity = error_severity(task, d["scores"], d["labels"])
        out[task] = {**stats[task](d["scores"], d["labels"]), "top": top_errors(wrong, severity)}
    return out


# -- markdown ------------------------------------------------------------------------------------
def md_cell(x) -> str:
    """Text safe inside a markdown table cell: backslashes and pipes escaped (an unescaped `|`
    would split the cell), line breaks as <br> (a raw newline would end the row)."""
    s = str(x).replace("\\", "\\\\").replace("|", "\\|")
    return s.replace("\r\n", "<br>").replace("\r", "<br>").replace("\n", "<br>")


def md_table(header: list, rows: list[list]) -> str:
    lines = ["| " + " | ".join(md_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def errors_table(header: list, rows: list[list]) -> str:
    return md_table(header, rows) if rows else "No errors."


def num(x: float, digits: int = 4) -> str:
    return "n/a" if np.isnan(x) else f"{x:.{digits}f}"


def share(part: int, whole: int) -> str:
    return f"{part} ({100 * part / whole:.1f}%)" if whole else str(part)


def sst_markdown(s: dict, d: dict) -> str:
    cm = s["confusion"]
    rows = [[SST_CLASSES[g], *cm[g], s["support"][g], num(s["recall"][g])] for g in range(len(SST_CLASSES))]
    errors = [[d["ids"][i], SST_CLASSES[d["labels"][i]], SST_CLASSES[d["scores"][i].argmax()],
               num(float(d["scores"][i].max())), d["sent1"][i]] for i in s["top"]]
    return "\n\n".join([
        f"## SST ({s['n']} dev examples, accuracy {num(s['accuracy'])})",
        "Confusion matrix: rows gold, columns predicted; recall = per-class accuracy.",
        md_table(["gold / predicted", *SST_CLASSES, "support", "recall"], rows),
        (f"Errors: {s['errors']}; off by one class: {share(s['adjacent'], s['errors'])}; "
         f"off by two or more: {share(s['far'], s['errors'])}."),
        "### Most confident errors (probability of the wrong predicted class)",
        errors_table(["id", "gold", "predicted", "confidence", "sentence"], errors)])


def bucket_name(edges: np.ndarray, b: int) -> str:
    return f"[{edges[b]:.1f}, {edges[b + 1]:.1f}{']' if b == len(edges) - 2 else ')'}"


def para_markdown(s: dict, d: dict) -> str:
    rows = [[bucket_name(s["edges"], b), s["count"][b], num(s["mean_conf"][b]), num(s["accuracy"][b])]
            for b in range(len(s["count"]))]
    conf = para_confidence(d["scores"])
    errors = [[d["ids"][i], d["labels"][i], 1 - d["labels"][i], num(conf[i]), d["sent1"][i], d["sent2"][i]]
              for i in s["top"]]
    return "\n\n".join([
        f"## PARA ({s['n']} dev pairs, accuracy {num(s['overall_accuracy'])}, ECE {num(s['ece'])})",
        ("Reliability: confidence = probability of the predicted class. A calibrated model's accuracy "
         "in each bucket equals its mean confidence; ECE is the count-weighted mean gap."),
        md_table(["confidence", "count", "mean confidence", "accuracy"], rows),
        "### Most confident errors",
        errors_table(["id", "gold", "predicted", "confidence", "question 1", "question 2"], errors)])


def sts_markdown(s: dict, d: dict) -> str:
    errors = [[d["ids"][i], num(float(d["labels"][i]), 2), num(float(d["scores"][i]), 2),
               num(abs(float(d["scores"][i]) - float(d["labels"][i])), 2), d["sent1"][i], d["sent2"][i]]
              for i in s["top"]]
    return "\n\n".join([
        f"## STS ({s['n']} dev pairs)",
        md_table(["Pearson r", "Spearman rho", "mean absolute error"],
                 [[num(s["pearson"]), num(s["spearman"]), num(s["mae"])]]),
        "### Largest errors |predicted - gold|",
        errors_table(["id", "gold", "predicted", "abs error", "sentence 1", "sentence 2"], errors)])


def render_markdown(title: str, stats: dict, data: dict) -> str:
    render = {"sst": sst_markdown, "para": para_markdown, "sts": sts_markdown}
    parts = [f"# Error analysis: {title}"]
    parts += [render[t](stats[t], data[t]) for t in stats] or ["No task in the dev scores."]
    return "\n\n".join(parts) + "\n"


# -- figure --------------------------------------------------------------------------------------
def plot_sst(ax, s: dict):
    cm = s["confusion"]
    im = ax.imshow(cm, cmap="Blues")
    for g in range(cm.shape[0]):
        for p in range(cm.shape[1]):  # dark text on light cells, light text on dark ones
            ax.text(p, g, cm[g, p], ha="center", va="center",
                    color="white" if cm[g, p] > cm.max() / 2 else "black")
    ticks = range(len(SST_SHORT))
    ax.set(xticks=ticks, yticks=ticks, xticklabels=SST_SHORT, yticklabels=SST_SHORT,
           xlabel="predicted", ylabel="gold", title=f"SST confusion (acc {num(s['accuracy'], 3)})")
    ax.figure.colorbar(im, ax=ax, fraction=0.046)


def plot_para(ax, s: dict):
    seen = s["count"] > 0
    sizes = 400 * s["count"][seen] / max(s["count"].max(), 1)  # marker area by bucket count
    ax.plot([0.5, 1], [0.5, 1], "k--", lw=1, label="calibrated")
    ax.plot(s["mean_conf"][seen], s["accuracy"][seen], "-", color="C1")
    ax.scatter(s["mean_conf"][seen], s["accuracy"][seen], s=sizes, color="C1", zorder=3,
               label="buckets (area = count)")
    ax.set(xlim=(0.48, 1.02), ylim=(0, 1.02), xlabel="confidence", ylabel="accuracy",
           title=f"PARA reliability (ECE {num(s['ece'], 3)})")
    ax.legend(loc="lower right", markerscale=0.4)


def plot_sts(ax, s: dict, d: dict):
    ax.scatter(d["labels"], d["scores"], s=6, alpha=0.4)
    ax.plot([0, 5], [0, 5], "k--", lw=1)
    ax.set(xlabel="gold", ylabel="predicted",
           title=f"STS (r {num(s['pearson'], 3)}, \u03c1 {num(s['spearman'], 3)})")


def render_png(path: Path, stats: dict, data: dict):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, max(len(stats), 1), figsize=(5 * max(len(stats), 1), 4.5), squeeze=False)
    axes = list(axes[0])
    plots = {"sst": lambda ax: plot_sst(ax, stats["sst"]), "para": lambda ax: plot_para(ax, stats["para"]),
             "sts": lambda ax: plot_sts(ax, stats["sts"], data["sts"])}
    for task, ax in zip(stats, axes):
        plots[task](ax)
    if not stats:
        axes[0].text(0.5, 0.5, "no task in the dev scores", ha="center", va="center")
        axes[0].set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


# -- entry points --------------------------------------------------------------------------------
class AnalysisError(Exception):
    """One-line message naming the file that cannot be analysed."""


def scores_file(run_dir) -> Path:
    """RUN_DIR/dev_scores.npz; AnalysisError if the run has none."""
    path = Path(run_dir) / SCORES_FILE
    if not path.is_file():
        raise AnalysisError(f"{path}: not found (written by a training run that saves its dev scores)")
    return path


def read_scores(run_dir) -> dict:
    path = scores_file(run_dir)
    try:
        return load_dev_scores(path)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise AnalysisError(f"{path}: not a readable dev scores file ({type(e).__name__}: {e})") from None


def write_analysis(run_dir) -> tuple[Path, Path]:
    """Write RUN_DIR/analysis.md and RUN_DIR/analysis.png from RUN_DIR/dev_scores.npz."""
    run_dir = Path(run_dir)
    data = read_scores(run_dir)
    stats = analyse(data)
    md_path, png_path = run_dir / "analysis.md", run_dir / "analysis.png"
    write_folder_file(md_path, render_markdown(run_dir.name or str(run_dir), stats, data))
    render_png(png_path, stats, data)
    return md_path, png_path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help=f"run folder holding {SCORES_FILE}")
    args = parser.parse_args(argv)
    try:
        for d in args.run_dirs:  # check every folder first: a typo in the last one leaves nothing half done
            scores_file(d)
        for d in args.run_dirs:
            md_path, png_path = write_analysis(d)
            print(f"wrote {md_path} and {png_path}")
    except AnalysisError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
