"""distill.py: soft targets, the teacher file (--teacher_out) and training on it (--distill)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import multitask_classifier as mc
from distill import TeacherError, save_teacher, soft_target, teacher_scores

pytestmark = pytest.mark.usefixtures("one_thread")

TASKS = ("sst", "para", "sts")


# -- the targets ----------------------------------------------------------------------------------
def test_soft_target_mixes_each_label_with_the_teachers_score():
    y = torch.tensor([0, 4, 2])
    p = torch.tensor([[0.6, 0.1, 0.1, 0.1, 0.1], [0.0, 0.0, 0.0, 0.5, 0.5], [0.2] * 5])
    assert soft_target("sst", y, None, 0.5) is y  # no teacher: the labels as they are
    mixed = soft_target("sst", y, p, 0.25)
    assert torch.allclose(mixed, 0.75 * F.one_hot(y, 5).float() + 0.25 * p)
    assert torch.allclose(mixed.sum(-1), torch.ones(3))  # still a distribution
    assert torch.equal(soft_target("sst", y, p, 0.0), F.one_hot(y, 5).float())
    assert torch.equal(soft_target("sst", y, p, 1.0), p)
    assert torch.allclose(soft_target("para", torch.tensor([1, 0]), torch.tensor([0.8, 0.4]), 0.5),
                          torch.tensor([0.9, 0.2]))
    assert torch.allclose(soft_target("sts", torch.tensor([4.0, 1.0]), torch.tensor([3.0, 2.0]), 0.5),
                          torch.tensor([3.5, 1.5]))


@pytest.mark.parametrize("task", TASKS)
def test_a_teacher_at_weight_0_is_training_on_the_labels(tiny_mtbert, tiny_batch, task):
    """Cross-entropy against a one-hot distribution is cross-entropy against the class: the soft
    targets change the loss through the teacher's share alone."""
    model, args = tiny_mtbert("--distill_wt", "0", "--msd", "3", "--hidden_dropout_prob", "0")
    batch = tiny_batch(task, B=6, cross=task == "para")
    plain, _ = mc.task_loss(model, task, batch)
    g = torch.Generator().manual_seed(1)
    teacher = (torch.rand(6, 5, generator=g).softmax(-1) if task == "sst" else
               torch.rand(6, generator=g) * (5.0 if task == "sts" else 1.0))
    taught, _ = mc.task_loss(model, task, {**batch, "teacher": teacher})
    assert taught.item() == pytest.approx(plain.item(), rel=1e-5)
    args.distill_wt = 1.0  # all teacher: the loss against the teacher's scores alone
    out = model(task, batch)["out"].float()
    want = (F.cross_entropy(out, teacher) if task == "sst" else
            F.binary_cross_entropy_with_logits(out, teacher) if task == "para" else F.mse_loss(out, teacher))
    assert mc.task_loss(model, task, {**batch, "teacher": teacher})[0].item() == pytest.approx(want.item(), rel=1e-5)
    assert want.item() != pytest.approx(plain.item(), rel=1e-3)


# -- the teacher file -----------------------------------------------------------------------------
def test_teacher_scores_are_found_by_id_and_a_missing_one_is_refused(tmp_path):
    path = tmp_path / "teacher"  # the file is the name given, with or without .npz
    save_teacher(path, {"sts": np.array([1.0, 2.0, 3.0])}, {"sts": ["a", "b", "c"]})
    assert path.is_file()
    assert teacher_scores(path, "sts", ["c", "a"]).tolist() == [3.0, 1.0]
    with pytest.raises(TeacherError, match=r"1 of the 2 sts training examples.*id d"):
        teacher_scores(path, "sts", ["a", "d"])
    with pytest.raises(TeacherError, match="no sst scores .*has sts"):
        teacher_scores(path, "sst", ["a"])
    with pytest.raises(TeacherError, match="cannot read"):
        teacher_scores(tmp_path / "none.npz", "sts", ["a"])


