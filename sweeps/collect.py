"""Collect the runs of a sweep folder into a markdown table.

    python sweeps/collect.py runs/ablation results/ablation.md --reference default --plot results/ablation.png
    python sweeps/collect.py runs/ensemble results/ensemble.md --ensemble runs/ensemble/ensemble.log

Sweep rows (runs named NAME-sSEED, one configuration at several seeds) become one line per
configuration: mean ± sd over seeds, and Δ overall against the reference configuration with a
95% CI over the dev examples and the seeds (compare.py). Ensemble sweeps list their members
and the ensemble's metrics from its log.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's modules
import compare  # noqa: E402
from replay import trained_settings  # noqa: E402
from evaluation import parse_metrics  # noqa: E402

# Settings of a sweep itself rather than of the row: never shown as the row's flags.
SWEEP_KEYS = {"out_dir", "no_predictions", "seed", "resume", "overwrite", "config", "threads", "checkpoint"}


def flags(config: dict, full_runs: bool = False, seed_rows: bool = False) -> str:
    """The flags that differ from the defaults: what the row changes. Shortened sweep rows set
    their own length; `full_runs` compares with the main job as it is, length included.
    `seed_rows`: a row pools its runs over seeds, so a seed is never the row's flag."""
    defaults = compare.parser_defaults()  # parsed once per process
    skip = SWEEP_KEYS - ({"seed"} if full_runs and not seed_rows else set())
    if not full_runs:
        skip |= {"epochs", "steps_per_epoch"}
    if config.get("option") == "pretrain":  # --option pretrain sets these itself
        skip |= {"lr", "head_lr"}
    if config.get("pcgrad"):  # --pcgrad implies --update global
        skip |= {"update"}
    out = []
    for k, v in trained_settings(config, defaults).items():
        if k in skip or k.endswith(("_out", "_train", "_dev", "_test")) or defaults.get(k) == v:
            continue
        if isinstance(v, bool):
            out.append(f"--{k}" if v else f"--no-{k}")
        else:
            out.append(f"--{k} {' '.join(map(str, v)) if isinstance(v, list) else v}")
    return " ".join(out) or "(defaults)"


def finished(sweep_dir: Path) -> list[Path]:
    """The sweep's finished runs (summary.json written), in the order they ran."""
    runs = [p for p in Path(sweep_dir).iterdir() if (p / "summary.json").is_file()]
    return sorted(runs, key=lambda p: p.stat().st_mtime)


# -- ablation: configurations at several seeds, Δ against a reference ---------------------------
def row_name(name: str) -> str:
    """A sweep row's name: its run's or group's name without the seed (NAME-sSEED)."""
    return compare.SEED_SUFFIX.sub("", name)


def against(runs: list[Path], reference: str, resamples: int) -> list[dict]:
    """compare.compare of every run, with the row named `reference` first: the rows' Δ against it."""
    ref = [r for r in runs if row_name(r.name) == reference]
    if not ref:
        raise SystemExit(f"no finished run of the reference row {reference!r}")
    return compare.compare(ref + [r for r in runs if r not in ref], resamples=resamples, seed=0)


