"""bert.BertModel: equivalence with transformers.BertModel on MiniLM, and properties on tiny models."""
from __future__ import annotations

import pytest
import torch

import bert
from bert import BertModel, Layout, attention_groups
from config import BertConfig
from tokenizer import BertTokenizer

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def models(minilm_folder):
    """(ours, Hugging Face's) MiniLM, both in eval mode, fp32."""
    ours = BertModel.from_pretrained(str(minilm_folder), verbose=False).eval()
    ref = transformers.BertModel.from_pretrained(
        str(minilm_folder), attn_implementation="eager", dtype=torch.float32).eval()
    assert ours.load_report == {"missing": [], "unexpected": []}
    return ours, ref


@pytest.fixture(scope="module")
def batches(minilm_folder, sentences, pairs):
    """Two padded batches of 16 single sentences and one padded batch of 16 sentence pairs."""
    assert len(sentences) >= 32
    tok = BertTokenizer.from_pretrained(str(minilm_folder))
    out = [tok(sentences[:16]), tok(sentences[16:32]),
           tok([a for a, _ in pairs], [b for _, b in pairs])]
    for b in out:
        assert not b["attention_mask"].bool().all()  # each batch really is padded
    assert out[2]["token_type_ids"].eq(1).any()
    return out


def test_outputs_match_transformers(models, batches):
    ours, ref = models
    worst_h = worst_p = 0.0
    with torch.no_grad():
        for b in batches:
            mine, theirs = ours(**b), ref(**b)
            mask = b["attention_mask"].bool()
            h = (mine["last_hidden_state"] - theirs.last_hidden_state)[mask].abs().max().item()
            p = (mine["pooler_output"] - theirs.pooler_output).abs().max().item()
            worst_h, worst_p = max(worst_h, h), max(worst_p, p)
    print(f"max abs diff: last_hidden_state {worst_h:.2e}, pooler_output {worst_p:.2e}")
    assert worst_h <= 1e-5
    assert worst_p <= 1e-5


def _loss(out_hidden, out_pooled, mask, weights):
    return (out_hidden * mask[..., None] * weights).sum() + out_pooled.sum()


def test_gradients_match_transformers(models, batches):
    ours, ref = models
    names = {n for n, _ in ref.named_parameters()}
    try:
        for model in (ours, ref):
            model.zero_grad(set_to_none=True)
        gen = torch.Generator().manual_seed(0)
        for b in (batches[0], batches[2]):  # single sentences and pairs: both token types
            mask = b["attention_mask"].float()
            w = torch.randn(*mask.shape, ours.config.hidden_size, generator=gen)
            mine = ours(**b)
            _loss(mine["last_hidden_state"], mine["pooler_output"], mask, w).backward()
            theirs = ref(**b)
            _loss(theirs.last_hidden_state, theirs.pooler_output, mask, w).backward()
        mine = ours.hf_gradients()
        theirs = {n: p.grad for n, p in ref.named_parameters() if p.grad is not None}
        assert set(mine) == names  # every Hugging Face parameter is covered, nothing else
        assert set(theirs) == names
        # Softmax ignores a constant added to every score of a row, so the key bias gradient is
        # zero in exact arithmetic: both sides hold rounding noise, and a ratio of noise means
        # nothing. Check instead that both are negligible next to the same layer's query bias.
        key_bias = {n for n in names if n.endswith("attention.self.key.bias")}
        for n in key_bias:
            scale = theirs[n.replace(".key.", ".query.")].norm()
            assert mine[n].norm() <= 1e-5 * scale and theirs[n].norm() <= 1e-5 * scale, n
        errors = {n: ((mine[n] - theirs[n]).norm() / theirs[n].norm().clamp_min(1e-12)).item()
                  for n in names - key_bias}
        worst = max(errors, key=errors.get)
        print(f"max relative grad error: {errors[worst]:.2e} ({worst})")
        assert errors[worst] <= 1e-4, worst
        assert theirs["embeddings.token_type_embeddings.weight"][1].norm() > 0
    finally:
        for model in (ours, ref):
            model.zero_grad(set_to_none=True)


