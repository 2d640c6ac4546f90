"""Which change helps? Dev metrics of several runs side by side, each against the first, with
paired bootstrap confidence intervals over the dev examples.

    python compare.py runs/default-s1 runs/default-s2 runs/lr3e-4 --out cmp.md --plot cmp.png

Each RUN is a run folder holding config.json and dev_scores.npz (the per-example dev scores that
training writes). Runs whose configurations differ only by the seed (and by keys that do not
change the model: out_dir, the prediction paths, threads, ...) form one group, named after its
runs with the seed suffix stripped (`default-s1`, `default-s2` -> `default`); a group's metric is
the mean over its seeds, shown as mean ± sd. The first group is the reference; every other row
gets Δ = row - reference for the overall score and each task metric, with a 95% CI from a
paired bootstrap: in each replicate every task's dev examples are resampled once (with
replacement) and every run is scored on those same examples, so the CI reflects the difference
between the runs, not the noise of either alone. Training noise is added on top: a seed moves
every metric too, so where any group has two or more seeds, each replicate's Δ also gets a draw of
the seed-to-seed noise that resampling examples does not already carry (seed_spread: the
within-group sd over seeds, less its bootstrap part, pooled over the groups, times
sqrt(1/n + 1/n_ref), t-distributed with the pooled degrees of freedom). With one seed per group
that noise cannot be estimated and the CI covers the dev examples only; the legend says which.
A row that trains what the reference trains (a prediction-time change, a weight average) at fewer
seeds, all among the reference's, is compared with the reference's runs at its own seeds alone,
seed by seed ("at seeds S" after its Δ): it then carries no training noise of the reference's
other seeds. Rows whose Δ overall CI excludes 0 are marked `*`.
Below the table, "How many seeds" reads each row's CI forward (power.py): the smallest Δ overall
its seeds resolve four times in five, and the seeds a row would need to resolve ±--target
(default 0.003): what to run next when a CI straddles 0.
--no_group gives one row per run; --resamples (at least 5,000) and --seed set the bootstrap.
A run given as NAME=RUN joins the group NAME whatever its configuration: the runs of several
rows pooled into one, e.g. every saved model of a recipe against the same models scored with a
prediction-time change (`saved_runs.py`), paired run by run on the same dev examples:

    python compare.py one=runs/a-s1 one=runs/b-s1 predict=runs/a-predict-s1 predict=runs/b-predict-s1
--ensemble adds, after the others, a row for each group of several seeds: the ensemble of its runs
(their dev scores averaged, as `multitask_classifier.py --eval_only --checkpoint RUN...` predicts),
with its Δ and CI like any row.

From Python (e.g. a sweep's ablation table against a reference group):

    import compare
    rows = compare.compare(["runs/ref-s1", "runs/ref-s2", "runs/x"], resamples=10_000, seed=0)
    print(compare.markdown(rows))      # rows[i]["delta"]["overall"] == (Δ, lo, hi), None for rows[0]
    compare.forest_plot(rows, "cmp.png")
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import re
import sys
import zipfile
from pathlib import Path

import numpy as np

import power
from base_bert import CheckpointError
from batching import TASKS
from bootstrap import (at_seeds_of, bootstrap_deltas, bootstrap_se, excludes_0, group_mean, paired_spread,
                       replicate_metrics, run_metrics, seed_spread, with_overall)
from evaluation import load_dev_scores
from replay import BOOKKEEPING, read_config, trained_settings

# Configuration keys that do not change the trained model: runs differing only by these (and by
# the seed) are the same experiment. Keys ending in "_out" (prediction paths) are ignored too. Not
# --raw_weights or --int8: they score the run otherwise (EVALUATION_ONLY below), so such a row is a
# row of its own. --eval_every only moves the evaluations that choose the best weights.
IGNORED_KEYS = {*BOOKKEEPING, "seed", "eval_every"} - {"raw_weights", "int8"}
TITLES = {"sst_acc": "SST acc", "para_acc": "PARA acc", "sts_r": "STS r", "overall": "overall"}
SEED_SUFFIX = re.compile(r"[-_.]?s(?:eed)?[-_]?\d+$")  # default-s1, lr_seed2, x.s11711


class CompareError(Exception):
    """Bad input: printed as one line, exit code 2."""


# -- runs and groups ---------------------------------------------------------------------------
def load_run(folder) -> dict:
    """A run folder as {"path", "name", "config" (None without config.json), "dev" (task ->
    {"scores", "labels", "ids", ...}), "wall_s" (None without summary.json)}."""
    folder = Path(folder)
    scores = folder / "dev_scores.npz"
    if not scores.is_file():
        raise CompareError(f"{folder}: no dev_scores.npz (not a run folder, or a run from before "
                           "per-example dev scores were saved)")
    config = run_config(folder)
    try:
        dev = load_dev_scores(scores)
        summary = json.loads((folder / "summary.json").read_text()) if (folder / "summary.json").is_file() else {}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise CompareError(f"{folder}: unreadable run file ({' '.join(str(e).split())[:200]})") from None
    # its name as given, "." and ".." made absolute but a link not followed: a run linked into
    # another sweep's folder as NAME-sSEED joins that row, not the row of the folder it points to
    return {"path": folder, "name": Path(os.path.abspath(folder)).name, "config": config, "dev": dev,
            "wall_s": summary.get("wall_s")}


GROUP_ARG = re.compile(r"^([\w.+-]+)=(.+)$")  # NAME=RUN


def named(load, item) -> dict:
    """`load(folder)` of a run given as RUN or NAME=RUN (then run["group"] = NAME). An existing
    folder whose own name holds "=" is taken as it is."""
    m = GROUP_ARG.match(str(item))
    if m is None or Path(item).exists():
        return load(item)
    return {**load(m.group(2)), "group": m.group(1)}


def run_config(folder) -> dict | None:
    """A run's config.json as the run used it (the reader of --config and --resume: checked
    against the folder's manifest, flags added later at the value they were added with), None
    without one."""
    file = Path(folder) / "config.json"
    if not file.is_file():
        return None
    try:
        return read_config(file)
    except CheckpointError as e:
        raise CompareError(str(e)) from None


def model_key(config: dict | None):
    """What identifies the experiment: a run's configuration as run_config read it (flags whose
    default changed already at the value they were added with) without the ignored keys. None (a
    run without config.json) never matches another run."""
    if config is None:
        return None
    defaults = parser_defaults()
    config = trained_settings({**defaults, **config}, defaults)  # a run saved before a flag existed ran at its default
    return json.dumps({k: v for k, v in config.items() if k not in IGNORED_KEYS and not k.endswith("_out")},
                      sort_keys=True)


# Settings that change what a run evaluates and keeps, never a training step: two runs whose
# configurations differ only by these (and by the seed) move the same weights at each seed.
# --pair_orders one and predict train alike (both train on one order); --ema, --swa and
# --wise_alphas average or interpolate weights for evaluation only; --raw_weights scores a run's
# last step; --mc_dropout averages passes with dropout on. A new flag of that kind belongs here
# too, or its rows are compared as unpaired.
EVALUATION_ONLY = {"ema", "swa", "wise_alphas", "raw_weights", "int8", "mc_dropout"}
TRAINS_AS = {"pair_orders": {"predict": "one"}}  # key -> {value: the value it trains as}


def training_key(config: dict | None):
    """What identifies the training alone: model_key's configuration without the settings that
    change only what is evaluated (EVALUATION_ONLY, TRAINS_AS). None never matches."""
    if config is None:
        return None
    config = {**parser_defaults(), **config}
    config = {k: TRAINS_AS[k].get(v, v) if k in TRAINS_AS else v
              for k, v in config.items() if k not in EVALUATION_ONLY}
    return model_key(config)


@functools.lru_cache(maxsize=1)
def _defaults() -> str:
    from options import parse_args  # the command line's own defaults
    return json.dumps(vars(parse_args([])))


def parser_defaults() -> dict:
    """The command line's defaults, parsed once per process (a fresh dict each call)."""
    return json.loads(_defaults())


