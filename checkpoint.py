"""Saving and restoring runs without pickle: tensors in safetensors files, everything else JSON.

Every save is atomic: files go to a temporary folder, are fsynced, and the folder is renamed
over the old one, so a crash or a full disk mid-write leaves the previous checkpoint intact.
"""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from base_bert import CheckpointError


def _fsync(path: Path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def recover_folder(folder: Path):
    """Undo a replacement that a crash cut short: `write_folder` moves the old folder to
    NAME.old just before renaming NAME.tmp into place, so a crash between the two renames leaves
    no NAME, only NAME.old, the last complete copy. Readers call this before looking for NAME."""
    folder = Path(folder)
    old = folder.with_name(folder.name + ".old")
    if not folder.exists() and old.is_dir():
        os.replace(old, folder)


def write_folder(folder: Path, tensors: dict[str, dict], texts: dict[str, str],
                 files: dict[str, Path] | None = None):
    """Atomically (re)place `folder` with safetensors files, text files and copied files.
    An OSError (disk full, permission denied) leaves the old folder as it was and names it."""
    folder = Path(folder)
    recover_folder(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for name, state in tensors.items():
            save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(tmp / name))
        for name, text in texts.items():
            (tmp / name).write_text(text, encoding="utf-8")
        for name, src in (files or {}).items():
            shutil.copyfile(src, tmp / name)
        for f in tmp.iterdir():
            _fsync(f)
        old = folder.with_name(folder.name + ".old")
        if folder.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
        _fsync(folder.parent)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if e.filename is None:  # e.g. safetensors' own write error: say what was being written
            e.filename = str(folder)
        raise


def read_tensors(file: Path) -> dict:
    try:
        return load_file(str(file))
    except Exception as e:
        raise CheckpointError(f"{file}: cannot read ({type(e).__name__}: {str(e)[:120]})") from None


def read_json(file: Path) -> dict:
    try:
        return json.loads(Path(file).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{file}: file not found") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{file}: not a readable JSON file ({e})") from None


# -- optimizer and random-number state as tensors + JSON ---------------------------------------
def optimizer_to_parts(optimizer) -> tuple[dict, dict]:
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{idx}.{k}"] = v
            else:
                scalars[f"{idx}.{k}"] = v
    groups = [{k: v for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"scalars": scalars, "param_groups": groups}


def optimizer_from_parts(optimizer, tensors: dict, meta: dict):
    state: dict = {}
    for key, v in list(tensors.items()) + list(meta["scalars"].items()):
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = v
    for g in meta["param_groups"]:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def rng_state() -> tuple[dict, dict]:
    np_state = np.random.get_state()
    tensors = {"torch": torch.get_rng_state(), "numpy": torch.from_numpy(np_state[1].astype(np.int64))}
    if torch.cuda.is_available():
        tensors["cuda"] = torch.cuda.get_rng_state()
    py = random.getstate()
    meta = {"python": [py[0], list(py[1]), py[2]], "numpy": [np_state[0], *np_state[2:]]}
    return tensors, meta


def set_rng_state(tensors: dict, meta: dict):
    torch.set_rng_state(tensors["torch"])
    if "cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["cuda"])
    v, state, gauss = meta["python"]
    random.setstate((v, tuple(state), gauss))
    kind, *rest = meta["numpy"]
    np.random.set_state((kind, tensors["numpy"].numpy().astype(np.uint32), *rest))