# ---- tiny random models ------------------------------------------------------------------------

def _padded_batch(vocab=100, lengths=(7, 3, 12, 1), seed=0):
    """Random ids (never the pad id 0) with the given lengths, padded to the longest."""
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    ids = torch.randint(1, vocab, (len(lengths), T), generator=g)
    mask = (torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]).long()
    types = (torch.arange(T)[None, :] >= torch.tensor(lengths)[:, None] // 2).long() * mask
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": types}


@pytest.fixture
def tiny_model(tiny_config):
    torch.manual_seed(0)
    return BertModel(tiny_config()).eval()


def test_tiny_shapes_and_zero_padding(tiny_model):
    b = _padded_batch()
    with torch.no_grad():
        out = tiny_model(**b)
    assert out["last_hidden_state"].shape == (4, 12, 32)
    assert out["pooler_output"].shape == (4, 32)
    pad = ~b["attention_mask"].bool()
    assert out["last_hidden_state"][pad].abs().max() == 0
    assert out["last_hidden_state"][~pad].abs().min() > 0


def test_unpad_and_padded_paths_agree(tiny_model):
    b = _padded_batch()
    padded = BertModel(tiny_model.config, unpad=False).eval()
    padded.load_state_dict(tiny_model.state_dict())
    with torch.no_grad():
        a, p = tiny_model(**b), padded(**b)
    for key in ("last_hidden_state", "pooler_output"):
        assert (a[key] - p[key]).abs().max() <= 1e-5, key
    # The padded path too leaves zeros at padding.
    assert p["last_hidden_state"][~b["attention_mask"].bool()].abs().max() == 0


def test_batch_without_padding(tiny_model):
    b = _padded_batch(lengths=(5, 5, 5))
    assert b["attention_mask"].bool().all()
    padded = BertModel(tiny_model.config, unpad=False).eval()
    padded.load_state_dict(tiny_model.state_dict())
    with torch.no_grad():
        out = tiny_model(**b)
        ref = padded(**b)
        no_types = tiny_model(b["input_ids"], b["attention_mask"])
    assert out["last_hidden_state"].shape == (3, 5, 32)
    assert torch.isfinite(out["last_hidden_state"]).all()
    assert (out["last_hidden_state"] - ref["last_hidden_state"]).abs().max() <= 1e-5
    assert not torch.equal(no_types["last_hidden_state"], out["last_hidden_state"])  # types matter


def test_result_independent_of_batch_and_padding(tiny_model):
    b = _padded_batch(lengths=(7, 3, 12, 1))
    with torch.no_grad():
        full = tiny_model(**b)
        for i, n in enumerate((7, 3, 12, 1)):
            alone = tiny_model(**{k: v[i:i + 1, :n] for k, v in b.items()})
            extra = tiny_model(**{k: torch.nn.functional.pad(v[i:i + 1, :n], (0, 20))
                                  for k, v in b.items()})  # much more padding than the batch
            for other in (alone, extra):
                assert (other["last_hidden_state"][0, :n] - full["last_hidden_state"][i, :n]
                        ).abs().max() <= 1e-5
                assert (other["pooler_output"][0] - full["pooler_output"][i]).abs().max() <= 1e-5
            assert extra["last_hidden_state"][0, n:].abs().max() == 0


def test_dropout_in_train_mode_only(tiny_model):
    b = _padded_batch()
    with torch.no_grad():
        e1, e2 = tiny_model(**b), tiny_model(**b)
        assert torch.equal(e1["last_hidden_state"], e2["last_hidden_state"])
        tiny_model.train()
        t1, t2 = tiny_model(**b), tiny_model(**b)
    assert not torch.allclose(t1["last_hidden_state"], t2["last_hidden_state"])
    assert not torch.allclose(t1["last_hidden_state"], e1["last_hidden_state"])


def test_init_weights(tiny_model):
    emb = tiny_model.embeddings.word_embeddings.weight
    assert emb[0].abs().max() == 0  # the padding row
    assert 0.01 < emb[1:].std().item() < 0.03  # initializer_range 0.02
    assert torch.equal(tiny_model.layers[0].output_norm.weight, torch.ones(32))
    assert tiny_model.layers[0].intermediate.bias.abs().max() == 0


def test_bert_base_parameter_count():
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = BertModel(BertConfig())
    assert sum(p.numel() for p in model.parameters()) == 109_482_240  # HF bert-base-uncased
    assert len(model.layers) == 12
    assert model.layers[0].attention.qkv.weight.shape == (3 * 768, 768)


# -- attention on groups of rows of similar length -----------------------------------------------
def _grid_cost(groups, lengths):
    return sum(len(g) * lengths[g[0]] * (lengths[g[0]] + bert.ROW_COST) + bert.GROUP_COST for g in groups)


def test_attention_groups_are_the_cheapest_cuts_of_the_rows_by_length():
    import itertools
    g = torch.Generator().manual_seed(1)
    for trial in range(30):
        lengths = torch.randint(1, 129, (int(torch.randint(1, 9, (1,), generator=g)),), generator=g).tolist()
        order = sorted(range(len(lengths)), key=lambda b: -lengths[b])
        # every way to cut the length order into runs (2^(B-1) of them)
        best = min(_grid_cost([order[i:j] for i, j in zip((0,) + cuts, cuts + (len(order),))], lengths)
                   for k in range(len(order)) for cuts in itertools.combinations(range(1, len(order)), k))
        groups = attention_groups(lengths)
        if groups is None:
            assert _grid_cost([order], lengths) == best
            continue
        assert sorted(b for grp in groups for b in grp) == list(range(len(lengths)))  # each row once
        assert [b for grp in groups for b in grp] == order  # runs of the length order, longest first
        assert _grid_cost(groups, lengths) == pytest.approx(best)
        assert best < _grid_cost([order], lengths)


def test_batches_of_similar_lengths_keep_one_grid():
    assert attention_groups([40, 38, 41, 35, 40] * 6) is None
    assert attention_groups([128] + [8] * 31) == [[0], list(range(1, 32))]
    mask = (torch.arange(128)[None] < torch.tensor([128, 5, 6, 120, 4])[:, None])
    layout = Layout.of(mask)
    assert [(n, t) for n, t, _ in layout.groups] == [(2, 128), (3, 6)]
    assert layout.groups[1][2].tolist() == [[True] * 6, [True] * 5 + [False], [True] * 4 + [False] * 2]
    assert Layout.of(mask, group=False).groups is None


@pytest.mark.parametrize("train", [False, True])
def test_grouped_attention_computes_what_one_grid_does(tiny_config, train, monkeypatch):
    # Groups change the grids attention runs on, not the function: outputs and gradients agree
    # (without dropout, whose masks are drawn per grid). Groups come cheap here: tiny batches
    # are too short for the real cost model to cut them.
    monkeypatch.setattr(bert, "GROUP_COST", 100)
    torch.manual_seed(0)
    model = BertModel(tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)).train(train)
    b = _padded_batch(lengths=(64, 3, 60, 5, 2, 33))
    assert len(Layout.of(b["attention_mask"]).groups) >= 2
    outs = []
    for grouped in (True, False):
        model.attention_groups = grouped
        model.zero_grad()
        out = model(**b)
        (out["last_hidden_state"].square().sum() + out["pooler_output"].sum()).backward()
        outs.append((out, [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (a, grads_a), (c, grads_c) = outs
    for key in ("last_hidden_state", "pooler_output"):
        assert (a[key] - c[key]).abs().max() <= 1e-5, key
    assert a["last_hidden_state"][~b["attention_mask"].bool()].abs().max() == 0
    assert len(grads_a) == len(grads_c) > 0
    assert all((ga - gc).abs().max() <= 1e-4 * max(1.0, gc.abs().max()) for ga, gc in zip(grads_a, grads_c))
