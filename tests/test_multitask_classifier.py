"""multitask_classifier at the model level: MultitaskBERT outputs for every head and pooling
choice, predictions, the learning-rate schedule, optimizer groups, the training loss with each
extension, and one tiny end-to-end run per extension flag (CLI behaviour: tests/test_cli.py)."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import multitask_classifier as mc
from adversarial import Capture, fgsm_loss
from datasets import load
from evaluation import decide
from heads import pair_features
from losses import mnrl_labels, mnrl_pairs

pytestmark = pytest.mark.usefixtures("one_thread")

TASKS = ("sst", "para", "sts")
H = 32  # tiny_config's hidden size


def batch_for(tiny_batch, args, task, **kw):
    cross = (task == "para" and args.para_head == "cross") or (task == "sts" and args.sts_head == "cross")
    return tiny_batch(task, cross=cross, **kw)


# -- forward -----------------------------------------------------------------------------------
@pytest.mark.parametrize("flags", [
    (), ("--para_head", "cross"), ("--sts_head", "cross"), ("--para_features", "full"),
    ("--pooling", "cls"), ("--pooling", "pooler"),
    ("--para_head", "cross", "--sts_head", "cross", "--pooling", "cls", "--pal"),
], ids=lambda f: " ".join(f) or "default")
def test_forward_shapes(tiny_mtbert, tiny_batch, flags):
    model, args = tiny_mtbert(*flags)
    B = 5
    for task in TASKS:
        batch = batch_for(tiny_batch, args, task, B=B)
        out = model(task, batch)
        assert out["out"].shape == ((B, 5) if task == "sst" else (B,)), task
        assert out["u"].shape == (B, H)
        cross = "b" not in batch
        assert ("v" in out) == (task != "sst" and not cross)
        if "v" in out:
            assert out["v"].shape == (B, H)
        assert torch.isfinite(out["out"]).all()
    # PARA head input: the pooled pair (cross), [u; v], or [u; v; |u − v|; u * v]
    want_in = H if args.para_head == "cross" else (4 * H if args.para_features == "full" else 2 * H)
    assert model.para_head[1].in_features == want_in
    assert (model.sts_head is None) == (args.sts_head != "cross")


def test_pooling_choice_changes_the_embedding(tiny_mtbert, tiny_batch):
    batch = tiny_batch("sst", B=4)
    us = {}
    for how in ("mean", "cls", "pooler"):
        model, _ = tiny_mtbert("--pooling", how)  # same seed: same weights
        us[how] = model("sst", batch)["u"]
    enc = model.bert(**batch["a"])
    m = batch["a"]["attention_mask"].unsqueeze(-1).float()
    assert torch.allclose(us["mean"], (enc["last_hidden_state"] * m).sum(1) / m.sum(1), atol=1e-6)
    assert torch.allclose(us["cls"], enc["last_hidden_state"][:, 0], atol=1e-6)
    assert torch.allclose(us["pooler"], enc["pooler_output"], atol=1e-6)
    assert not torch.allclose(us["mean"], us["cls"])


def test_bi_encoder_pair_matches_separate_encoding(tiny_mtbert, tiny_batch):
    """embed_pair pads both sides to one length and encodes them together; the embeddings are
    those of encoding each side alone, and the STS score is 2.5·(1 + cos(u, v))."""
    model, _ = tiny_mtbert()
    batch = tiny_batch("sts", B=4)
    out = model("sts", batch)
    u_alone = model.embed("sts", batch["a"])
    v_alone = model.embed("sts", batch["b"])
    assert torch.allclose(out["u"], u_alone, atol=1e-5) and torch.allclose(out["v"], v_alone, atol=1e-5)
    want = 2.5 * (1 + torch.nn.functional.cosine_similarity(u_alone, v_alone, dim=-1))
    assert torch.allclose(out["out"], want, atol=1e-5)


def test_para_symmetric_head_ignores_order(tiny_mtbert, tiny_batch):
    """--para_symmetric: the logit is the mean over both orders, so swapping s1 and s2 changes
    nothing; without it the [u; v] features make the head order-dependent."""
    batch = tiny_batch("para", B=4)
    swapped = {**batch, "a": batch["b"], "b": batch["a"]}
    model, _ = tiny_mtbert("--para_head", "concat", "--para_symmetric")
    out, out_swapped = model("para", batch)["out"], model("para", swapped)["out"]
    assert torch.allclose(out, out_swapped, atol=1e-5)
    f = lambda u, v: model.para_head(pair_features(u, v, "full")).squeeze(-1)
    u, v = model.embed("para", batch["a"]), model.embed("para", batch["b"])
    assert torch.allclose(out, (f(u, v) + f(v, u)) / 2, atol=1e-5)
    plain, _ = tiny_mtbert("--para_head", "concat")
    assert not torch.allclose(plain("para", batch)["out"], plain("para", swapped)["out"], atol=1e-4)


def test_cross_encoded_pairs_are_single_sequences(minilm_folder, tiny_mtbert, tiny_batch):
    from tokenizer import BertTokenizer

    tok = BertTokenizer(minilm_folder / "vocab.txt")
    _, args = tiny_mtbert("--para_head", "cross")
    ex = [SimpleNamespace(id="q1", sent1="How do I learn Python?", sent2="What is the best way to learn Python?", label=1)]
    raw = {("para", "train"): ex, ("sts", "train"): [SimpleNamespace(id="s1", sent1="A man.", sent2="A woman.", label=2.0)],
           ("sst", "train"): [SimpleNamespace(id="x", sent1="Fine.", sent2=None, label=3)]}
    data = mc.encode_all(raw, tok, args)
    para = data["para", "train"]
    assert para.b is None  # cross-encoded: one sequence [CLS] a [SEP] b [SEP]
    ids = para.a.ids[0, :int(para.a.lengths[0])].tolist()
    types = para.a.types[0, :len(ids)].tolist()
    assert ids[0] == tok.cls_id and ids[-1] == tok.sep_id and ids.count(tok.sep_id) == 2
    first_sep = ids.index(tok.sep_id)
    assert types == [0] * (first_sep + 1) + [1] * (len(ids) - first_sep - 1)
    assert data["sts", "train"].b is not None  # STS stays bi-encoded (--sts_head cosine)
    assert data["sst", "train"].b is None
    # the model reads the token types: the same ids with other types give another output
    model, _ = tiny_mtbert("--para_head", "cross")
    batch = tiny_batch("para", cross=True)
    flipped = {**batch, "a": {**batch["a"], "token_type_ids": torch.zeros_like(batch["a"]["token_type_ids"])}}
    assert batch["a"]["token_type_ids"].sum() > 0
    assert not torch.allclose(model("para", batch)["out"], model("para", flipped)["out"])


@pytest.mark.parametrize("flags", [(), ("--para_head", "cross", "--sts_head", "cross")])
@torch.no_grad()
def test_scores_and_decisions(tiny_mtbert, tiny_batch, flags):
    model, args = tiny_mtbert(*flags)
    model.eval()
    B = 16
    b = tiny_batch("sst", B=B, seed=3)
    sst = model.scores("sst", b)
    assert sst.shape == (B, 5) and torch.allclose(sst.sum(-1), torch.ones(B))
    # an SST prediction is the argmax of the logits
    assert np.array_equal(decide("sst", sst.numpy()), model("sst", b)["out"].argmax(-1).numpy())
    pb = batch_for(tiny_batch, args, "para", B=B)
    para = decide("para", model.scores("para", pb).numpy())
    assert para.dtype == np.int64 and para.shape == (B,) and set(para.tolist()) <= {0, 1}
    assert np.array_equal(para, (model("para", pb)["out"] > 0).long().numpy())
    sts = decide("sts", model.scores("sts", batch_for(tiny_batch, args, "sts", B=B)).numpy())
    assert sts.dtype == np.float32 and sts.shape == (B,)
    assert ((sts >= 0) & (sts <= 5)).all()


def test_freeze_layers_stops_the_backward_pass(tiny_bert_dir, tiny_batch):
    """--freeze_layers k: the embeddings and the k bottom layers get no gradient, the rest do."""
    args = mc.parse_args(["--bert_model", str(tiny_bert_dir), "--freeze_layers", "1"])
    model = mc.build_model(args)
    mc.task_loss(model, "sst", tiny_batch("sst"))[0].backward()
    for name, p in model.named_parameters():
        if not name.startswith(("bert.", "sst_head.")) or name.startswith("bert.pooler."):
            continue  # parts the SST loss does not reach
        frozen = name.startswith(("bert.embeddings.", "bert.layers.0."))
        assert p.requires_grad == (not frozen) and (p.grad is None) == frozen, name
    args.freeze_layers = len(model.bert.layers) + 1
    with pytest.raises(mc.RunError, match="--freeze_layers"):
        mc.build_model(args)


# -- training loss -------------------------------------------------------------------------------
def _encoder_grad(model):
    g = model.bert.layers[0].attention.qkv.weight.grad
    return 0.0 if g is None else g.abs().sum().item()


@pytest.mark.parametrize("flags", [("--fgsm", "--fgsm_eps", "1e-2"), ("--mnrl",),
                                   ("--smart", "--smart_eps", "1e-2"),
                                   ("--fgsm", "--mnrl", "--smart")])
@pytest.mark.parametrize("task", TASKS)
def test_training_loss_with_extensions(tiny_mtbert, tiny_batch, flags, task):
    # bi-encoded PARA: MNRL's PARA term ranks sentence embeddings (it has none to rank when cross-encoded)
    model, args = tiny_mtbert("--para_head", "concat", *flags)  # eval mode: deterministic passes
    batch = tiny_batch(task, B=6)
    clean, out = mc.task_loss(model, task, batch)
    torch.manual_seed(0)
    loss = mc.training_loss(model, task, batch, args)
    assert loss.dim() == 0 and math.isfinite(loss.item())
    model.zero_grad()
    loss.backward()
    assert _encoder_grad(model) > 0
    if flags == ("--mnrl",):  # exactly the task loss + mnrl_wt · MNRL
        extra = {"sst": lambda: mnrl_labels(out["u"], batch["labels"]),
                 "para": lambda: mnrl_pairs(out["u"], out["v"], batch["labels"].bool()),
                 "sts": lambda: torch.tensor(0.0)}[task]()
        assert loss.item() == pytest.approx(clean.item() + args.mnrl_wt * extra.item(), rel=1e-5)
        if task != "sts":
            assert extra.item() > 0
    if flags == ("--fgsm", "--fgsm_eps", "1e-2"):  # clean + adversarial loss at x + ε·sign(∇x)
        cap = Capture()
        c, _ = mc.task_loss(model, task, batch, cap)
        adv = fgsm_loss(model, task, batch, c, cap, args.fgsm_eps, mc.task_loss)
        assert loss.item() == pytest.approx(c.item() + adv.item(), rel=1e-5)
        assert adv.item() > clean.item()
    if flags == ("--smart", "--smart_eps", "1e-2"):
        assert loss.item() > clean.item()  # a positive penalty


def test_training_loss_smart_in_training(tiny_mtbert, tiny_batch):
    """In training (dropout on), --smart at ε = 0 adds almost nothing, its passes replaying the clean
    pass's masks, and at ε = 0.1 a penalty. --smart_tasks leaves the other tasks' losses plain."""
    for eps in ("0", "0.1"):
        for task in TASKS:
            model, args = tiny_mtbert("--smart", "--smart_eps", eps, "--smart_tasks", "sst", "--rdrop", "0",
                                      train=True)
            batch = tiny_batch(task, cross=task == "para")
            state = torch.get_rng_state()
            loss = mc.training_loss(model, task, batch, args).item()
            torch.set_rng_state(state)
            clean = mc.task_loss(model, task, batch)[0].item()
            if task != "sst":
                assert loss == clean
            elif eps == "0":  # + the divergence at δ = the initial noise alone (σ = 1e-5)
                assert clean <= loss < clean + 1e-6
            else:
                assert loss > clean + 1e-4


def test_sts_cosent_adds_its_ranking_loss_to_the_mse(tiny_mtbert, tiny_batch):
    from losses import cosent_loss
    model, _ = tiny_mtbert("--sts_cosent", "0.5")
    batch = tiny_batch("sts", B=6)
    loss, out = mc.task_loss(model, "sts", batch)
    mse = F.mse_loss(out["out"], batch["labels"])
    ranked = cosent_loss(F.cosine_similarity(out["u"], out["v"], dim=-1), batch["labels"])
    assert ranked.item() > 0 and loss.item() == pytest.approx(mse.item() + 0.5 * ranked.item(), rel=1e-6)
    assert mc.task_loss(tiny_mtbert()[0], "sts", batch)[0].item() == pytest.approx(mse.item(), rel=1e-6)


def test_training_loss_plain_is_task_loss(tiny_mtbert, tiny_batch):
    model, args = tiny_mtbert()
    for task in TASKS:
        batch = tiny_batch(task)
        assert mc.training_loss(model, task, batch, args).item() == pytest.approx(
            mc.task_loss(model, task, batch)[0].item(), rel=1e-6)


# -- tiny end-to-end runs ------------------------------------------------------------------------
def check_predictions(argv, tiny_data_dir):
    """The six prediction files exist, have a header and one row per input example, in the
    input's order, with values of the right kind."""
    from conftest import DATA_FILES

    opts = dict(zip(argv, argv[1:]))  # each option -> the token after it
    for task in TASKS:
        for split in ("dev", "test"):
            path = opts[f"--{task}_{split}_out"]
            name, n = DATA_FILES[f"{task}_{split}"]
            ids = [e.id for e in load(str(tiny_data_dir / name), task, labelled=split == "dev").examples]
            assert len(ids) == n
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
            assert lines[0].startswith("id") and len(lines) == n + 1, path
            rows = [[x.strip() for x in line.split(",")] for line in lines[1:]]
            assert [r[0] for r in rows] == ids
            values = [float(r[1]) for r in rows]
            if task == "sst":
                assert all(v in {0, 1, 2, 3, 4} for v in values)
            elif task == "para":
                assert all(v in {0, 1} for v in values)
            else:
                assert all(0.0 <= v <= 5.0 for v in values)


