"""Collect the runs of a sweep folder into a markdown table.

    python sweeps/collect.py runs/ablation results/ablation.md
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

def flags(config: dict) -> str:
    """The flags that differ from the defaults: what the row changes."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from multitask_classifier import get_parser
    defaults = vars(get_parser().parse_args([]))
    skip = {"out_dir", "epochs", "steps_per_epoch", "no_predictions", "update"}
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sweep_dir")
    ap.add_argument("out")
    ap.add_argument("--steps", default="?")
    ap.add_argument("--script", default="sweeps/ablation.sh", help="the command named in the caption")
    args = ap.parse_args()
    rows, single_task = [], False
    for run in sorted(Path(args.sweep_dir).iterdir(), key=lambda p: p.stat().st_mtime):
        if not (run / "summary.json").is_file():
            continue
        s = json.loads((run / "summary.json").read_text())
        c = json.loads((run / "config.json").read_text())
        b = s["best"]
        single_task = single_task or len(c.get("tasks", [])) == 1
        rows.append(f"| {run.name} | `{flags(c)}` | {b['sst_acc']:.3f} | {b['para_acc']:.3f} | "
                    f"{b['sts_r']:.3f} | {b['overall']:.3f} | {s['parameters'] / 1e6:.2f}M | "
                    f"{s['wall_s'] / 60:.1f} |")
    text = "\n".join([
        f"Each run: the bundled MiniLM, one epoch of {args.steps} optimizer steps on the full "
        "training data (batch 32), dev metrics, no WiSE-FT unless the row says so. "
        + ("Single-task rows train one task and still report all three dev metrics (the other "
           "heads untrained). " if single_task else "")
        + f"Rebuilt by `bash {args.script}`.", "",
        "| run | flags | SST acc | PARA acc | STS r | overall | parameters | wall min |",
        "|---|---|---|---|---|---|---|---|", *rows]) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
