"""Join single-task runs into one run folder: three specialists, scored as one entry.

    python sweeps/specialists.py runs/quality/specialists-s1 sst=runs/quality/sst-alone-s1 \\
        para=runs/quality/para-alone-s1 sts=runs/quality/sts-alone-s1

A run trained with `--tasks T` still evaluates every task (the others from untrained heads).
This folder takes each task's dev scores from the run that trained on that task alone, so that
compare.py can set three single-task models against one multitask model on all three tasks and
on the overall score, example by example. Its summary.json's wall time is the three runs' sum:
what the specialists cost to train. Its config.json is the SST run's, with all three tasks and
one key no run has, `specialists`, so that compare.py never takes it for a multitask run of the
same settings (it groups runs by configuration), while the joined folders of several seeds still
group together.
"""
from __future__ import annotations

import argparse
import json
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's modules
from batching import TASKS  # noqa: E402
from evaluation import load_dev_scores, write_dev_scores  # noqa: E402


class JoinError(Exception):
    """Bad input: printed as one line, exit code 2."""


def read_run(task: str, folder: Path) -> tuple[dict, dict, dict]:
    """The run's config, its dev scores of `task` and its summary; it must have trained on `task` alone."""
    try:
        config = json.loads((folder / "config.json").read_text())
        summary = json.loads((folder / "summary.json").read_text())
        dev = load_dev_scores(folder / "dev_scores.npz")
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise JoinError(f"{folder}: not a finished run folder ({' '.join(str(e).split())[:200]})") from None
    if config.get("tasks") != [task]:
        raise JoinError(f"{folder}: trained on {config.get('tasks')}, not on {task} alone")
    if task not in dev:
        raise JoinError(f"{folder}: no {task} dev scores")
    return config, dev[task], summary


def join(out: Path, runs: dict) -> dict:
    """Write the joined folder `out` from {task: run folder}; returns its summary."""
    read = {t: read_run(t, Path(runs[t])) for t in TASKS}
    seeds = {read[t][0].get("seed") for t in TASKS}
    if len(seeds) > 1:  # compare.py pairs runs by seed: the three must share one
        raise JoinError(f"the runs have different seeds ({', '.join(map(str, sorted(seeds)))})")
    out.mkdir(parents=True, exist_ok=True)
    write_dev_scores(out / "dev_scores.npz", {t: read[t][1] for t in TASKS})
    config = {**read["sst"][0], "tasks": list(TASKS), "out_dir": str(out), "specialists": list(TASKS)}
    (out / "config.json").write_text(json.dumps(config, indent=2))
    walls = [read[t][2].get("wall_s") for t in TASKS]
    summary = {"wall_s": sum(walls) if None not in walls else None,
               "joined_from": {t: str(runs[t]) for t in TASKS}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="the folder to write")
    ap.add_argument("runs", nargs=3, metavar="TASK=RUN", help="sst=RUN para=RUN sts=RUN")
    args = ap.parse_args(argv)
    try:
        runs = dict(item.split("=", 1) for item in args.runs if "=" in item)
        if sorted(runs) != sorted(TASKS):
            raise JoinError(f"give one run per task as TASK=RUN, for {', '.join(TASKS)}")
        join(args.out, runs)
    except JoinError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
