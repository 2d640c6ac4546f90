"""Saved configurations back into runs: `--config RUN_DIR/config.json` (a new run with a saved
run's configuration, flags on the command line overriding it), `--resume`, and the args.json
of checkpoints. A saved configuration goes back through the same parser as the command line, so
it is validated exactly like one, and a bad file is a one-line error naming it.
"""
from __future__ import annotations

import argparse
import copy
from pathlib import Path

from base_bert import CheckpointError
from checkpoint import read_json

# Where a run writes and how it was started, not what it trains: never replayed from a file.
NOT_REPLAYED = ("out_dir", "resume", "overwrite", "config", "checkpoint", "eval_only", "scores_out",
                "raw_weights", "int8")
# And the run's bookkeeping on its machine (prediction files or not, CPU threads, which library
# multiplies the linear layers, where the MLM encoders are cached, how often it logs and saves,
# what it reports to): none changes what is trained (threads and --onednn round sums otherwise).
# One list for every tool that asks what a run trained: compare.py's groups, export.py's card.
BOOKKEEPING = (*NOT_REPLAYED, "no_predictions", "threads", "onednn", "mlm_cache", "log_every", "save_every",
               "report_to")

# Settings read only while their extension (the value) is on. A run with the extension off never
# used them, so the tools that ask what a run trained (compare.py's groups, a sweep table's flags)
# read them at today's defaults: a changed default of one (--smart_eps went from 1e-5 to 1e-2)
# then neither splits runs that trained alike nor shows as a flag of theirs.
USED_ONLY_WITH = {"smart_eps": "smart", "smart_wt": "smart", "smart_steps": "smart", "smart_tasks": "smart",
                  "fgsm_eps": "fgsm", "mnrl_wt": "mnrl", "pal_dim": "pal", "pal_heads": "pal",
                  "rdrop_tasks": "rdrop", "distill_wt": "distill"}


def trained_settings(config: dict, defaults: dict) -> dict:
    """A run's configuration with the settings its switched-off extensions never read at `defaults`."""
    return {k: defaults.get(k, v) if k in USED_ONLY_WITH and not config.get(USED_ONLY_WITH[k]) else v
            for k, v in config.items()}


# Flags whose default is not what runs from before the flag did, with what those runs did. A run
# writes every setting into its configuration, so a saved one that lacks such a key was written
# before the flag existed, and its run used that value, not today's default. (R-Drop became the
# default from results/quality.md, so runs from before --rdrop trained without it; runs from
# before --fast_dropout drew torch's dropout masks, and from before --attention_groups attended
# on one grid per batch, which draws other attention dropout masks; --pair_orders predict became
# the default from results/quality-predict.md, and runs from before the flag used one order.)
ADDED_WITH = {"rdrop": 0.0, "fast_dropout": False, "attention_groups": False, "pair_orders": "one"}


# Extensions whose training changed under the same flags, each with the key added in that change
# (a saved configuration that lacks it was written before) and what changed. Such a configuration,
# replayed (--config) or resumed, trains today's version: `changed_training` says so in one line.
CHANGED_WITH = [(("fgsm", "smart"), "smart_tasks",
                 "its perturbed passes now replay the clean pass's dropout masks, and SMART's ascent step "
                 "is its ε, not 1e-3 (adversarial.py); this run trains that version, not the saved run's")]


def changed_training(saved: dict, run: dict) -> list[str]:
    """One line for each extension on in `run` (the settings of a run started from the saved
    configuration `saved`) whose training changed since `saved` was written."""
    return [f"{' and '.join('--' + f for f in flags if run.get(f))}: saved before a change: {what}"
            for flags, key, what in CHANGED_WITH if key not in saved and any(run.get(f) for f in flags)]


def as_run(saved: dict) -> dict:
    """A saved configuration with the flags it predates set to what its run used."""
    return {**saved, **{k: v for k, v in ADDED_WITH.items() if k not in saved}}


def read_config(file: Path) -> dict:
    """A run's saved configuration (config.json, a checkpoint's args.json), as the run used it."""
    saved = read_json(file)
    if not isinstance(saved, dict):
        raise CheckpointError(f"{file}: not a valid configuration (expected a JSON object, "
                              f"found {type(saved).__name__})")
    return as_run(saved)


def args_to_argv(d: dict, parser: argparse.ArgumentParser) -> list[str]:
    """A saved argument dict back into command-line form."""
    on_by_default = {a.dest for a in parser._actions if a.default is True}
    flag = {}  # dest -> its flag (the first action of a dest wins: --option before --fine-tune-mode)
    for a in parser._actions:
        if a.option_strings and a.dest not in flag:
            flag[a.dest] = next((o for o in a.option_strings if o.lstrip("-") == a.dest), a.option_strings[0])
    argv = []
    for k, v in d.items():
        if k not in flag:
            raise CheckpointError(f"unknown setting {k!r}")
        if v is None or (v is False and k not in on_by_default):
            continue
        if v is False:  # a switch that is on by default, turned off
            argv.append(f"--no-{k}")
            continue
        argv.append(flag[k])
        if isinstance(v, list):
            argv += [str(x) for x in v]
        elif v is not True:
            argv.append(str(v))
    return argv


def saved_argv(file: Path, parser: argparse.ArgumentParser, drop=()) -> list[str]:
    """The command line of a saved configuration (JSON object of argument values), checked by
    `parser`; keys in `drop` are left out."""
    saved = read_config(file)
    try:
        argv = args_to_argv({k: v for k, v in saved.items() if k not in drop}, parser)
    except CheckpointError as e:
        raise CheckpointError(f"{file}: not a valid configuration ({e})") from None
    checked = copy.copy(parser)  # the same arguments, its own error handler

    def refuse(message):  # one line naming the file, instead of argparse's usage dump and exit
        raise CheckpointError(f"{file}: not a valid configuration ({message})")
    checked.error = refuse
    checked.parse_args(argv)
    return argv


def config_file(argv: list[str]) -> str | None:
    """The value of --config in argv, if any (before the full parse, which it feeds)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    return known.config