def group_name(runs: list[dict]) -> str:
    names = [r["name"] for r in runs]
    stripped = {SEED_SUFFIX.sub("", n) for n in names}
    if len(runs) > 1 and len(stripped) == 1 and "" not in stripped:
        return stripped.pop()
    return names[0]


def group_runs(runs: list[dict], by_seed: bool = True) -> list[dict]:
    """Runs that differ only by seed, as groups {"name", "runs", "seeds"} in the order of their
    first run. A run whose seed is already in the matching group (the same folder given twice, or
    a rerun) starts a group of its own, so that a run can be compared with itself. A run named
    into a group (NAME=RUN: run["group"]) joins that group only, seeds and configuration aside."""
    groups = []
    for run in runs:
        key, seed = model_key(run["config"]), (run["config"] or {}).get("seed")
        if run.get("group"):
            key = ("group", run["group"])
        match = next((g for g in groups if g["key"] == key and (isinstance(key, tuple) or (
                      by_seed and key is not None and seed not in g["seeds"]))), None)
        if match is None:
            groups.append({"key": key, "runs": [run], "seeds": [seed]})
        else:
            match["runs"].append(run)
            match["seeds"].append(seed)
    seen = {}
    for g in groups:  # unique names: the per-row lines below the table are keyed by them
        key = g.pop("key")
        name = key[1] if isinstance(key, tuple) else group_name(g["runs"])
        seen[name] = seen.get(name, 0) + 1
        g["name"] = name if seen[name] == 1 else f"{name} ({seen[name]})"
    return groups


