"""checkpoint.py: a saved folder lists its files with their sha256 (manifest.json), and every
reader refuses a file that changed, went missing or appeared after the save; folders saved before
manifests existed still load."""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import checkpoint
from base_bert import CheckpointError
from checkpoint import MANIFEST, read_json, read_tensors, verify_folder, write_folder


def flip_tensor_bytes(file: Path, n: int = 4096):
    """Invert n bytes in the middle of a safetensors file's tensor data (past its JSON header),
    the damage a bad disk or a stray write does: the file still parses."""
    data = bytearray(file.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")  # 8-byte header length, header, then the data
    assert len(data) - start >= 2 * n, "the tensor data is too small to flip in the middle"
    mid = start + (len(data) - start) // 2 - n // 2
    data[mid:mid + n] = bytes(b ^ 0xFF for b in data[mid:mid + n])
    file.write_bytes(bytes(data))


@pytest.fixture
def saved(tmp_path) -> Path:
    """A folder as write_folder saves it: two tensor files, a text file and a copied file."""
    torch.manual_seed(0)
    src = tmp_path / "vocab.txt"
    src.write_text("[PAD]\n[UNK]\nhello\n")
    folder = tmp_path / "best"
    write_folder(folder, {"model.safetensors": {"w": torch.randn(64, 64), "b": torch.randn(64)},
                          "rng.safetensors": {"torch": torch.get_rng_state()}},
                 {"args.json": json.dumps({"lr": 1e-4})}, {"vocab.txt": src})
    return folder


def test_the_manifest_lists_every_file_with_its_sha256_hashed_once_per_save(tmp_path, monkeypatch):
    calls = []
    real = checkpoint.sha256
    monkeypatch.setattr(checkpoint, "sha256", lambda f: calls.append(Path(f).name) or real(f))
    folder = tmp_path / "state"
    write_folder(folder, {"model.safetensors": {"w": torch.ones(3)}}, {"trainer.json": "{}"})
    listed = json.loads((folder / MANIFEST).read_text())["sha256"]
    files = sorted(p.name for p in folder.iterdir() if p.name != MANIFEST)
    assert sorted(listed) == files == ["model.safetensors", "trainer.json"]
    assert all(listed[f] == hashlib.sha256((folder / f).read_bytes()).hexdigest() for f in files)
    assert sorted(calls) == files  # each file hashed once, while saving
    # a second save replaces the manifest with the new files' digests
    write_folder(folder, {"model.safetensors": {"w": torch.zeros(3)}}, {"trainer.json": "{}"})
    relisted = json.loads((folder / MANIFEST).read_text())["sha256"]
    assert relisted["model.safetensors"] != listed["model.safetensors"]
    verify_folder(folder)


def test_flipped_tensor_bytes_are_refused_by_every_reader(saved):
    file = saved / "model.safetensors"
    before = {k: v.clone() for k, v in load_file(str(file)).items()}  # copies: load_file maps the file
    flip_tensor_bytes(file)
    after = load_file(str(file))  # safetensors itself loads the damaged file without a word
    assert not torch.equal(before["w"], after["w"])
    msg = f"{file}: sha256 mismatch: the file changed after it was saved"
    with pytest.raises(CheckpointError) as e:
        read_tensors(file)
    assert str(e.value) == msg
    with pytest.raises(CheckpointError) as e:
        verify_folder(saved)
    assert str(e.value) == msg
    read_tensors(saved / "rng.safetensors")  # the folder's other files still read


def test_an_edited_json_file_is_refused(saved):
    (saved / "args.json").write_text(json.dumps({"lr": 1e-3}))
    with pytest.raises(CheckpointError, match=r"args\.json: sha256 mismatch"):
        read_json(saved / "args.json")


def test_a_missing_listed_file_and_an_unlisted_file_are_refused(saved):
    (saved / "vocab.txt").unlink()
    with pytest.raises(CheckpointError) as e:
        verify_folder(saved)
    assert str(e.value) == f"{saved / 'vocab.txt'}: listed in {saved / MANIFEST} but missing"

    (saved / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\n")  # the same bytes back: whole again
    verify_folder(saved)
    extra = saved / "extra.safetensors"
    save_file({"x": torch.ones(2)}, str(extra))
    for reader in (lambda: verify_folder(saved), lambda: read_tensors(extra)):
        with pytest.raises(CheckpointError) as e:
            reader()
        assert str(e.value) == (f"{extra}: not listed in {saved / MANIFEST}: the file was added "
                                "after the folder was saved")


def test_a_folder_saved_before_manifests_reads_unverified(saved):
    (saved / MANIFEST).unlink()
    verify_folder(saved)
    assert read_json(saved / "args.json") == {"lr": 1e-4}
    assert set(read_tensors(saved / "model.safetensors")) == {"w", "b"}


def test_an_unreadable_manifest_is_refused(saved):
    (saved / MANIFEST).write_text("[1, 2")
    with pytest.raises(CheckpointError, match=rf"{MANIFEST}: not a readable manifest"):
        read_tensors(saved / "model.safetensors")


def test_an_unchanged_file_is_hashed_once_and_a_changed_one_again(saved, monkeypatch):
    old = time.time() - 3600  # saved an hour ago: past the file system clock's tick
    for f in saved.iterdir():
        os.utime(f, (old, old))
    calls = []
    real = checkpoint.sha256
    monkeypatch.setattr(checkpoint, "sha256", lambda f: calls.append(Path(f).name) or real(f))
    verify_folder(saved)
    read_tensors(saved / "model.safetensors")
    read_json(saved / "args.json")
    assert sorted(calls) == ["args.json", "model.safetensors", "rng.safetensors", "vocab.txt"]
    flip_tensor_bytes(saved / "model.safetensors")  # same size, same inode, rewritten in place
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        read_tensors(saved / "model.safetensors")