@pytest.fixture(scope="module")
def runs(tiny_bert_dir, tiny_data_dir, tmp_path_factory):
    """Two tiny runs (seeds 1 and 2) and a factory of argvs on the tiny data."""
    from conftest import DATA_FILES, no_mlm
    root = tmp_path_factory.mktemp("distill")

    def argv(out, *extra):
        a = ["--bert_model", str(tiny_bert_dir), "--out_dir", str(root / out), *no_mlm(root), "--batch_size", "8",
             "--threads", "1", "--eval_batch_size", "16", "--no_predictions", "--epochs", "1"]
        for flag, (name, _) in DATA_FILES.items():
            a += [f"--{flag}", str(tiny_data_dir / name)]
        return a + [str(x) for x in extra]
    for seed in (1, 2):
        assert mc.main(argv(f"s{seed}", "--max_train_examples", "16", "--seed", seed)) == 0
    return root, argv


def test_teacher_out_scores_the_training_sets_as_the_ensembles_mean(runs, capsys):
    root, argv = runs
    files = {}
    for name, members in (("one", ["s1"]), ("two", ["s2"]), ("both", ["s1", "s2"])):
        files[name] = root / f"{name}.npz"
        assert mc.main(argv("unused", "--eval_only", "--checkpoint", *(root / m for m in members),
                            "--teacher_out", files[name])) == 0
    assert "training examples" in capsys.readouterr().out
    loaded = {k: np.load(f) for k, f in files.items()}
    train = mc.load_all(mc.parse_args(argv("unused")))
    for t in TASKS:
        ids = [e.id for e in train[t, "train"]]
        assert loaded["both"][f"{t}_ids"].tolist() == ids  # every training example, in file order
        s = {k: f[f"{t}_scores"] for k, f in loaded.items()}
        np.testing.assert_allclose(s["both"], (s["one"] + s["two"]) / 2, atol=1e-6)
        assert not np.allclose(s["one"], s["two"])  # two models, two opinions
    assert loaded["both"]["sst_scores"].shape == (len(train["sst", "train"]), 5)
    np.testing.assert_allclose(loaded["both"]["sst_scores"].sum(-1), 1, atol=1e-5)
    assert ((loaded["both"]["para_scores"] >= 0) & (loaded["both"]["para_scores"] <= 1)).all()
    assert ((loaded["both"]["sts_scores"] >= 0) & (loaded["both"]["sts_scores"] <= 5)).all()


def losses(run) -> list[float]:
    """Every training loss a run logged (--log_every 1: each step's), in order."""
    return [v for line in (run / "train_log.jsonl").read_text().splitlines()
            for k, v in sorted(json.loads(line).items()) if k.startswith("loss")]


def test_training_on_a_teacher_changes_only_the_targets_and_a_foreign_teacher_is_refused(runs, capsys):
    root, argv = runs
    teacher = root / "teacher.npz"
    assert mc.main(argv("unused", "--eval_only", "--checkpoint", root / "s1", root / "s2",
                        "--teacher_out", teacher, "--max_train_examples", "16")) == 0
    for name, flags in (("plain", ()), ("w0", ("--distill", teacher, "--distill_wt", 0)),
                        ("student", ("--distill", teacher))):
        assert mc.main(argv(name, "--max_train_examples", "16", "--seed", 1, "--log_every", 1, *flags)) == 0
    plain = losses(root / "plain")
    assert len(plain) >= 6
    assert losses(root / "w0") == pytest.approx(plain, rel=1e-4)  # the teacher's share 0: the same steps
    assert losses(root / "student") != pytest.approx(plain, rel=1e-3)
    assert json.loads((root / "student" / "config.json").read_text())["distill"] == str(teacher)
    # more training examples than the teacher scored: one line, exit 2, nothing trained
    capsys.readouterr()
    assert mc.main(argv("foreign", "--max_train_examples", "24", "--distill", teacher)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "no teacher score" in err[-1]
    assert not (root / "foreign").exists()


def test_distill_wt_outside_0_to_1_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        mc.parse_args(["--distill_wt", "1.5"])
    assert e.value.code == 2 and "between 0 and 1" in capsys.readouterr().err


def test_teacher_out_needs_eval_only(runs, capsys):
    root, argv = runs
    assert mc.main(argv("x", "--teacher_out", root / "t.npz")) == 2
    assert "--teacher_out is for an evaluation" in capsys.readouterr().err