@pytest.mark.parametrize("flags", [
    ("--fgsm",), ("--mnrl",), ("--pcgrad",), ("--pal",), ("--smart",),
    ("--para_head", "cross", "--sts_head", "cross"), ("--sampling", "annealed"), ("--update", "global"),
    ("--pair_orders", "both", "--sts_head", "cross"), ("--pair_orders", "predict"), ("--ema", "0.9"), ("--attention_dropout", "0"),
    ("--para_cosine", "--pair_orders", "both"), ("--sst_ordinal", "1"), ("--rdrop", "1"), ("--msd", "2"),
], ids=lambda f: " ".join(f))
def test_end_to_end_run_with_extension(run_argv, tiny_data_dir, flags, capsys):
    argv = run_argv("e2e", "--epochs", "1", "--steps_per_epoch", "4", *flags)
    assert mc.main(argv) == 0
    out = capsys.readouterr().out
    assert "step 4 (epoch 1):" in out
    if "--pcgrad" in flags or "--update" in flags:  # every task each step: no sampling to name
        assert "global updates: a batch of every task" in out and "sampling" not in out
    else:
        assert f"local updates, {'annealed' if 'annealed' in flags else 'sqrt'} sampling" in out
    check_predictions(argv, tiny_data_dir)


def test_fit_sts_scale_is_least_squares(tiny_mtbert):
    """--sts_scale fit: a, b are the least-squares line of the labels on the model's cosines."""
    from batching import Encoded, TaskData

    model, _ = tiny_mtbert("--sts_scale", "fit")
    g = torch.Generator().manual_seed(3)
    N, T = 40, 9
    ids = [torch.randint(5, 100, (N, T), generator=g) for _ in range(2)]
    lengths = torch.randint(3, T + 1, (N,), generator=g)
    enc = [Encoded(x, torch.zeros_like(x), lengths) for x in ids]
    labels = torch.rand(N, generator=g) * 5
    data = TaskData("sts", [str(i) for i in range(N)], enc[0], enc[1], labels, 0)
    mc.fit_sts_scale(model, data, batch_size=16, device="cpu", n=30)
    with torch.no_grad():
        batch = data.subset(30).batch(torch.arange(30))
        u, v = model.embed_pair("sts", batch)
        cos = torch.nn.functional.cosine_similarity(u, v, dim=-1).double().numpy()
    a, b = np.polyfit(cos, labels[:30].double().numpy(), 1)
    assert model.sts_affine[0].item() == pytest.approx(a, rel=1e-4, abs=1e-4)
    assert model.sts_affine[1].item() == pytest.approx(b, rel=1e-4, abs=1e-4)
    assert model.sts_affine.requires_grad


