"""Checksum stamps (hrem.utils.hash_stamps): a file is hashed once per version, across processes, and any
rewrite -- even one that restores the mtime -- is hashed again."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time

import pytest

from hrem.utils import hash_stamps
from hrem.utils.hash_stamps import STAMPS_FILE, sha256_file_cached, sha256_files_cached


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("HREM_CACHE_DIR", str(folder))
    monkeypatch.setattr(hash_stamps, "_HASHED", {})   # a fresh process's memory
    return folder


def _stamps(cache) -> dict:
    return json.loads((cache / STAMPS_FILE).read_text())


def test_digest_is_the_files_sha256_and_is_stamped(cache, tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 5000)
    assert sha256_file_cached(path) == hashlib.sha256(b"x" * 5000).hexdigest()
    stat = path.stat()
    assert _stamps(cache)[str(path.resolve())] == [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino,
                                                   hashlib.sha256(b"x" * 5000).hexdigest()]


def test_another_process_reuses_the_stamp(cache, tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"abc")
    sha256_file_cached(path)
    stamps = _stamps(cache)
    stamps[str(path.resolve())][4] = "0" * 64     # what the next process finds if it trusts the stamp
    (cache / STAMPS_FILE).write_text(json.dumps(stamps))
    code = f"from hrem.utils.hash_stamps import sha256_file_cached; print(sha256_file_cached({str(path)!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "HREM_CACHE_DIR": str(cache)}).stdout.strip()
    assert out == "0" * 64


def test_rewrite_with_the_old_size_and_mtime_is_hashed_again(cache, tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"aaaa")
    first = sha256_file_cached(path)
    before = path.stat()
    time.sleep(0.05)                                  # past the kernel's coarse timestamp tick
    path.write_bytes(b"bbbb")                         # same size, same inode
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))   # mtime restored; ctime cannot be
    assert path.stat().st_mtime_ns == before.st_mtime_ns and path.stat().st_size == before.st_size
    assert sha256_file_cached(path) == hashlib.sha256(b"bbbb").hexdigest() != first


def test_batch_keeps_order_and_an_unwritable_cache_is_ignored(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("HREM_CACHE_DIR", str(blocker))
    monkeypatch.setattr(hash_stamps, "_HASHED", {})
    paths = []
    for name, data in (("b", b"2"), ("a", b"1")):
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    assert sha256_files_cached(paths) == [hashlib.sha256(b"2").hexdigest(), hashlib.sha256(b"1").hexdigest()]


def test_the_oldest_stamps_are_dropped_beyond_the_cap(cache, tmp_path, monkeypatch):
    monkeypatch.setattr(hash_stamps, "MAX_STAMPS", 2)
    for name in "abc":
        (tmp_path / name).write_bytes(name.encode())
        sha256_file_cached(tmp_path / name)
    assert list(_stamps(cache)) == [str((tmp_path / n).resolve()) for n in "bc"]
