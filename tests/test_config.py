"""config.BertConfig: reading config.json files and rejecting bad ones with a precise message."""
from __future__ import annotations

import json

import pytest

from config import BertConfig, ConfigError


def _write(tmp_path, d) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(d) if not isinstance(d, str) else d, encoding="utf-8")
    return path


def _valid() -> dict:
    return dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=64, max_position_embeddings=64)


def test_minilm_config(minilm_folder):
    c = BertConfig.from_json(minilm_folder / "config.json")
    assert (c.vocab_size, c.hidden_size, c.num_hidden_layers, c.num_attention_heads) == (30522, 384, 6, 12)
    assert c.intermediate_size == 1536 and c.hidden_act == "gelu"
    assert c.layer_norm_eps == 1e-12 and isinstance(c.hidden_dropout_prob, float)


def test_unknown_keys_ignored_and_defaults_kept(tmp_path):
    c = BertConfig.from_json(_write(tmp_path, {**_valid(), "architectures": ["BertModel"],
                                               "use_cache": True, "model_type": "bert"}))
    assert c.hidden_size == 32 and not hasattr(c, "architectures")
    assert c.type_vocab_size == 2 and c.hidden_dropout_prob == 0.1  # defaults for absent keys


def test_round_trip():
    c = BertConfig(**_valid(), hidden_dropout_prob=0.0)
    assert BertConfig.from_dict(c.to_dict()) == c


@pytest.mark.parametrize("key", BertConfig.REQUIRED)
def test_missing_required_key(tmp_path, key):
    d = _valid()
    del d[key]
    path = _write(tmp_path, d)
    with pytest.raises(ConfigError) as info:
        BertConfig.from_json(path)
    assert str(path) in str(info.value) and f"'{key}'" in str(info.value)


@pytest.mark.parametrize("key,value", [("hidden_size", "32"), ("hidden_size", 32.0),
                                       ("hidden_dropout_prob", "0.1"), ("hidden_act", 1),
                                       ("num_hidden_layers", None), ("vocab_size", [100])])
def test_ill_typed_key(tmp_path, key, value):
    path = _write(tmp_path, {**_valid(), key: value})
    with pytest.raises(ConfigError) as info:
        BertConfig.from_json(path)
    msg = str(info.value)
    assert str(path) in msg and f"'{key}'" in msg and "\n" not in msg


@pytest.mark.parametrize("key", ["num_hidden_layers", "vocab_size"])
def test_bool_for_int_rejected(tmp_path, key):
    path = _write(tmp_path, {**_valid(), key: True})
    with pytest.raises(ConfigError, match=key):
        BertConfig.from_json(path)


def test_int_accepted_for_float(tmp_path):
    c = BertConfig.from_json(_write(tmp_path, {**_valid(), "hidden_dropout_prob": 0}))
    assert c.hidden_dropout_prob == 0.0 and isinstance(c.hidden_dropout_prob, float)
    with pytest.raises(ConfigError, match="hidden_dropout_prob"):
        BertConfig.from_json(_write(tmp_path, {**_valid(), "hidden_dropout_prob": False}))


@pytest.mark.parametrize("text,words", [("{not json", "JSON"), ("[1, 2]", "JSON object")])
def test_unreadable_file(tmp_path, text, words):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=words) as info:
        BertConfig.from_json(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        BertConfig.from_json(tmp_path / "nope.json")


@pytest.mark.parametrize("changes,words", [({"num_attention_heads": 5}, "not a multiple"),
                                           ({"hidden_act": "swish"}, "not supported")])
def test_inconsistent_values(tmp_path, changes, words):
    path = _write(tmp_path, {**_valid(), **changes})
    with pytest.raises(ConfigError, match=words) as info:
        BertConfig.from_json(path)
    assert str(path) in str(info.value)