def test_label_smoothing_is_the_smoothed_cross_entropy_of_sst_only(tiny_mtbert, tiny_batch):
    model, args = tiny_mtbert("--label_smoothing", "0.1")
    batch = tiny_batch("sst", B=6)
    loss, out = mc.task_loss(model, "sst", batch)
    logp = out["out"].float().log_softmax(-1)
    want = (0.9 * -logp.gather(1, batch["labels"][:, None]).squeeze(1) - 0.1 * logp.mean(-1)).mean()
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    plain, _ = mc.task_loss(tiny_mtbert()[0], "sst", batch)
    assert loss.item() != pytest.approx(plain.item())
    para = tiny_batch("para", cross=True)  # other tasks' losses do not change
    model0, _ = tiny_mtbert()
    assert mc.task_loss(model, "para", para)[0].item() == pytest.approx(mc.task_loss(model0, "para", para)[0].item())


def test_sst_ordinal_adds_the_weighted_ordinal_log_loss_to_sst_only(tiny_mtbert, tiny_batch):
    from losses import ordinal_log_loss

    model, _ = tiny_mtbert("--sst_ordinal", "0.5")
    plain, _ = tiny_mtbert()
    batch = tiny_batch("sst", B=6)
    loss, out = mc.task_loss(model, "sst", batch)
    ce = torch.nn.functional.cross_entropy(out["out"], batch["labels"])
    assert loss.item() == pytest.approx((ce + 0.5 * ordinal_log_loss(out["out"], batch["labels"])).item(), rel=1e-5)
    assert loss.item() > mc.task_loss(plain, "sst", batch)[0].item()
    para = tiny_batch("para", cross=True)
    assert mc.task_loss(model, "para", para)[0].item() == pytest.approx(mc.task_loss(plain, "para", para)[0].item())