def common_tasks(runs: list[dict]) -> tuple[list[str], list[str]]:
    """The dev tasks every run has, after checking they are scored on the same examples; and a
    note per task left out."""
    ref, tasks, notes = runs[0], [], []
    for t in TASKS:
        missing = [str(r["path"]) for r in runs if t not in r["dev"]]
        if missing:
            if len(missing) < len(runs):
                notes.append(f"{t} left out of the comparison: not in {', '.join(missing)}")
            continue
        for r in runs[1:]:
            a, b = ref["dev"][t], r["dev"][t]
            if not (np.array_equal(a["ids"], b["ids"]) and np.array_equal(a["labels"], b["labels"])):
                raise CompareError(f"{r['path']}: {t} dev examples differ from {ref['path']}'s "
                                   "(runs must be scored on the same dev ids in the same order)")
        tasks.append(t)
    if not tasks:
        raise CompareError("no dev task is common to all runs")
    return tasks, notes


def matched_seeds(group: dict, ref: dict) -> list[int] | None:
    """Where the reference's runs at `group`'s seeds are (indices into ref["runs"]), for a group
    that trains what the reference trains (training_key: a prediction-time change, an average of
    the weights) at seeds all among the reference's. Each of its runs shares its seed's training
    with one of the reference's, so its Δ is taken against those runs alone, seed by seed: against
    the reference's other seeds it would carry their training noise (on the 3-seed default, a
    2-seed row of that kind read -0.0009 where its own seeds gave +0.0016), and its CI carries how
    much the change's effect varies from seed to seed (paired_spread), not how much the seeds'
    scores do. None otherwise, Δ against every run of the reference: for a row that trains
    otherwise, the reference's other seeds are as good a measure of it as the matching ones. A
    group of the reference's very configuration (a rerun, another machine's runs) is not matched:
    nothing says it repeats the reference's training step for step."""
    seeds, theirs = group["seeds"], ref["seeds"]
    keys = {training_key(r["config"]) for r in group["runs"] + ref["runs"]}
    rerun = {model_key(r["config"]) for r in group["runs"]} == {model_key(r["config"]) for r in ref["runs"]}
    if (group is ref or rerun or len(keys) != 1 or None in keys or None in seeds or None in theirs
            or len(set(seeds)) < len(seeds) or len(set(theirs)) < len(theirs)
            or not set(seeds) <= set(theirs)):
        return None
    return [theirs.index(s) for s in seeds]