def ablation_table(sweep_dir: Path, reference: str, steps, script: str, plot: Path | None,
                   resamples: int = 10_000, versus: dict | None = None, only=None, note: str = "") -> str:
    """`versus` {row: other reference}: rows measured on another base (a later default) get their Δ
    against that row instead, from the same bootstrap replicates and pooled seed noise. `only`:
    the rows to tabulate (all of the folder's when None); the others' runs are not read. `note`:
    a sentence for the caption, after the runs' description."""
    runs, versus = finished(sweep_dir), versus or {}
    if only is not None:
        keep = set(only)
        runs = [r for r in runs if row_name(r.name) in keep]
    try:
        rows = against(runs, reference, resamples)
        for other in {v for k, v in versus.items() if k in {row_name(r["name"]) for r in rows}}:
            theirs = {r["name"]: r for r in against(runs, other, resamples)}
            rows = [theirs[r["name"]] if versus.get(row_name(r["name"])) == other else r for r in rows]
    except SystemExit as e:
        raise SystemExit(f"{sweep_dir}: {e}") from None
    moved = lambda r: row_name(r["reference"]) != reference  # compared with its own base
    if plot:
        compare.forest_plot(rows, plot)
    configs = {r["name"]: compare.run_config(r["runs"][0]) for r in rows}
    lines = ["| run | flags | seeds | SST acc | PARA acc | STS r | overall | Δ overall (95% CI) | wall min |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m, sd = r["metrics"], r["sd"]
        cell = lambda k: compare._num(m[k]) + (f" ± {compare._num(sd[k])}" if sd[k] is not None else "")
        delta = ("reference" if r["delta"] is None else compare._ci(r["delta"]["overall"])
                 + (f" vs {row_name(r['reference'])}" if moved(r) else "") + compare.at_seeds(r))
        lines.append(f"| {r['name']}{' *' if r['significant'] else ''} | `{flags(configs[r['name']], steps == 'full', seed_rows=True)}` | "
                     f"{len(r['runs'])} | {cell('sst_acc')} | {cell('para_acc')} | {cell('sts_r')} | "
                     f"{cell('overall')} | {delta} | {r['wall_s'] / 60:.1f} |")
    single = any(len(c.get("tasks", [])) == 1 for c in configs.values())
    chance = compare.chance_note(rows, ["overall"])
    length = ("the full main job (2.5 passes over the training data, 2,405 steps of batch 32, unless "
              "a row's flags set another length), dev metrics of its best evaluation" if steps == "full" else
              f"one epoch of {steps} optimizer steps on the full training data (batch 32), dev metrics "
              "of the last step")
    caption = (f"Each run: the bundled MiniLM, {length}. " + (f"{note} " if note else "") +
               "Each row is one configuration at several "
               "seeds: mean ± sd over seeds. Δ overall: the row minus the reference row "
               f"({reference}), mean over seeds, with {compare.ci_legend(rows)} "
               + ("A Δ marked 'vs X' is against row X instead: the row was measured on X's settings. "
                  if any(map(moved, rows)) else "")
               + (chance + " " if chance else "") + "Wall: minutes per run. "
               + ("Single-task rows train one task and still report all three dev metrics. " if single else "")
               + f"Rebuilt by `bash {script}`.")
    ci_lines = [compare.delta_line(r, row_name(r["reference"]) if moved(r) else "") for r in rows[1:]]
    seeds = compare.seeds_note(rows)
    return "\n".join([caption, "", *lines, "", *([seeds, ""] if seeds else []), "```text", *ci_lines, "```"]) + "\n"


def table_rows(text: str) -> dict[str, int]:
    """{row name without its seed: seeds} of a table written by `ablation_table`."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) > 2 and cells[2].isdigit():
            rows[row_name(cells[0].removesuffix(" *"))] = int(cells[2])
    return rows


def thinner(old: str, new: str) -> list[str]:
    """Rows of table `old` that table `new` lacks or holds at fewer seeds. A table is rebuilt from
    the runs this machine holds, so a machine without some of the runs behind a table would
    write a thinner one: those rows' results would be lost."""
    now = table_rows(new)
    return [f"{name} ({n} seed{'s' * (n > 1)}, {now.get(name, 0)} here)"
            for name, n in table_rows(old).items() if now.get(name, 0) < n]


# -- ensembles: members and their ensemble's line from its log -----------------------------------
def ensemble_metrics(log: Path) -> dict:
    """The metrics of the `ensemble dev: sst_acc X, ...` line that --eval_only prints."""
    line = next((l for l in log.read_text().splitlines() if l.startswith("ensemble dev: ")), None)
    if line is None:
        raise SystemExit(f"{log}: no 'ensemble dev:' line")
    return parse_metrics(line)


def row(name: str, what: str, b: dict, parameters: float, wall_s: float) -> str:
    return (f"| {name} | `{what}` | {b['sst_acc']:.3f} | {b['para_acc']:.3f} | {b['sts_r']:.3f} | "
            f"{b['overall']:.3f} | {parameters / 1e6:.2f}M | {wall_s / 60:.1f} |")


def ensemble_table(sweep_dir: Path, log: Path, script: str) -> str:
    rows, members = [], []
    for run in finished(sweep_dir):
        s = json.loads((run / "summary.json").read_text())
        c = compare.run_config(run)
        rows.append(row(run.name, flags(c, full_runs=True), s["best"], s["parameters"], s["wall_s"]))
        members.append((run.name, s))
    rows.append(row("ensemble", "--eval_only --checkpoint " + " ".join(n for n, _ in members),
                    ensemble_metrics(log), sum(s["parameters"] for _, s in members),
                    sum(s["wall_s"] for _, s in members)))
    caption = ("Each member: a full run of the main job (the default configuration; its seed in the flags "
               "column); the ensemble averages the members' scores (SST class probabilities, PARA "
               "probability, STS score); its parameters and wall time are the members' totals. "
               f"Rebuilt by `bash {script}`.")
    return "\n".join([caption, "", "| run | flags | SST acc | PARA acc | STS r | overall | parameters | wall min |",
                      "|---|---|---|---|---|---|---|---|", *rows]) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("sweep_dir", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--steps", default="?")
    ap.add_argument("--script", default="sweeps/ablation.sh", help="the command named in the caption")
    ap.add_argument("--reference", default="default", help="the row every other row is compared with")
    ap.add_argument("--versus", nargs="*", default=[], metavar="ROW=REFERENCE",
                    help="rows compared with another row instead (rows measured on a later default)")
    ap.add_argument("--only", nargs="+", metavar="ROW",
                    help="tabulate only these rows (a table of a part of the sweep)")
    ap.add_argument("--note", default="", help="a sentence added to the table's caption")
    ap.add_argument("--plot", type=Path, help="forest plot of Δ overall (PNG)")
    ap.add_argument("--resamples", type=int, default=10_000, help="bootstrap replicates (at least 5,000)")
    ap.add_argument("--ensemble", type=Path, help="log of the --eval_only ensemble of the sweep's runs: "
                                                 "full runs, and a last row for their ensemble")
    ap.add_argument("--replace", action="store_true", default=bool(os.environ.get("REPLACE")),
                    help="write the table even where it drops rows (or seeds) of the table already "
                         "at OUT, whose runs this machine lacks (default: keep that table; REPLACE=1 "
                         "in the environment sets it)")
    args = ap.parse_args(argv)
    if args.ensemble:
        text = ensemble_table(args.sweep_dir, args.ensemble, args.script)
    else:
        versus = dict(v.split("=", 1) for v in args.versus if "=" in v)
        if len(versus) != len(args.versus):
            ap.error(f"--versus takes ROW=REFERENCE pairs, got {args.versus}")
        text = ablation_table(args.sweep_dir, args.reference, args.steps, args.script, args.plot,
                              args.resamples, versus, args.only, args.note)
    print(text)
    lost = [] if args.ensemble or args.replace or not args.out.is_file() else thinner(args.out.read_text(), text)
    if lost:
        print(f"{args.out}: kept as it was; the table above would drop rows this machine has fewer "
              f"runs of: {', '.join(lost)} (--replace or REPLACE=1 writes it anyway)", file=sys.stderr)
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