def test_rdrop_averages_two_dropout_passes_and_adds_their_consistency_on_its_tasks(tiny_mtbert, tiny_batch):
    model, args = tiny_mtbert("--rdrop", "2", "--hidden_dropout_prob", "0.3")
    batch = tiny_batch("sst", B=6)
    # without dropout both passes agree: the loss is the plain cross-entropy
    assert mc.training_loss(model, "sst", batch, args).item() == pytest.approx(
        mc.task_loss(model, "sst", batch)[0].item(), rel=1e-6)
    model.train()
    torch.manual_seed(5)
    loss = mc.training_loss(model, "sst", batch, args)
    torch.manual_seed(5)  # the same two passes, by hand
    (l1, o1), (l2, o2) = mc.task_loss(model, "sst", batch), mc.task_loss(model, "sst", batch)
    from losses import rdrop_term, symmetric_kl
    kl = symmetric_kl(o1["out"], o2["out"])
    assert kl.item() > 0
    assert loss.item() == pytest.approx((0.5 * (l1 + l2) + 2 * kl).item(), rel=1e-5)
    para = tiny_batch("para", cross=True)  # PARA: one pass, its own loss
    torch.manual_seed(6)
    got = mc.training_loss(model, "para", para, args)
    torch.manual_seed(6)
    assert got.item() == pytest.approx(mc.task_loss(model, "para", para)[0].item(), rel=1e-6)
    # --rdrop_tasks para sts: their steps run the two passes too, each with its own consistency
    model, args = tiny_mtbert("--rdrop", "2", "--hidden_dropout_prob", "0.3", "--rdrop_tasks", "para", "sts", train=True)
    for task, b in (("para", para), ("sts", tiny_batch("sts"))):
        torch.manual_seed(7)
        loss = mc.training_loss(model, task, b, args)
        torch.manual_seed(7)
        (l1, o1), (l2, o2) = mc.task_loss(model, task, b), mc.task_loss(model, task, b)
        term = rdrop_term(task, o1["out"], o2["out"])
        assert term.item() > 0
        assert loss.item() == pytest.approx((0.5 * (l1 + l2) + 2 * term).item(), rel=1e-5)
    torch.manual_seed(8)
    got = mc.training_loss(model, "sst", batch, args)  # not in --rdrop_tasks: one pass
    torch.manual_seed(8)
    assert got.item() == pytest.approx(mc.task_loss(model, "sst", batch)[0].item(), rel=1e-6)


