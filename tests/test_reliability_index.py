"""Reliability of index builds (issue "Nothing lost, nothing hung"), each finding reproduced: a rebuild
killed mid-build leaves the previous index loadable with the same results, and its leftovers are removed
by the next build; index.faiss is checksummed (a same-size overwrite is caught); one build per folder."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
from test_index import DIM, clustered, write_corpus

from hrem.index import VectorSearcher, build_index, load_index, read_info
from hrem.utils.locks import OutputLocked


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    emb = tmp_path_factory.mktemp("emb")
    write_corpus(emb, [600, 600])
    index_dir = tmp_path_factory.mktemp("index")
    build_index(emb, index_dir, modality="images", factory="Flat", seed=0)
    return emb, index_dir


def _results(index_dir):
    searcher = VectorSearcher(index_dir)
    return searcher.search(clustered(5, seed=7), 10)


REBUILD = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
from hrem.index import build_index
build_index(sys.argv[1], sys.argv[2], modality="images", factory="HNSW64", seed=0, threads=1)
"""


def test_killed_rebuild_leaves_the_old_index_and_the_next_build_cleans_up(tmp_path):
    emb, index_dir = tmp_path / "emb", tmp_path / "index"
    write_corpus(emb, [30_000, 30_000])
    build_index(emb, index_dir, modality="images", factory="Flat", seed=0)
    before = _results(index_dir)
    proc = subprocess.Popen([sys.executable, "-c", REBUILD, str(emb), str(index_dir)], stderr=subprocess.PIPE,
                            text=True)
    try:
        for line in proc.stderr:                 # "factory HNSW64 for ...": training and adding start now
            if line.startswith("factory"):
                break
        time.sleep(1.0)
        assert proc.poll() is None, "the rebuild finished before it could be killed"
        proc.kill()
    finally:
        proc.wait()
    assert read_info(index_dir).factory == "Flat"
    after = _results(index_dir)
    np.testing.assert_array_equal(after[1], before[1])
    (index_dir / ".staging-1").mkdir()
    (index_dir / ".index.faiss.123.tmp").write_bytes(b"partial")
    build_index(emb, index_dir, modality="images", factory="Flat", seed=0)
    assert sorted(p.name for p in index_dir.iterdir()) == ["index.faiss", "index.json"]


def test_same_size_overwrite_of_index_faiss_is_caught(built, tmp_path):
    emb, source = built
    index_dir = tmp_path / "copy"
    build_index(emb, index_dir, modality="images", factory="Flat", seed=0)
    assert len(read_info(index_dir).index_sha256) == 64
    data = bytearray((index_dir / "index.faiss").read_bytes())
    data[len(data) // 2] ^= 0xFF                                   # one vector component changes
    (index_dir / "index.faiss").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"index\.faiss: expected sha256 .* found .*modified after the build"):
        load_index(index_dir)


def test_overwrite_after_a_verified_load_is_caught_even_with_the_mtime_restored(built, tmp_path):
    # the digest is remembered per file version (hrem.utils.hash_stamps), so a load after an edit must
    # still see it: size, mtime and inode unchanged, only ctime (which programs cannot set) moves
    emb, _ = built
    index_dir = tmp_path / "copy"
    build_index(emb, index_dir, modality="images", factory="Flat", seed=0)
    load_index(index_dir)                                          # verified and remembered
    path = index_dir / "index.faiss"
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    time.sleep(0.05)                                               # past the kernel's coarse timestamp tick
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    with pytest.raises(ValueError, match=r"index\.faiss: expected sha256 .* found .*modified after the build"):
        load_index(index_dir)


HOLD = """
import sys, time
from hrem.utils.locks import output_lock
with output_lock(sys.argv[1], command="hrem index (first build)"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_build_into_one_folder_is_refused(built, tmp_path):
    emb, _ = built
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "index")], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputLocked, match="first build"):
            build_index(emb, tmp_path / "index", modality="images", factory="Flat", seed=0)
    finally:
        holder.kill()
        holder.wait()
    assert DIM > 0 and not (tmp_path / "index" / "index.json").exists()


def _rewrite_first_shard(emb, change):
    import pyarrow.parquet as pq

    path = sorted((emb / "images").glob("part-*.parquet"))[0]
    pq.write_table(change(pq.read_table(path)), path)
    return path


@pytest.mark.parametrize("change", ["rewritten key", "dropped row"])
def test_shards_edited_after_the_build_are_caught_at_search_time(tmp_path, change):
    import pyarrow as pa

    emb = tmp_path / "emb"
    write_corpus(emb, [300, 300])
    build_index(emb, tmp_path / "index", modality="images", factory="Flat", seed=0)
    edits = {"rewritten key": lambda t: t.set_column(t.schema.get_field_index("key"), "key",
                                                     pa.array(["evil.png"] * t.num_rows)),
             "dropped row": lambda t: t.slice(1)}
    path = _rewrite_first_shard(emb, edits[change])
    with pytest.raises(ValueError, match=rf"{path.name}: expected sha256 .* embeddings changed after the build"):
        VectorSearcher(tmp_path / "index")


def test_an_index_inside_or_around_the_embeddings_folder_is_refused(built, tmp_path):
    emb, _ = built
    before = sorted(str(p.relative_to(emb)) for p in emb.rglob("*"))
    for out, relation in ((emb, "is"), (emb / "images", "is inside"), (emb.parent, "contains")):
        with pytest.raises(ValueError, match=f"--out {out}: expected a folder apart from the input, found that it "
                                             f"{relation} the embeddings folder {emb}"):
            build_index(emb, out, modality="images", factory="Flat", seed=0)
    assert sorted(str(p.relative_to(emb)) for p in emb.rglob("*")) == before   # nothing written