def ensemble_run(group: dict, tasks: list[str]) -> dict:
    """A group's runs as one run: each task's dev scores averaged over them, the scores that
    `multitask_classifier.py --eval_only --checkpoint RUN...` predicts with, so its metrics are
    that ensemble's, without running a model. Its wall time is the members' sum: what it costs."""
    members = group["runs"]
    dev = {t: {**members[0]["dev"][t], "scores": np.mean([r["dev"][t]["scores"] for r in members], 0)}
           for t in tasks}
    walls = [r["wall_s"] for r in members]
    return {"path": " + ".join(str(r["path"]) for r in members), "name": f"{group['name']} ensemble",
            "config": None, "dev": dev, "wall_s": None if None in walls else sum(walls)}


def with_ensembles(groups: list[dict], tasks: list[str]) -> list[dict]:
    """The groups, then for every group of two or more runs a group of one: their ensemble
    (ensemble_run). Last, so that the other rows keep their places and with them their CIs."""
    several = [g for g in groups if len(g["runs"]) > 1]
    if not several:
        raise CompareError("--ensemble: no group of two or more runs to ensemble (give each "
                           "configuration at several seeds)")
    return groups + [{"name": f"{g['name']} ensemble", "runs": [ensemble_run(g, tasks)],
                      "seeds": [f"ensemble of {len(g['runs'])}"], "ensemble": True} for g in several]


def compare(dirs: list, resamples: int = 10_000, seed: int = 0, by_seed: bool = True,
            ensembles: bool = False) -> list[dict]:
    """One row per group of runs (the first is the reference): {"name", "runs" (paths), "seeds",
    "metrics" (mean over seeds), "sd" (None below 2 seeds), "wall_s", "delta" ({metric: (Δ, lo,
    hi)}; None for the reference), "significant" (Δ overall CI excludes 0), "paired_seeds" (the
    seeds Δ was taken at, against the reference's runs at those seeds alone: matched_seeds; None
    when against all of the reference's), "reference" (name),
    "resamples", "seed", "notes", "seed_sd" (seed_spread's sd of overall, None when no group has
    two seeds), "seed_df", "paired_sd" (a paired row's own noise), "boot_se" (Δ overall's SE over
    the bootstrap alone), "n_ref" (the reference's runs), "ensemble" (an --ensemble row)}. Notes
    name tasks left out; they are printed to stderr too.

    `ensembles`: for each group of several seeds, a row for their ensemble (with_ensembles). It
    counts as one run: its CI carries the training noise of one seed, more than the average of
    several models has, so it errs wide."""
    runs = [named(load_run, d) for d in dirs]
    if not runs:
        raise CompareError("no run folders given")
    tasks, notes = common_tasks(runs)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    groups = group_runs(runs, by_seed)
    if ensembles:
        groups = with_ensembles(groups, tasks)
    # (a run's replicates do not depend on which runs come with it, or in which order)
    runs = [r for g in groups for r in g["runs"]]
    for run, rep in zip(runs, replicate_metrics(runs, tasks, resamples, seed)):
        run["replicates"] = rep
    per_seed = [[with_overall(run_metrics(r, tasks)) for r in g["runs"]] for g in groups]
    replicates = [[with_overall(r["replicates"]) for r in g["runs"]] for g in groups]
    spread, df = seed_spread(per_seed, replicates)
    refs = [matched_seeds(g, groups[0]) for g in groups]
    paired = [None if at is None else paired_spread(per_seed[i], replicates[i], at_seeds_of(per_seed[0], at),
                                                    at_seeds_of(replicates[0], at))
              for i, at in enumerate(refs)]
    reps = [[r["replicates"] for r in g["runs"]] for g in groups]
    cis = bootstrap_deltas(reps, spread, df, seed, refs, paired)
    rows = []
    for i, (g, ci, seeds, at) in enumerate(zip(groups, cis, per_seed, refs)):
        mean = group_mean(seeds)
        ref = group_mean(at_seeds_of(per_seed[0], at))
        walls = [r["wall_s"] for r in g["runs"] if r["wall_s"] is not None]
        rows.append({"name": g["name"], "runs": [str(r["path"]) for r in g["runs"]], "seeds": g["seeds"],
                     "metrics": mean,
                     "sd": {k: float(np.std([m[k] for m in seeds], ddof=1)) if len(seeds) > 1 else None
                            for k in mean},
                     "wall_s": sum(walls) / len(walls) if walls else None,
                     "delta": None if i == 0 else {k: (mean[k] - ref[k], *ci[k]) for k in mean},
                     "significant": i > 0 and excludes_0(*ci["overall"]),
                     "paired_seeds": None if at is None else list(g["seeds"]),
                     "reference": groups[0]["name"], "resamples": resamples, "seed": seed, "notes": notes,
                     "seed_sd": spread.get("overall"), "seed_df": df,
                     "paired_sd": None if paired[i] is None else paired[i][0].get("overall"),
                     "boot_se": None if i == 0 else bootstrap_se(reps[i], at_seeds_of(reps[0], at)),
                     "n_ref": len(groups[0]["runs"]),
                     "ensemble": g.get("ensemble", False)})
    return rows