def test_msd_averages_the_losses_of_several_head_dropout_draws_on_one_encoding(tiny_mtbert, tiny_batch):
    model, args = tiny_mtbert("--msd", "3", "--hidden_dropout_prob", "0.3", "--rdrop", "0")
    batch = tiny_batch("sst", B=6)
    model.eval()  # no dropout: one head, the plain logits
    out = model("sst", batch)
    assert out["out"].shape == (6, 5)
    model.train()
    torch.manual_seed(5)
    loss, out = mc.task_loss(model, "sst", batch)
    torch.manual_seed(5)  # by hand: one encoding, three draws of the head
    u = model.embed("sst", batch["a"])
    samples = [model.sst_head(u) for _ in range(3)]
    assert not torch.allclose(samples[0], samples[1])
    want = sum(torch.nn.functional.cross_entropy(s, batch["labels"]) for s in samples) / 3
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    assert torch.allclose(out["out"], torch.stack(samples).mean(0), atol=1e-6)


def test_para_cosine_adds_the_learned_bi_encoder_cosine_to_the_cross_encoded_logit(tiny_bert_dir):
    from tokenizer import BertTokenizer

    tok = BertTokenizer(tiny_bert_dir / "vocab.txt")
    args = mc.parse_args(["--bert_model", str(tiny_bert_dir), "--para_cosine", "--pair_orders", "one"])
    torch.manual_seed(0)
    model = mc.build_model(args).eval()
    assert model.para_cos.tolist() == [10.0, -8.0]
    pairs = [("How do I learn Python?", "What is the best way to learn Python fast?", 1),
             ("Is tea good?", "Why is the sky blue?", 0)]
    ex = [SimpleNamespace(id=f"q{i}", sent1=a, sent2=b, label=y) for i, (a, b, y) in enumerate(pairs)]
    batch = mc.encode_all({("para", "dev"): ex}, tok, args)["para", "dev"].batch(torch.arange(2))
    out = model("para", batch)["out"]
    cos = torch.nn.functional.cosine_similarity(model.embed("para", batch["s1"]), model.embed("para", batch["s2"]))
    want = model.para_head(model.embed("para", batch["a"])).squeeze(-1) + 10.0 * cos - 8.0
    assert torch.allclose(out, want, atol=1e-5)
    torch.nn.functional.binary_cross_entropy_with_logits(out, batch["labels"].float()).backward()
    assert model.para_cos.grad.abs().sum() > 0  # learned, as a head parameter


