"""The sweep scripts (sweeps/*.sh) run end to end on tiny runs, so that none of them rots: every
row's flags are accepted by the parser (DRY_RUN), and a few rows at two seeds train, are skipped
when finished, and become the table with Δ and CIs."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATA_FILES

import multitask_classifier as mc

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ("ablation", "tuning", "ensemble", "quality")


def sweep(script: str, tmp_path: Path, tiny_bert_dir, tiny_data_dir, *args: str, flags=(),
          **env) -> subprocess.CompletedProcess:
    """The sweep script on the tiny model and data; `flags` go to every run after the row's own."""
    extra = ["--bert_model", str(tiny_bert_dir), "--threads", "1", "--batch_size", "8", "--eval_batch_size", "16",
             "--mlm_cache", str(tmp_path / "mlm-cache"), *flags]
    for flag, (name, _) in DATA_FILES.items():
        extra += [f"--{flag}", str(tiny_data_dir / name)]
    for t in ("sst", "para", "sts"):
        for split in ("dev", "test"):
            extra += [f"--{t}_{split}_out", str(tmp_path / "predictions" / f"{t}-{split}.csv")]
    env = {**os.environ, "PY": sys.executable, "OUT": str(tmp_path / "runs"), "RESULTS": str(tmp_path / "results"),
           "EXTRA": shlex.join(extra), "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(["bash", str(ROOT / "sweeps" / f"{script}.sh"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def mlm_extra(tiny_bert_dir, tiny_data_dir) -> str:
    """pretrain_mlm.py's flags in the tests: the tiny model and training files, two steps."""
    flags = ["--bert_model", str(tiny_bert_dir), "--steps", "2", "--batch_size", "8", "--threads", "1"]
    for t in ("sst", "para", "sts"):
        flags += [f"--{t}_train", str(tiny_data_dir / DATA_FILES[f"{t}_train"][0])]
    return shlex.join(flags)


def row_names(table: str) -> list[str]:
    """The first cell of each row of a markdown table ("| name", its `*` dropped), header left out."""
    return [l.split(" | ")[0].rstrip(" *") for l in table.splitlines() if l.startswith("| ") and not l.startswith("| run")]


def table_line(table: str, start: str) -> str:
    """The table's first line that starts with `start`."""
    return next(l for l in table.splitlines() if l.startswith(start))


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_row_of_every_sweep_is_a_valid_command_line(script, tmp_path, tiny_bert_dir, tiny_data_dir):
    res = sweep(script, tmp_path, tiny_bert_dir, tiny_data_dir, DRY_RUN="1", SEEDS="1 2")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) >= 2
    names = [line.split(": ", 1)[0] for line in lines]
    assert len(set(names)) == len(names)  # every run its own folder
    for line in lines:
        name, argv = line.split(": ", 1)
        args = mc.parse_args(shlex.split(argv))  # exits (fails the test) on a bad flag
        if script != "ensemble":  # rows: one run per seed, named by it
            assert name.endswith(f"-s{args.seed}")
        if script in ("ablation", "tuning"):  # shortened rows; quality and ensemble runs are full jobs
            assert args.epochs == 1
        else:
            assert args.steps_per_epoch == 0 and args.epochs >= 2.5  # full length, or longer
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_quality_rows_keep_the_default_they_were_measured_against(tmp_path, tiny_bert_dir, tiny_data_dir):
    # R-Drop at weight 3 became the default from this table: a re-run must still measure every
    # row against the old default (R-Drop off), and the adopted row is the default now
    res = sweep("quality", tmp_path, tiny_bert_dir, tiny_data_dir, DRY_RUN="1", SEEDS="1")
    assert res.returncode == 0, res.stderr
    argvs = dict(line.split(": ", 1) for line in res.stdout.splitlines())
    runs = {name: mc.parse_args(shlex.split(argv)) for name, argv in argvs.items()}
    assert runs["default-s1"].rdrop == 0 and runs["label-smoothing-s1"].rdrop == 0
    assert runs["rdrop-s1"].rdrop == 1 and runs["rdrop-3-s1"].rdrop == 3
    assert runs["rdrop-3-s1"].rdrop == mc.parse_args([]).rdrop
    # rows on today's default (compared with rdrop-3 by collect.py --versus) keep R-Drop on
    assert runs["pcgrad-s1"].pcgrad and runs["pcgrad-s1"].rdrop == 3
    assert runs["rdrop-5-s1"].rdrop == 5 and runs["warmup-0-s1"].warmup_ratio == 0
    assert runs["global-s1"].update == "global" and not runs["global-s1"].pcgrad
    assert runs["llrd-s1"].layer_decay == 0.8 and runs["llrd-s1"].lr == 2e-4
    assert "--batch_size 16" in argvs["batch-16-s1"]  # the tests' EXTRA sets a smaller batch after it
    assert not runs["embeddings-s1"].freeze_embeddings
    assert runs["lr-5e-5-s1"].lr == 5e-5
    assert runs["dropout-0.05-s1"].hidden_dropout_prob == 0.05 and runs["head-lr-3e-3-s1"].head_lr == 3e-3
    assert runs["proportional-s1"].sampling == "proportional"
    assert all(runs[f"{row}-s1"].rdrop == 3 for row in ("llrd", "batch-16", "embeddings", "lr-5e-5",
                                                        "dropout-0.05", "head-lr-3e-3", "proportional"))
    # the rows drew torch's dropout masks until fast-dropout, attended on one grid per batch until
    # attention-groups and predicted PARA from one order until pair-orders-predict, as when each was
    # measured; pair-orders-predict is today's default exactly (the sweep's own flags aside)
    order = list(runs)
    since = lambda row: set(order[order.index(f"{row}-s1"):])
    assert {n for n, r in runs.items() if r.fast_dropout} == since("fast-dropout")
    assert {n for n, r in runs.items() if r.attention_groups} == since("attention-groups")
    assert {n for n, r in runs.items() if r.pair_orders == "predict"} == since("pair-orders-predict")
    # rows on a later default: that default and their own flag, nothing else
    for name, base, (key, value) in (("pair-orders-predict", "attention-groups", ("pair_orders", "predict")),
                                     ("swa-0.5", "pair-orders-predict", ("swa", 0.5)),
                                     ("cross-sts", "pair-orders-predict", ("sts_head", "cross")),
                                     ("proportional-now", "pair-orders-predict", ("sampling", "proportional")),
                                     ("rdrop-all", "pair-orders-predict", ("rdrop_tasks", ["sst", "para", "sts"])),
                                     ("epochs-3.5", "pair-orders-predict", ("epochs", 3.5)),
                                     ("branches-2", "pair-orders-predict", ("branches", 2))):
        row = vars(runs[f"{name}-s1"])
        assert {k for k, v in vars(runs[f"{base}-s1"]).items() if row[k] != v} == {key}
        assert row[key] == value
    fork = vars(runs["branches-2-at-0.4-s1"])  # the one row with two flags: --branches and its fork point
    assert {k for k, v in vars(runs["pair-orders-predict-s1"]).items() if fork[k] != v} == {"branches", "branch_at"}
    assert (fork["branches"], fork["branch_at"]) == (2, 0.4)
    for task in ("sst", "para", "sts"):  # each task alone: the default on that task's data only
        alone = vars(runs[f"{task}-alone-s1"])
        assert {k for k, v in vars(runs["pair-orders-predict-s1"]).items() if alone[k] != v} == {"tasks"}
        assert alone["tasks"] == [task]
    # the MLM row: the default exactly, from the encoder the sweep trains first (the tests' EXTRA
    # points every run at the tiny model after it, so its own flag is read from the command line)
    mlm = vars(runs["mlm-s1"])
    assert {k for k, v in vars(runs["pair-orders-predict-s1"]).items() if mlm[k] != v} == set()
    assert argvs["mlm-s1"].split(" --bert_model ")[1].split()[0] == str(tmp_path / "runs" / "mlm-minilm")
    assert "pretrain_mlm.py" in res.stderr and not (tmp_path / "runs" / "mlm-minilm").exists()
    today = vars(mc.parse_args(shlex.split(argvs["pair-orders-predict-s1"])))
    default = vars(mc.parse_args([]))
    differ = {k for k in default if today[k] != default[k]}
    # what the sweep sets (its seed, no predictions) and what the tests' EXTRA points at tiny runs
    sweep_and_tiny = {"seed", "no_predictions", "bert_model", "threads", "batch_size", "eval_batch_size",
                      "mlm_cache"}
    assert all(k in sweep_and_tiny or k.startswith(("sst_", "para_", "sts_")) for k in differ), differ


