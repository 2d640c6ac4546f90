"""pal: Projected Attention Layers (Stickland & Murray, 2019). Per task: V^E (H→d), V^D (d→H)
shared by the layers, one d-dimensional multi-head attention per layer; V^D starts at zero."""
from __future__ import annotations

import re

import pytest
import torch

import multitask_classifier as mc
from pal import PAL

pytestmark = pytest.mark.usefixtures("one_thread")

TASKS = ("sst", "para", "sts")


def formula(H: int, d: int, layers: int, tasks: int = 3) -> int:
    """Per task: encoder H·d + d, decoder d·H + H, per layer a fused QKV 3d·d + 3d."""
    return tasks * ((H * d + d) + (d * H + H) + layers * (3 * d * d + 3 * d))


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("flags,d", [((), 64), (("--pal_dim", "8", "--pal_heads", "2"), 8)])
def test_pal_adds_exactly_the_reported_parameters(tiny_mtbert, tiny_config, flags, d):
    with_pal, _ = tiny_mtbert("--pal", *flags)
    without, _ = tiny_mtbert(*flags)
    cfg = tiny_config()
    want = formula(cfg.hidden_size, d, cfg.num_hidden_layers)
    assert with_pal.pal.num_parameters() == want
    assert n_params(with_pal) - n_params(without) == want
    assert without.pal is None


def test_sides_share_projections_per_task():
    pal = PAL(TASKS, hidden=16, layers=3, dim=8, heads=2)
    sides = pal.sides("para")
    assert len(sides) == 3
    assert all(s.encoder[0] is pal.encoders["para"] and s.decoder[0] is pal.decoders["para"] for s in sides)
    assert [s.attention for s in sides] == list(pal.attentions["para"])  # one attention per layer
    assert sides[0].attention is not sides[1].attention
    assert pal.num_parameters() == formula(16, 8, 3)


def _outputs(model, batches):
    with torch.no_grad():
        return {t: model(t, batches[t])["out"].clone() for t in TASKS}


def test_fresh_pal_leaves_outputs_unchanged(tiny_mtbert, tiny_batch):
    batches = {t: tiny_batch(t, seed=i) for i, t in enumerate(TASKS)}
    with_pal, _ = tiny_mtbert("--pal")
    without, _ = tiny_mtbert()  # same seed: same encoder and heads (PAL is built last)
    a, b = _outputs(with_pal, batches), _outputs(without, batches)
    for t in TASKS:
        assert torch.equal(a[t], b[t]), t
    # The zero decoder still gets a gradient, so the PAL can learn; the encoder's is zero.
    with_pal.zero_grad()
    mc.task_loss(with_pal, "sst", batches["sst"])[0].backward()
    assert with_pal.pal.decoders["sst"].weight.grad.abs().sum() > 0
    assert with_pal.pal.encoders["sst"].weight.grad.abs().sum() == 0
    assert with_pal.pal.decoders["para"].weight.grad is None  # another task's PAL is untouched


def test_pal_changes_outputs_only_for_its_task(tiny_mtbert, tiny_batch):
    batches = {t: tiny_batch(t, seed=i) for i, t in enumerate(TASKS)}
    model, _ = tiny_mtbert("--pal")
    before = _outputs(model, batches)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        dec = model.pal.decoders["sst"]
        dec.weight.copy_(torch.randn(dec.weight.shape, generator=g))
        dec.bias.copy_(torch.randn(dec.bias.shape, generator=g))
    after = _outputs(model, batches)
    assert (after["sst"] - before["sst"]).abs().max() > 1e-3
    assert torch.equal(after["para"], before["para"])
    assert torch.equal(after["sts"], before["sts"])
    # and the same for the STS PAL
    with torch.no_grad():
        model.pal.decoders["sts"].weight.copy_(torch.randn(model.pal.decoders["sts"].weight.shape, generator=g))
    again = _outputs(model, batches)
    assert (again["sts"] - before["sts"]).abs().max() > 1e-4
    assert torch.equal(again["sst"], after["sst"]) and torch.equal(again["para"], before["para"])


def test_pal_end_to_end_reports_parameters(run_argv, capsys, tiny_bert_dir):
    import json
    cfg = json.loads((tiny_bert_dir / "config.json").read_text())
    assert mc.main(run_argv("pal", "--pal", "--epochs", "1")) == 0
    out = capsys.readouterr().out
    m = re.search(r"PAL adds ([\d,]+) parameters", out)
    assert m, out
    assert int(m.group(1).replace(",", "")) == formula(cfg["hidden_size"], 64, cfg["num_hidden_layers"])