# -- --pair_orders both and --attention_dropout ----------------------------------------------------
def test_both_pair_orders_encode_swapped_pairs_and_predict_symmetrically(tiny_bert_dir):
    """`b` holds "[CLS] s2 [SEP] s1 [SEP]"; evaluation averages the head over both orders, so
    swapping s1 and s2 in the data leaves every score as it was; training reads one order."""
    from tokenizer import BertTokenizer

    tok = BertTokenizer(tiny_bert_dir / "vocab.txt")
    flags = ("--bert_model", str(tiny_bert_dir), "--sts_head", "cross")
    args = mc.parse_args([*flags, "--pair_orders", "both"])
    torch.manual_seed(0)
    model = mc.build_model(args).eval()
    pairs = [("How do I learn Python?", "What is the best way to learn Python fast?", 1),
             ("Is tea good?", "Why is the sky blue?", 0), ("A man sings.", "A man is singing a song.", 1)]
    ex = lambda swap: [SimpleNamespace(id=f"q{i}", sent1=b if swap else a, sent2=a if swap else b, label=y)
                       for i, (a, b, y) in enumerate(pairs)]
    data = {s: mc.encode_all({("para", "dev"): ex(s), ("sts", "dev"): ex(s)}, tok, args) for s in (0, 1)}
    para = data[0]["para", "dev"]
    n = int(para.b.lengths[0])
    assert para.b.ids[0, :n].tolist() == tok.encode(["What is the best way to learn Python fast?"],
                                                    ["How do I learn Python?"])[0][0]
    for task in ("para", "sts"):
        batches = [data[s][task, "dev"].batch(torch.arange(3)) for s in (0, 1)]
        with torch.no_grad():
            scores = [model.scores(task, b) for b in batches]
            assert torch.allclose(scores[0], scores[1], atol=1e-5), task
            head = model.para_head if task == "para" else model.sts_head
            one = [head(model.embed(task, batches[0][k])).squeeze(-1) for k in ("a", "b")]
            want = (one[0] + one[1]) / 2
            assert torch.allclose(model(task, batches[0])["out"],
                                  want if task == "para" else 5 * torch.sigmoid(want), atol=1e-5)
    plain_args = mc.parse_args([*flags, "--pair_orders", "one"])
    assert mc.encode_all({("para", "dev"): ex(0)}, tok, plain_args)["para", "dev"].b is None
    model.train()  # training: one order per pair, at random (dropout off, to compare outputs)
    model.bert.eval(), model.para_head.eval()
    torch.manual_seed(1)
    batch = data[0]["para", "dev"].batch(torch.arange(3))
    with torch.no_grad():
        out = model("para", batch)["out"]
        heads = torch.stack([model.para_head(model.embed("para", batch[k])).squeeze(-1) for k in ("a", "b")])
    assert ((heads - out).abs().min(0).values < 1e-5).all()
    assert not torch.allclose(heads[0], heads[1], atol=1e-4)  # the orders do differ


