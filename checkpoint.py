"""Saving and restoring runs without pickle: tensors in safetensors files, everything else JSON.

Every save is atomic: files go to a temporary folder, are fsynced, and the folder is renamed
over the old one, so a crash or a full disk mid-write leaves the previous checkpoint intact.
Every saved folder lists its files with their sha256 in manifest.json, and every reader checks
it: a file that changed on disk after the save is refused rather than loaded as if it were good.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from base_bert import CheckpointError

MANIFEST = "manifest.json"  # {"sha256": {file name: hex digest}} of every other file of a saved folder


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
        digests = {}
        for f in sorted(tmp.iterdir()):
            digests[f.name] = sha256(f)
            _fsync(f)
        # Written last, and renamed into place with the files it lists.
        (tmp / MANIFEST).write_text(json.dumps({"sha256": digests}, indent=2) + "\n", encoding="utf-8")
        _fsync(tmp / MANIFEST)
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


# -- reading: every file checked against its folder's manifest -----------------------------------
def sha256(file: Path) -> str:
    with open(file, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def read_manifest(folder: Path) -> dict[str, str] | None:
    """{file name: sha256} of a folder saved by `write_folder`; None for a folder saved before
    manifests existed, which is read unverified."""
    file = Path(folder) / MANIFEST
    if not file.is_file():
        return None
    try:
        listed = json.loads(file.read_text(encoding="utf-8"))["sha256"]
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"{file}: not a readable manifest ({type(e).__name__}: {e})") from None
    if not (isinstance(listed, dict) and all(isinstance(v, str) for v in listed.values())):
        raise CheckpointError(f"{file}: not a readable manifest (expected file names and sha256 digests)")
    return listed


# Files whose sha256 matched, by path: (device, inode, size, mtime, ctime) when they did. A run
# reads one folder through several readers (args, config, weights, vocabulary); an unchanged file
# is hashed once, and any write, rename or replacement of it changes these and hashes it again.
# Only files last written over a second before are remembered: a write within the same tick of
# the file system's clock could leave mtime as it was.
_verified: dict[str, tuple] = {}


def _check(file: Path, listed: dict[str, str]):
    manifest = file.parent / MANIFEST
    try:
        st = os.stat(file)
    except FileNotFoundError:
        where = f"listed in {manifest} but missing" if file.name in listed else "file not found"
        raise CheckpointError(f"{file}: {where}") from None
    if file.name not in listed:
        raise CheckpointError(f"{file}: not listed in {manifest}: the file was added after the folder was saved")
    stamp, key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns), os.path.abspath(file)
    if _verified.get(key) == stamp:
        return
    if sha256(file) != listed[file.name]:
        raise CheckpointError(f"{file}: sha256 mismatch: the file changed after it was saved")
    if time.time_ns() - st.st_mtime_ns > 1_000_000_000:
        _verified[key] = stamp


def verify_file(file: Path):
    """Check one file against the manifest of its folder (nothing to check without one)."""
    file = Path(file)
    listed = read_manifest(file.parent)
    if listed is not None:
        _check(file, listed)


def verify_folder(folder: Path):
    """Check a saved folder against its manifest: every listed file there with its sha256, and no
    other file. Readers call this before reading anything of the folder."""
    folder = Path(folder)
    listed = read_manifest(folder)
    if listed is None:
        return
    for name in sorted({p.name for p in folder.iterdir() if p.name != MANIFEST} | set(listed)):
        _check(folder / name, listed)


def read_tensors(file: Path) -> dict:
    verify_file(file)
    try:
        return load_file(str(file))
    except Exception as e:
        raise CheckpointError(f"{file}: cannot read ({type(e).__name__}: {str(e)[:120]})") from None


def read_json(file: Path) -> dict:
    verify_file(file)
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