# -- output ------------------------------------------------------------------------------------
def _num(x: float, sign: bool = False) -> str:
    """4 decimals; a value that rounds to zero prints as 0.0000, never -0.0000."""
    x = 0.0 if round(x, 4) == 0 else x
    return f"{x:+.4f}" if sign else f"{x:.4f}"


def _ci(d: tuple) -> str:
    return f"{_num(d[0], True)} [{_num(d[1])}, {_num(d[2])}]"


def at_seeds(row: dict) -> str:
    """' at seeds 11711, 1' for a row whose Δ is against the reference at its own seeds alone."""
    seeds = row.get("paired_seeds")
    return f" at seeds {', '.join(map(str, seeds))}" if seeds else ""


def delta_line(row: dict, against: str = "") -> str:
    """`NAME: Δ overall +0.0042 95% CI [-0.0011, 0.0093]`, then ` against X` when given and the
    seeds of a Δ taken at the row's own seeds."""
    d, lo, hi = row["delta"]["overall"]
    return (f"{row['name']}: Δ overall {_num(d, True)} 95% CI [{_num(lo)}, {_num(hi)}]"
            + (f" against {against}" if against else "") + at_seeds(row))


def _seeds(seeds: list) -> str:
    if seeds == [None]:
        return "–"
    return str(seeds[0]) if len(seeds) == 1 else f"{len(seeds)} ({', '.join(map(str, seeds))})"


def ci_legend(rows: list[dict]) -> str:
    """How the CIs of `rows` were made, in words: the tables' legends."""
    r = rows[0]
    text = (f"a 95% CI from a paired bootstrap over the dev examples ({r['resamples']:,} resamples, "
            f"seed {r['seed']}; each replicate resamples the three tasks once and scores every run on the "
            "same examples)")
    if r["seed_df"]:
        text += (f", plus the noise of training that resampling the examples does not carry: the sd over "
                 f"seeds within a row, pooled over the rows, less the part the bootstrap already holds "
                 f"(overall: {_num(r['seed_sd'])}, {r['seed_df']} degrees of freedom), times "
                 "sqrt(1/n + 1/n_ref), t-distributed.")
    else:
        text += (". Every row has one seed, so the noise of training is not in the CI: it covers the "
                 "dev examples only, and understates how far another seed could move a row.")
    if any(r.get("paired_seeds") for r in rows):
        text += (" A Δ 'at seeds S' is against the reference's runs at those seeds alone, seed by "
                 "seed: the row trains what its reference trains (it changes prediction or averages "
                 "weights only), so where S is fewer seeds than the reference's, the reference's mean "
                 "± sd in its own row is not the one that Δ subtracts; and the noise of training in its "
                 "CI is not the pooled sd above but the sd over S of the per-seed Δ, less the part the "
                 "bootstrap already holds, times sqrt(1/n), t-distributed with n − 1 degrees of freedom "
                 "(none at one seed): the seeds' own spread cancels in each difference.")
    return text + " `*`: the 95% CI of Δ overall excludes 0."