def test_attention_dropout_overrides_the_checkpoint(tiny_bert_dir):
    from config import BertConfig

    saved = BertConfig.from_json(tiny_bert_dir / "config.json").attention_probs_dropout_prob
    for flags, want in (((), saved), (("--attention_dropout", "0"), 0.0), (("--attention_dropout", "0.3"), 0.3)):
        model = mc.build_model(mc.parse_args(["--bert_model", str(tiny_bert_dir), *flags]))
        assert model.bert.config.attention_probs_dropout_prob == want
        assert all(layer.attention.dropout_p == want for layer in model.bert.layers)


def test_attention_groups_flag_reaches_the_encoder(tiny_bert_dir):
    for flags, want in (((), True), (("--no-attention_groups",), False)):
        model = mc.build_model(mc.parse_args(["--bert_model", str(tiny_bert_dir), *flags]))
        assert model.bert.attention_groups is want


def test_pair_orders_predict_swaps_pairs_for_evaluation_only(tiny_bert_dir):
    # Training data as --pair_orders one encodes it (so the same run trains the same model);
    # evaluation splits carry the swapped order, which cross_encode averages (tested above).
    from tokenizer import BertTokenizer

    tok = BertTokenizer(tiny_bert_dir / "vocab.txt")
    ex = [SimpleNamespace(id="q0", sent1="Is tea good?", sent2="Is green tea healthy?", label=1)]
    raw = {("para", split): ex for split in ("train", "dev", "test")}
    one, predict = (mc.encode_all(raw, tok, mc.parse_args(["--bert_model", str(tiny_bert_dir), *f]))
                    for f in (("--pair_orders", "one"), ()))  # predict: the default
    assert predict["para", "train"].b is None
    assert torch.equal(predict["para", "train"].a.ids, one["para", "train"].a.ids)
    for split in ("dev", "test"):
        assert one["para", split].b is None
        b = predict["para", split].b
        assert b.ids[0, :int(b.lengths[0])].tolist() == tok.encode(["Is green tea healthy?"], ["Is tea good?"])[0][0]