def test_quality_rows_on_todays_default_alone_make_their_own_table(tmp_path, tiny_bert_dir, tiny_data_dir):
    # a fresh machine without the old default's runs: only the table of today's rows is rebuilt
    res = sweep("quality", tmp_path, tiny_bert_dir, tiny_data_dir, ROWS="rdrop-3 head-lr-3e-3", SEEDS="1 2",
                flags=("--epochs", "1", "--steps_per_epoch", "2"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert not (tmp_path / "results" / "quality.md").exists()
    table = (tmp_path / "results" / "quality-today.md").read_text()
    assert row_names(table) == ["| rdrop-3", "| head-lr-3e-3"]  # today's default first, as the reference
    row = table_line(table, "| head-lr-3e-3")
    assert "--head_lr 0.003" in row and "| 2 |" in row and "head-lr-3e-3: Δ overall" in table


def test_quality_rescore_rows_score_a_rows_saved_models_again(tmp_path, tiny_bert_dir, tiny_data_dir):
    # a prediction-time row trains nothing: each saved model of its reference row, scored again
    # with the row's flags, paired with that model in a table of its own
    res = sweep("quality", tmp_path, tiny_bert_dir, tiny_data_dir, ROWS="attention-groups attention-groups-predict",
                SEEDS="1 2", flags=("--epochs", "1", "--steps_per_epoch", "2"))
    assert res.returncode == 0, res.stdout + res.stderr
    runs = tmp_path / "runs"
    for seed in (1, 2):
        scored = runs / f"attention-groups-predict-s{seed}"
        assert not (scored / "best").exists() and (scored / "dev_scores.npz").is_file()
        saved = json.loads((scored / "config.json").read_text())  # its model's, but for the flag
        assert saved["pair_orders"] == "predict" and saved["seed"] == seed
        assert saved["checkpoint"] == [str(runs / f"attention-groups-s{seed}")]
    table = (tmp_path / "results" / "quality-predict.md").read_text()
    assert row_names(table) == ["| attention-groups", "| attention-groups-predict"]
    ref, row = (table_line(table, f"| {r} |") for r in ("attention-groups", "attention-groups-predict"))
    assert "--pair_orders one" in ref  # (predict is the default now)
    assert "--pair_orders" not in row and "--eval_only" in row and "| 2 |" in row
    assert "attention-groups-predict: Δ overall" in table and "trains nothing" in table
    assert not (tmp_path / "results" / "quality-today.md").exists()  # no rdrop-3 runs: no second table
    pooled = (tmp_path / "results" / "quality-predict-pooled.md").read_text()
    assert "| one-order | 2 (1, 2) |" in pooled and "| both-orders" in pooled and "both-orders: Δ overall" in pooled


def default_now_sweep(tmp_path, tiny_bert_dir, tiny_data_dir, rows: str) -> subprocess.CompletedProcess:
    """quality.sh on a fresh machine with only runs on the default now: its reference row and `rows`."""
    res = sweep("quality", tmp_path, tiny_bert_dir, tiny_data_dir, SEEDS="1 2", flags=("--epochs", "1", "--steps_per_epoch", "2"),
                ROWS=f"pair-orders-predict {rows}", MLM_EXTRA=mlm_extra(tiny_bert_dir, tiny_data_dir), TEACHER_SEEDS="1 2")
    assert res.returncode == 0, res.stdout + res.stderr
    results = tmp_path / "results"
    assert not (results / "quality.md").exists() and not (results / "quality-today.md").exists()
    return res


# (Two tests, each about half the rows, so that the two test workers share them.)
def test_quality_rows_on_the_default_now_make_their_own_tables(tmp_path, tiny_bert_dir, tiny_data_dir):
    # the table of the rows that train, and the default's own models predicted from one order,
    # pooled the right way round (one order against both); SWA and every row at its last step
    res = default_now_sweep(tmp_path, tiny_bert_dir, tiny_data_dir, "swa-0.5 pair-orders-one swa-0.5-raw pal pal-raw mlm mlm-raw")
    results = tmp_path / "results"
    now = (results / "quality-now.md").read_text()
    assert row_names(now) == ["| pair-orders-predict", "| swa-0.5", "| pal", "| mlm"]
    # the MLM encoder was trained once, before mlm's runs, which started from it
    encoder = tmp_path / "runs" / "mlm-minilm"
    assert json.loads((encoder / "mlm.json").read_text())["steps"] == 2
    out = res.stdout
    assert out.count("== mlm encoder") == 1 and out.index("== mlm encoder") < out.index(f"== mlm-s1: ")
    assert f"--bert_model {encoder}" in out.split("== mlm-s1: ")[1].splitlines()[0]
    assert "--swa 0.5" in table_line(now, "| swa-0.5") and "swa-0.5: Δ overall" in now
    predict = (results / "quality-predict.md").read_text()
    assert row_names(predict) == ["| pair-orders-predict", "| pair-orders-one"]
    one = table_line(predict, "| pair-orders-one")
    assert "--pair_orders one" in one and "| 2 |" in one
    pooled = (results / "quality-predict-pooled.md").read_text()
    one_order, both = (table_line(pooled, f"| {g} |") for g in ("one-order", "both-orders"))
    assert "| 2 (1, 2) |" in one_order and "| 2 (1, 2) |" in both and "both-orders: Δ overall" in pooled
    # SWA against the raw weights of its own runs: the pair in a table of its own, no other row
    swa = (results / "quality-swa.md").read_text()
    assert row_names(swa) == ["| swa-0.5-raw", "| swa-0.5"]
    raw = table_line(swa, "| swa-0.5-raw")
    assert "--raw_weights" in raw and "--swa 0.5" in raw and "| 2 | " in raw and "swa-0.5: Δ overall" in swa
    assert "swa-0.5-raw" not in now and "swa-0.5-raw" not in predict
    # a row that trains otherwise, at its last step, against the default's training at its last step
    last = (results / "quality-last-step.md").read_text()
    assert row_names(last) == ["| swa-0.5-raw", "| pal-raw", "| mlm-raw"]
    row = table_line(last, "| pal-raw")
    assert "--pal" in row and "--raw_weights" in row and "| 2 |" in row and "pal-raw: Δ overall" in last
    assert "pal-raw" not in now and "pal-raw" not in predict and "pal-raw" not in swa


def test_quality_rows_scored_or_measured_apart_make_their_own_tables(tmp_path, tiny_bert_dir, tiny_data_dir):
    res = default_now_sweep(tmp_path, tiny_bert_dir, tiny_data_dir,
                            "pair-orders-predict-int8 pair-orders-predict-mc8 cross-sts sst-alone para-alone sts-alone distill-0.5")
    results, out = tmp_path / "results", res.stdout
    # none of these rows joins quality-now.md's table, which has no row here, so is not written
    assert not (results / "quality-now.md").exists()
    # int8 inference: the default's own models scored in int8, paired with them seed by seed
    int8 = (results / "quality-int8.md").read_text()
    assert row_names(int8) == ["| pair-orders-predict", "| pair-orders-predict-int8"]
    row = table_line(int8, "| pair-orders-predict-int8")
    assert "--int8" in row and "| 2 |" in row and "at seeds 1, 2" in row
    assert not (results / "quality-predict.md").exists()
    # Monte Carlo dropout: the same models scored as the mean of 8 passes, paired seed by seed
    mc_table = (results / "quality-mc-dropout.md").read_text()
    assert row_names(mc_table) == ["| pair-orders-predict", "| pair-orders-predict-mc8"]
    row = table_line(mc_table, "| pair-orders-predict-mc8")
    assert "--mc_dropout 8" in row and "| 2 |" in row and "at seeds 1, 2" in row
    assert "pair-orders-predict-mc8" not in int8
    # a row measured on a later machine: its own table against the default, not quality-now.md's
    later = (results / "quality-later.md").read_text()
    assert row_names(later) == ["| pair-orders-predict", "| cross-sts"]
    assert "--sts_head cross" in table_line(later, "| cross-sts") and "cross-sts: Δ overall" in later
    # each task alone: at each seed the three single-task runs, joined, against the multitask default
    single = (results / "quality-single-task.md").read_text()
    assert row_names(single) == ["| multitask", "| specialists"] and "specialists: Δ overall" in single
    assert "| 2 (1, 2) |" in table_line(single, "| specialists")
    joined = json.loads((tmp_path / "runs" / "specialists-s1" / "summary.json").read_text())["joined_from"]
    assert joined == {t: str(tmp_path / "runs" / f"{t}-alone-s1") for t in ("sst", "para", "sts")}
    assert "sst-alone" not in later
    # distillation: the default's two models score the training sets once, before the students train
    teacher = tmp_path / "runs" / "teacher.npz"
    assert out.count("== teacher") == 1 and out.index("== teacher") < out.index("== distill-0.5-s1: ") and teacher.is_file()
    # the training files of EXTRA, the students' own, not the repository's data/
    assert "teacher scores of 48 sst, 48 para, 48 sts training examples" in (tmp_path / "runs" / "teacher.log").read_text()
    distill = (results / "quality-distill.md").read_text()
    assert row_names(distill) == ["| pair-orders-predict", "| distill-0.5"]
    assert "| 2 |" in table_line(distill, "| distill-0.5") and "distill-0.5: Δ overall" in distill
    assert json.loads((tmp_path / "runs" / "distill-0.5-s2" / "config.json").read_text())["distill"] == str(teacher)
    assert "distill-0.5" not in later


def test_ablation_rows_at_two_seeds_make_the_table(tmp_path, tiny_bert_dir, tiny_data_dir):
    env = dict(ROWS="default fgsm", SEEDS="1 2", STEPS="3")
    res = sweep("ablation", tmp_path, tiny_bert_dir, tiny_data_dir, **env)
    assert res.returncode == 0, res.stdout + res.stderr
    runs = tmp_path / "runs"
    assert sorted(p.name for p in runs.iterdir() if p.is_dir()) == ["default-s1", "default-s2", "fgsm-s1", "fgsm-s2"]
    table = (tmp_path / "results" / "ablation.md").read_text()
    default = table_line(table, "| default |")
    assert "--fgsm" not in default and "| 2 |" in default and "| reference |" in default
    assert "fgsm: Δ overall " in table and "95% CI [" in table
    assert (tmp_path / "results" / "ablation.png").is_file()
    again = sweep("ablation", tmp_path, tiny_bert_dir, tiny_data_dir, **env)  # finished runs are skipped
    assert again.stdout.count("done, skipped") == 4, again.stdout


def test_tuning_rows_make_the_table(tmp_path, tiny_bert_dir, tiny_data_dir):
    res = sweep("tuning", tmp_path, tiny_bert_dir, tiny_data_dir, ROWS="lr1e-4-crosspara lr5e-5",
                SEEDS="1", STEPS="2")
    assert res.returncode == 0, res.stdout + res.stderr
    table = (tmp_path / "results" / "tuning.md").read_text()
    assert table.index("| lr1e-4-crosspara-s1 |") < table.index("| lr5e-5-s1 |")  # the reference first
    assert "lr5e-5-s1: Δ overall" in table


def test_ensemble_trains_members_and_predicts_with_their_ensemble(tmp_path, tiny_bert_dir, tiny_data_dir):
    res = sweep("ensemble", tmp_path, tiny_bert_dir, tiny_data_dir, SEEDS="1 2")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "ensemble dev: sst_acc" in res.stdout
    table = (tmp_path / "results" / "ensemble.md").read_text()
    assert "| seed-1 |" in table and "| ensemble | `--eval_only --checkpoint seed-1 seed-2` |" in table
    assert len(list((tmp_path / "predictions").glob("*.csv"))) == 6


def stand_in(tmp_path: Path, name: str, body: str) -> Path:
    """An executable bash script tmp_path/bin/NAME standing in for a program this machine lacks."""
    path = tmp_path / "bin" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text("#!/usr/bin/env bash\n" + body + "\n")
    path.chmod(0o755)
    return path


def test_slurm_submits_the_runs_as_one_array_then_the_table(tmp_path, tiny_bert_dir, tiny_data_dir):
    # sbatch records its arguments and (given TASK0) runs array task 0 here, as a cluster node would
    calls, task0 = tmp_path / "sbatch.txt", tmp_path / "task0.out"
    sbatch = stand_in(tmp_path, "sbatch", f"""echo "$*" >> {calls}
echo "Submitted batch job 42"
if [[ -n ${{TASK0:-}} && " $* " == *" --array="* ]]; then SLURM_ARRAY_TASK_ID=0 bash "${{@: -1}}" > {task0} 2>&1; fi""")
    env = dict(ROWS="default fgsm", SEEDS="1 2", STEPS="2", SBATCH_ARGS="--gres=gpu:1 --time=00:10:00",
               PATH=f"{sbatch.parent}:{os.environ['PATH']}")
    res = sweep("slurm", tmp_path, tiny_bert_dir, tiny_data_dir, "ablation", TASK0="1", **env)
    assert res.returncode == 0, res.stdout + res.stderr + (task0.read_text() if task0.exists() else "")
    array, table = (line.split() for line in calls.read_text().splitlines())
    assert "--array=0-3" in array and "--gres=gpu:1" in array and array[-1].endswith("task.sh")
    assert "--dependency=afterany:42" in table and table[-1].endswith("table.sh")
    runs = tmp_path / "runs"
    listed = (runs / "slurm" / "runs.txt").read_text().splitlines()
    assert [line.split(": ")[0] for line in listed] == ["default-s1", "default-s2", "fgsm-s1", "fgsm-s2"]
    assert (runs / "default-s1" / "summary.json").is_file() and (runs / "default-s1.log").is_file()
    assert not (runs / "default-s2").exists()  # task 0 trained line 1 only
    assert "ablation.sh" in (runs / "slurm" / "table.sh").read_text()  # the table job: the sweep again
    calls.unlink()  # submitting again leaves the finished run out of the array
    res = sweep("slurm", tmp_path, tiny_bert_dir, tiny_data_dir, "ablation", **env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "--array=0-2" in calls.read_text().split()
    assert (runs / "slurm" / "runs.txt").read_text().splitlines() == listed[1:]


def test_jobs_train_runs_at_once_and_the_table_waits_for_all(tmp_path, tiny_bert_dir, tiny_data_dir):
    res = sweep("ablation", tmp_path, tiny_bert_dir, tiny_data_dir, ROWS="default fgsm", SEEDS="1", STEPS="2",
                JOBS="2", CUDA_VISIBLE_DEVICES="")
    assert res.returncode == 0, res.stdout + res.stderr
    runs = tmp_path / "runs"
    assert res.stderr.count("CPU cores") == (len(os.sched_getaffinity(0)) < 4)  # warned once, where 2 runs crowd
    for name in ("default-s1", "fgsm-s1"):  # one log per run, each with its run's results only
        assert (runs / f"{name}.log").read_text().count("best dev results") == 1
    # both trained at once: the second had started before the first ended
    assert (runs / "fgsm-s1" / "config.json").stat().st_mtime < (runs / "default-s1" / "summary.json").stat().st_mtime
    assert "fgsm-s1: Δ overall " in (tmp_path / "results" / "ablation.md").read_text()  # built after both


def test_jobs_pin_each_slot_to_its_own_gpu(tmp_path, tiny_bert_dir, tiny_data_dir, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    smi = stand_in(tmp_path, "nvidia-smi", 'echo "GPU 0: Fake (UUID: GPU-a)"; echo "GPU 1: Fake (UUID: GPU-b)"')
    events = tmp_path / "events.txt"
    # trains nothing: records which GPU each run saw, while it ran; default-s1 outlasts the other three
    py = stand_in(tmp_path, "python", f"""[ "$1" = multitask_classifier.py ] || exit 0
name=$(basename "$3")
echo "start $name $CUDA_VISIBLE_DEVICES" >> {events}
if [ "$name" = default-s1 ]; then sleep 1.5; else sleep 0.3; fi
mkdir -p "$3" && echo {{}} > "$3/summary.json"
echo "end $name $CUDA_VISIBLE_DEVICES" >> {events}""")
    res = sweep("ablation", tmp_path, tiny_bert_dir, tiny_data_dir, ROWS="default fgsm", SEEDS="1 2", JOBS="2",
                PY=str(py), PATH=f"{smi.parent}:{os.environ['PATH']}")
    assert res.returncode == 0, res.stdout + res.stderr
    busy: dict[str, str] = {}
    for what, name, gpu in (line.split() for line in events.read_text().splitlines()):
        if what == "start":
            assert gpu not in busy, f"{name} on GPU {gpu} beside {busy.get(gpu)}"
            busy[gpu] = name
        else:
            del busy[gpu]
    starts = [line.split() for line in events.read_text().splitlines() if line.startswith("start")]
    assert len(starts) == 4 and {gpu for *_, gpu in starts} == {"0", "1"}


def test_quality_runs_full_jobs_at_each_seed_against_the_default(tmp_path, tiny_bert_dir, tiny_data_dir):
    # two rows train (every row's command line is checked above, with DRY_RUN)
    res = sweep("quality", tmp_path, tiny_bert_dir, tiny_data_dir, SEEDS="1 2", ROWS="default label-smoothing")
    assert res.returncode == 0, res.stdout + res.stderr
    assert sorted(p.name for p in (tmp_path / "runs").iterdir() if p.is_dir()) == [
        "default-s1", "default-s2", "label-smoothing-s1", "label-smoothing-s2"]
    table = (tmp_path / "results" / "quality.md").read_text()
    assert "the full main job" in table
    ls = table_line(table, "| label-smoothing")
    assert "--label_smoothing 0.1" in ls and "| 2 |" in ls
    assert "label-smoothing: Δ overall " in table