def chance_note(rows: list[dict], keys=None) -> str:
    """How many of the table's Δ CIs (of `keys`, default every metric) exclude 0, against how many
    would by chance alone: with many rows and four metrics a row, a CI or two that excludes 0 is
    expected even where no change is real (a 2-seed SST gain in results/quality-today.md did not
    survive two more seeds). '' for a table without Δ."""
    cis = [r["delta"][k] for r in rows if r["delta"] for k in (keys or r["delta"]) if k in r["delta"]]
    if not cis:
        return ""
    out = sum(excludes_0(lo, hi) for _, lo, hi in cis)
    return (f"{out} of the {len(cis)} 95% CIs of Δ here exclude 0; were no change real, about "
            f"{0.05 * len(cis):.2g} would by chance (1 in 20), so one such CI among many is weak "
            "evidence until more seeds repeat it.")


def seeds_note(rows: list[dict], target: float = 0.003) -> str:
    """How many seeds each row needs (power.py): the smallest Δ its seeds resolve four times in
    five, from its CI; and from its Δ overall's noise, the bootstrap's and the seeds', the seeds
    it would need to resolve ±`target`. '' without a row to say it of (an ensemble row is one run
    whatever its members: left out)."""
    parts = []
    for r in rows:
        if r["delta"] is None or r["ensemble"]:
            continue
        n, paired = len(r["runs"]), r["paired_seeds"] is not None
        against = None if paired else r["n_ref"]
        v = power.per_seed_variance(r["boot_se"], r["paired_sd"] if paired else r["seed_sd"], n, against)
        parts.append(f"{r['name']} ±{_num(power.detectable(power.ci_se(*r['delta']['overall'][1:])))} "
                     f"at {n} seed{'s' * (n > 1)}, about {power.seeds_needed(v, target, paired)}"
                     + (" (paired at one seed: how its effect varies with the seed is not in it)"
                        if paired and n == 1 else ""))
    if not parts:
        return ""
    one_seed = "" if rows[0]["seed_df"] else (
        " Every row has one seed here, so how much a seed moves a run is not in these figures: "
        "they are lower still.")
    return ("How many seeds (power.py): the smallest Δ overall a row's seeds resolve four times in "
            f"five, and the seeds a row would need, its reference at as many, to resolve ±{_num(target)}: "
            + "; ".join(parts) + ". From the noise in each row's CI, the dev examples' and the "
            "seeds', both shrinking with the seeds: a normal approximation, a little short on "
            "simulated tables (benchmarks/ci_coverage.py), so floors; for planning runs, not for "
            "judging a Δ already measured." + one_seed)


