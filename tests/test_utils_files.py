"""Atomic writes: complete or absent, with the permissions of an ordinary file."""
import hashlib
import os

import pytest

from hrem.utils.files import atomic_path, sha256_file, write_json_atomic, write_text_atomic


def test_written_file_has_umask_permissions(tmp_path):
    mask = os.umask(0o022)
    os.umask(mask)
    write_text_atomic(tmp_path / "a.txt", "hello")
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~mask
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "m.json"
    write_json_atomic(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("killed")
    assert target.read_text() == '{\n  "v": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_sha256_file_matches_hashlib(tmp_path):
    data = os.urandom(3 << 20)
    (tmp_path / "b.bin").write_bytes(data)
    assert sha256_file(tmp_path / "b.bin", chunk=1 << 16) == hashlib.sha256(data).hexdigest()


def test_a_writer_that_replaces_the_temporary_still_gets_umask_permissions(tmp_path):
    # safetensors' save_file writes a new file over the temporary path (it used to land as 0600)
    import torch
    from safetensors.torch import save_file

    mask = os.umask(0o022)
    os.umask(mask)
    with atomic_path(tmp_path / "w.safetensors") as tmp:
        tmp.unlink()
        save_file({"x": torch.zeros(2)}, str(tmp))
        os.chmod(tmp, 0o600)
    assert (tmp_path / "w.safetensors").stat().st_mode & 0o777 == 0o666 & ~mask
