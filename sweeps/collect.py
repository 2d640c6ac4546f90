"""Collect the runs of a sweep folder into a markdown table.

    python sweeps/collect.py runs/ablation results/ablation.md
    python sweeps/collect.py runs/ensemble results/ensemble.md --ensemble runs/ensemble/ensemble.log
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's modules
from evaluation import parse_metrics  # noqa: E402


def flags(config: dict, full_runs: bool = False) -> str:
    """The flags that differ from the defaults: what the row changes. Shortened sweep rows turn
    WiSE-FT off and set their own length; `full_runs` compares with the main job as it is."""
    from multitask_classifier import parse_args
    defaults = vars(parse_args([]))
    skip = {"out_dir", "no_predictions", "update"} | (set() if full_runs else {"epochs", "steps_per_epoch"})
    if not full_runs:
        defaults["wise_alphas"] = []  # sweeps turn WiSE-FT off; a row that keeps it shows the flag
    out = []
    for k, v in config.items():
        if k in skip or k.endswith(("_out", "_train", "_dev", "_test")) or defaults.get(k) == v:
            continue
        if isinstance(v, bool):
            out.append(f"--{k}" if v else f"--no-{k}")
        else:
            out.append(f"--{k} {' '.join(map(str, v)) if isinstance(v, list) else v}")
    return " ".join(out) or "(defaults)"


def ensemble_metrics(log: Path) -> dict:
    """The metrics of the `ensemble dev: sst_acc X, ...` line that --eval_only prints."""
    line = next((l for l in log.read_text().splitlines() if l.startswith("ensemble dev: ")), None)
    if line is None:
        raise SystemExit(f"{log}: no 'ensemble dev:' line")
    return parse_metrics(line)


def row(name: str, what: str, b: dict, parameters: float, wall_s: float) -> str:
    return (f"| {name} | `{what}` | {b['sst_acc']:.3f} | {b['para_acc']:.3f} | {b['sts_r']:.3f} | "
            f"{b['overall']:.3f} | {parameters / 1e6:.2f}M | {wall_s / 60:.1f} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sweep_dir")
    ap.add_argument("out")
    ap.add_argument("--steps", default="?")
    ap.add_argument("--script", default="sweeps/ablation.sh", help="the command named in the caption")
    ap.add_argument("--ensemble", type=Path, help="log of the --eval_only ensemble of the sweep's runs: "
                                                 "full runs, and a last row for their ensemble")
    args = ap.parse_args()
    rows, single_task, members = [], False, []
    for run in sorted(Path(args.sweep_dir).iterdir(), key=lambda p: p.stat().st_mtime):
        if not (run / "summary.json").is_file():
            continue
        s = json.loads((run / "summary.json").read_text())
        c = json.loads((run / "config.json").read_text())
        single_task = single_task or len(c.get("tasks", [])) == 1
        rows.append(row(run.name, flags(c, full_runs=args.ensemble is not None), s["best"],
                        s["parameters"], s["wall_s"]))
        members.append((run.name, s))
    if args.ensemble:
        rows.append(row("ensemble", "--eval_only --checkpoint " + " ".join(n for n, _ in members),
                        ensemble_metrics(args.ensemble), sum(s["parameters"] for _, s in members),
                        sum(s["wall_s"] for _, s in members)))
        caption = ("Each member: a full run of the main job (the default configuration, WiSE-FT "
                   "tried; its seed in the flags column); the ensemble averages the members' scores "
                   "(SST class probabilities, PARA probability, STS score); its parameters and wall "
                   "time are the members' totals. ")
    else:
        caption = (f"Each run: the bundled MiniLM, one epoch of {args.steps} optimizer steps on the full "
                   "training data (batch 32), dev metrics, no WiSE-FT unless the row says so. "
                   + ("Single-task rows train one task and still report all three dev metrics (the other "
                      "heads untrained). " if single_task else ""))
    text = "\n".join([
        caption + f"Rebuilt by `bash {args.script}`.", "",
        "| run | flags | SST acc | PARA acc | STS r | overall | parameters | wall min |",
        "|---|---|---|---|---|---|---|---|", *rows]) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