def markdown(rows: list[dict], target: float = 0.003) -> str:
    """The comparison table, its legend, and one `NAME: Δ overall ... 95% CI [...]` line per row."""
    ref, keys = rows[0]["reference"], list(TITLES)
    walls = any(r["wall_s"] is not None for r in rows)
    head = (["run", "seeds"] + [TITLES[k] for k in keys] + [f"Δ overall vs {ref} (95% CI)"]
            + [f"Δ {TITLES[k]}" for k in keys[:-1]] + (["wall (min)"] if walls else []))
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["name"] + (" *" if r["significant"] else ""), _seeds(r["seeds"])]
        for k in keys:
            if k not in r["metrics"]:
                cells.append("–")
            elif r["sd"][k] is None:
                cells.append(_num(r["metrics"][k]))
            else:
                cells.append(f"{_num(r['metrics'][k])} ± {_num(r['sd'][k])}")
        for k in keys[-1:] + keys[:-1]:
            if r["delta"] is None:
                cells.append("reference")
            else:
                cells.append(_ci(r["delta"][k]) + (at_seeds(r) if k == "overall" else "")
                             if k in r["delta"] else "–")
        if walls:
            cells.append(f"{r['wall_s'] / 60:.1f}" if r["wall_s"] is not None else "–")
        lines.append("| " + " | ".join(cells) + " |")
    legend = f"Δ: the row minus {ref}, with {ci_legend(rows)} Groups of seeds: mean ± sd over seeds."
    chance = chance_note(rows)
    lines += ["", legend + (" " + chance if chance else "")]
    seeds = seeds_note(rows, target)
    if seeds:
        lines += ["", seeds]
    lines += [f"Note: {n}." for n in rows[0]["notes"]]
    if len(rows) > 1:
        lines += ["", "```text", *(delta_line(r) for r in rows[1:]), "```"]
    return "\n".join(lines) + "\n"


def forest_plot(rows: list[dict], path):
    """Δ overall with its 95% CI per row (the reference excluded), a line at 0; rows whose CI
    excludes 0 in red."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    others = rows[1:]
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.4 * max(1, len(others))))
    for y, r in enumerate(reversed(others)):
        d, lo, hi = r["delta"]["overall"]
        color = "tab:red" if r["significant"] else "tab:blue"
        ax.errorbar([d], [y], xerr=[[d - lo], [hi - d]], fmt="o", color=color, capsize=3)
    ax.axvline(0, color="black", lw=1, ls="--")
    ax.set_yticks(range(len(others)), [r["name"] for r in reversed(others)])
    ax.set_ylim(-0.7, max(1, len(others)) - 0.3)
    ax.set(xlabel=f"Δ overall vs {rows[0]['reference']} (95% paired bootstrap CI)",
           title="red: CI excludes 0")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# -- command line ------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Compare runs' dev metrics with paired bootstrap CIs "
                                             "against the first run (or group of seeds).")
    ap.add_argument("runs", nargs="+", metavar="RUN", help="run folders holding dev_scores.npz; "
                                                           "NAME=RUN puts RUN in the group NAME")
    ap.add_argument("--out", type=Path, help="also write the markdown table to this file")
    ap.add_argument("--plot", type=Path, help="forest plot of Δ overall (PNG)")
    ap.add_argument("--resamples", type=int, default=10_000, help="bootstrap replicates (at least 5,000)")
    ap.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    ap.add_argument("--no_group", action="store_true", help="one row per run, even for runs "
                                                            "differing only by seed")
    ap.add_argument("--target", type=float, default=0.003, metavar="DELTA",
                    help="the Δ overall whose seeds the 'How many seeds' note counts (default 0.003)")
    ap.add_argument("--ensemble", action="store_true",
                    help="for each group of several seeds, a row for their ensemble (dev scores "
                         "averaged, as --eval_only --checkpoint RUN... predicts)")
    args = ap.parse_args(argv)
    try:
        if args.resamples < 5000:
            raise CompareError(f"--resamples {args.resamples}: use at least 5,000 for stable 95% CIs")
        if not args.target > 0:
            raise CompareError(f"--target {args.target}: give the size of a change, above 0")
        rows = compare(args.runs, args.resamples, args.seed, by_seed=not args.no_group,
                       ensembles=args.ensemble)
        text = markdown(rows, args.target)
        print(text, end="")
        if args.out:
            args.out.write_text(text, encoding="utf-8")
        if args.plot:
            forest_plot(rows, args.plot)
    except CompareError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        where = f" {e.filename}" if e.filename else ""
        print(f"error: cannot write{where}: {e.strerror or e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
