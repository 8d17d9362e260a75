"""Index builds at scale (issue #16), on real Parquet shards written through hrem.store, real FAISS and a real
local Ray cluster: the preflight refusals (too few training rows, --max-memory too small, too little disk)
come before any training and lose nothing of the index already in --out; the RAM / disk arithmetic behind
them against references written here; `auto` under a budget tunes its candidates on a pilot and records
them in index.json; `--engine ray` writes the same bytes as the local on-disk build."""
from __future__ import annotations

import math
import logging
import os
import re
import shutil
from collections import namedtuple

import numpy as np
import pytest

from hrem.cli import main
from hrem.config.index import IndexBuildConfig
from hrem.index import VectorSearcher, build_index, read_info
from hrem.index.choose import estimate_bytes
from hrem.index.pilot import pilot_factory
from hrem.index.preflight import GIB, MERGE_MARGIN, build_ram, check_disk, check_memory, part_rows
from hrem.store import build_table, load_manifest, new_manifest, write_manifest, write_shard

DIM = 64
SMALL = [1000] * 5                                           # 5,000 rows
MID = [3000, 1000, 4000, 2000, 2500, 2500, 3000, 2000]      # 20,000 rows; uneven, so parts differ in size
PILOT_DIM = 40  # the one PQ candidate is PQ8x8np: PQ training is what a pilot spends its time on


def clustered(n, seed, shift=0.0, dim=DIM):
    """Normalised points around 32 fixed centres (test_index.clustered at other dims); `shift`: caption-like."""
    centers = np.random.default_rng(321).normal(size=(32, dim))
    rng = np.random.default_rng(seed)
    x = centers[rng.integers(0, len(centers), n)] + 0.45 * rng.normal(size=(n, dim)) + shift
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def write_corpus(emb_dir, sizes, captions=300, dim=DIM):
    """Image shards with ids 11 + 5*i and a caption shard of shifted queries (what `hrem embed` writes)."""
    manifest = new_manifest("fp-scale", dim)
    start = 0
    for number, size in enumerate(sizes):
        ids = 11 + 5 * np.arange(start, start + size)
        table = build_table(ids, [f"{i}.png" for i in ids], clustered(size, seed=number, dim=dim))
        manifest = manifest.with_shard("images", write_shard(emb_dir, "images", number, table))
        start += size
    table = build_table(10**7 + np.arange(captions), ["a caption"] * captions,
                        clustered(captions, seed=99, shift=0.15, dim=dim), image_ids=np.zeros(captions, np.int64))
    write_manifest(emb_dir, manifest.with_shard("captions", write_shard(emb_dir, "captions", 0, table)))
    return emb_dir


def snapshot(folder):
    """Every file of an index folder (hidden ones too) with its bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def results(index_dir):
    return VectorSearcher(index_dir).search(clustered(20, seed=5, shift=0.15), 10)


Good = namedtuple("Good", "path files results")


@pytest.fixture(autouse=True)
def _restore_logging():
    # `hrem.cli.main` points the root logger at the stderr capsys captures; later tests must not log there
    handlers, level = list(logging.root.handlers), logging.root.level
    yield
    logging.root.handlers[:], logging.root.level = handlers, level


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("small"), SMALL)


@pytest.fixture(scope="module")
def mid(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("mid"), MID)


@pytest.fixture(scope="module")
def good(small, tmp_path_factory):
    """A finished on-disk index (index.faiss + index.ivfdata + index.json): what a refused rebuild must keep."""
    path = tmp_path_factory.mktemp("good") / "index"
    build_index(small, path, factory="IVF16,Flat", on_disk=True, tune_queries=100)
    assert sorted(p.name for p in path.iterdir()) == ["index.faiss", "index.ivfdata", "index.json"]
    return Good(path, snapshot(path), results(path))


@pytest.fixture
def out(good, tmp_path):
    """--out already holding the good index (a copy: the folder is self-contained)."""
    shutil.copytree(good.path, tmp_path / "index")
    return tmp_path / "index"


def assert_untouched(out, good):
    assert snapshot(out) == good.files                   # no byte changed, nothing added (no lock, no staging)
    scores, ids = results(out)
    np.testing.assert_array_equal(ids, good.results[1])
    np.testing.assert_array_equal(scores, good.results[0])


def advised_gib(message):
    return float(re.search(r"raise --max-memory to at least ([0-9.]+) GiB", message).group(1))


# --- preflight refusals through the real CLI / build_index: before training, nothing lost -------------------

def test_too_few_training_rows_is_refused_before_training_and_the_old_index_is_kept(small, good, out, capsys):
    code = main(["index", "--emb", str(small), "--out", str(out), "--factory", "IVF4096,Flat",
                 "--tune-queries", "100"])
    err = capsys.readouterr().err
    assert code == 1
    assert ("hrem index: error: factory 'IVF4096,Flat': 4,096 inverted lists need at least 39 x 4,096 = "
            "159,744 training vectors, the corpus has 5,000; use at most IVF128 or --factory auto") in err
    assert "training IVF4096" not in err and "adding images" not in err     # refused before any k-means
    assert_untouched(out, good)
    info = build_index(small, out.parent / "advised", factory="IVF128,Flat", tune_queries=100)  # the way out
    assert info.ntotal == 5000 and info.training["sample_rows"] == 5000


def test_too_small_max_memory_is_refused_and_the_advised_budget_builds(small, good, out, capsys):
    need = 5000 * (4 * DIM + 48)                           # Flat in an IDMap2: codes + id map, no training
    code = main(["index", "--emb", str(small), "--out", str(out), "--factory", "Flat", "--max-memory", "1M",
                 "--tune-queries", "100"])
    err = capsys.readouterr().err
    assert code == 1
    assert "hrem index: error: --max-memory 1M cannot hold the index: Flat for 5,000 x 64 needs ~" in err
    assert "GiB in RAM while building (index " in err and "--on-disk" not in err  # Flat cannot go on disk
    assert_untouched(out, good)
    advised = advised_gib(err)
    assert advised == 0.01 and advised * GIB >= need       # rounded up, never down to "at least 0.00 GiB"
    assert main(["index", "--emb", str(small), "--out", str(out), "--factory", "Flat",
                 "--max-memory", f"{advised}G", "--tune-queries", "100"]) == 0
    assert read_info(out).factory == "Flat" and not (out / "index.ivfdata").exists()


def test_too_little_disk_is_refused_naming_the_folder_and_sizes(tmp_path):
    n, part = 10**11, 2 * 10**9                            # ~26 TB of IVF64,Flat lists: no test disk has that
    where = tmp_path / "not" / "yet"                       # the check looks at the nearest existing folder
    quantizer = 64 * 4 * DIM
    need = n * (4 * DIM + 8) + part * (4 * DIM + 8) + MERGE_MARGIN
    assert need == (estimate_bytes("IVF64,Flat", n, DIM) - quantizer
                    + estimate_bytes("IVF64,Flat", part, DIM) - quantizer + MERGE_MARGIN)
    with pytest.raises(ValueError) as refused:
        check_disk("IVF64,Flat", n, DIM, part, where)
    message = str(refused.value)
    assert f"the merge needs ~{math.ceil(need / GIB * 100) / 100:.2f} GiB free in {tmp_path.resolve()} " in message
    assert f"(merged lists {n * (4 * DIM + 8) / GIB:.2f} GiB + one part {part * (4 * DIM + 8) / GIB:.2f} GiB)" \
        in message
    found = float(re.search(r"found ([0-9.]+) GiB", message).group(1))
    assert abs(found - shutil.disk_usage(tmp_path).free / GIB) < 1.0
    check_disk("IVF64,Flat", 20_000, DIM, 6000, where)     # a real size passes


def test_disk_refusal_of_a_real_build_keeps_the_old_index(small, good, out, monkeypatch):
    # The one stand-in of this file: a disk with 1 MiB free (the check itself runs unchanged).
    usage = shutil.disk_usage

    def nearly_full(path):
        real = usage(path)
        return real._replace(free=2**20) if os.fspath(path).startswith(os.fspath(out.resolve())) else real

    monkeypatch.setattr(shutil, "disk_usage", nearly_full)
    need = 5000 * (DIM + 8) + 4000 * (DIM + 8) + MERGE_MARGIN   # SQ8 lists + the largest part (4 shards) + margin
    with pytest.raises(ValueError, match=rf"on-disk build of IVF16,SQ8 for 5,000 x 64: the merge needs "
                                         rf"~{math.ceil(need / GIB * 100) / 100:.2f} GiB free in {re.escape(str(out.resolve()))} "
                                         r"\(merged lists .* GiB \+ one part .* GiB\), found 0.00 GiB"):
        build_index(small, out, factory="IVF16,SQ8", on_disk=True, tune_queries=100)
    assert_untouched(out, good)


# --- the arithmetic: build_ram / check_memory / part_rows against references ---------------------------------

@pytest.mark.parametrize("factory, nlist, quantizer_row, code", [
    ("IVF64,Flat", 64, 4 * DIM, 4 * DIM),
    ("IVF64,SQ8", 64, 4 * DIM, DIM),
    ("IVF4096_HNSW32,PQ16x8np", 4096, 4 * DIM + 8 * 32, 16),
])
@pytest.mark.parametrize("part", [10_000, 400_000])       # the sample is the larger / the part is the larger
def test_build_ram_is_quantizer_plus_larger_of_sample_and_part(factory, nlist, quantizer_row, code, part):
    n, train = 5_000_000, 160_000
    quantizer, sample, codes = nlist * quantizer_row, train * DIM * 4, part * (code + 8)
    disk = build_ram(factory, n, DIM, train, part, on_disk=True)
    assert disk == {"quantizer": quantizer, "training sample": sample, "one part": codes,
                    "total": quantizer + max(sample, codes)}
    index = n * (code + 8) + quantizer
    assert build_ram(factory, n, DIM, train, part, on_disk=False) == {
        "index": index, "training sample": sample, "total": max(index, quantizer + sample)}
    total = disk["total"]
    check_memory(factory, n, DIM, train, part, True, total, "exact")          # exactly enough: passes
    with pytest.raises(ValueError, match=r"--max-memory tight cannot hold .* while building on disk "
                                         r"\(quantizer .* GiB, training sample .* GiB, one part .* GiB\)"):
        check_memory(factory, n, DIM, train, part, True, total - 1, "tight")
    with pytest.raises(ValueError, match=r"raise --max-memory to at least .* GiB or build on disk \(--on-disk\)"):
        check_memory(factory, n, DIM, train, part, False, index - 1, "tight")


def test_part_rows_is_the_largest_group_of_consecutive_shards(mid):
    manifest = load_manifest(mid)
    shards = [r.name for r in manifest.records("images")]
    for per_part in (1, 2, 3, 5, 8, 100):
        groups = [sum(MID[i:i + per_part]) for i in range(0, len(MID), per_part)]
        assert part_rows(manifest, "images", shards, per_part) == max(groups)
    assert part_rows(manifest, "images", shards, 2) == 6000 and part_rows(manifest, "images", [], 2) == 0


def test_a_real_build_is_refused_one_byte_below_its_on_disk_peak_and_built_at_it(mid, tmp_path):
    # IVF64,Flat over 20,000 x 64 exceeds the budget, so it goes on disk; shards_per_part=2 -> largest part
    # 3 + 4 = 6,000 rows. The sample is the minimum 39 x 64 rows (the budget caps it below 64 x 64).
    quantizer, sample, part = 64 * 4 * DIM, 39 * 64 * 4 * DIM, 6000 * (4 * DIM + 8)
    peak = quantizer + max(sample, part)
    assert peak < estimate_bytes("IVF64,Flat", 20_000, DIM)
    options = {"factory": "IVF64,Flat", "shards_per_part": 2, "tune_queries": 200}
    with pytest.raises(ValueError, match=rf"--max-memory {peak - 1} cannot hold the index: IVF64,Flat for "
                                         r"20,000 x 64 needs ~.* GiB in RAM while building on disk"):
        build_index(mid, tmp_path / "refused", max_memory=str(peak - 1), **options)
    assert not (tmp_path / "refused" / "index.json").exists()
    info = build_index(mid, tmp_path / "built", max_memory=str(peak), **options)
    assert info.on_disk and info.ntotal == 20_000 and info.training["sample_rows"] == 39 * 64
    # check_disk's "merged lists" figure is the real size of the merged file
    lists = (tmp_path / "built" / "index.ivfdata").stat().st_size
    assert lists == estimate_bytes("IVF64,Flat", 20_000, DIM) - quantizer == 20_000 * (4 * DIM + 8)


# --- auto under a budget: candidates tuned on a pilot, recorded in index.json --------------------------------

def test_pilot_factory_scales_the_list_count():
    assert pilot_factory("IVF128,Flat", 20_000, 8_000) == "IVF64,Flat"        # 51.2 -> nearest power of two
    assert pilot_factory("IVF128,SQ8", 20_000, 20_000) == "IVF128,SQ8"        # the pilot is the corpus
    assert pilot_factory("IVF16384_HNSW32,PQ64x8np", 5_000_000, 100_000) == "IVF256_HNSW32,PQ64x8np"
    assert pilot_factory("HNSW32,Flat", 5_000_000, 100_000) == "HNSW32,Flat"


@pytest.fixture(scope="module")
def pilot_corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("pilot"), MID, dim=PILOT_DIM)


@pytest.fixture
def one_thread():
    # PQ k-means on two busy cores is 3-4x slower than on one (OpenMP spin-waits); restore FAISS's setting
    import faiss
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(previous)


# 3.7 MiB for 20,000 x 40: Flat (4.2 MB) and every HNSW do not fit; IVF128 (the list count whose minimum
# training sample fits a quarter of the budget) with Flat, SQ8 and PQ8x8np codes does -> three candidates.
BUDGET = "3.7M"
CANDIDATES = ["IVF128,Flat", "IVF128,SQ8", "IVF128,PQ8x8np"]


def test_auto_under_a_budget_chooses_by_pilot_and_records_every_candidate(pilot_corpus, tmp_path, one_thread):
    cfg = IndexBuildConfig(factory="auto", max_memory=BUDGET, pilot_rows=8000, tune_queries=300,
                           target_recall=0.9)
    info = build_index(pilot_corpus, tmp_path / "index", cfg)
    on_file = read_info(tmp_path / "index")
    assert on_file.candidates == info.candidates and on_file.factory == info.factory
    candidates = info.candidates
    assert [c["factory"] for c in candidates] == CANDIDATES
    for c in candidates:
        assert c["pilot_factory"] == c["factory"].replace("IVF128", "IVF64")   # lists as full as at 20k
        assert c["pilot_rows"] == 8000 and c["estimated_bytes"] <= cfg.max_memory_bytes
        assert 0.0 < c["recall_at_10"] <= 1.0 and c["qps_batch"] > 0 and "nprobe" in c["params"]
        assert c["target_reached"] == (c["recall_at_10"] >= 0.9)
    chosen = [c for c in candidates if c["verdict"].startswith("chosen")]
    assert len(chosen) == 1 and chosen[0]["factory"] == info.factory
    assert all(c["verdict"].startswith("rejected") for c in candidates if c is not chosen[0])
    reached = [c for c in candidates if c["target_reached"]]
    if reached:                                             # the fastest of those reaching the target
        assert chosen[0]["qps_batch"] == max(c["qps_batch"] for c in reached)
    else:                                                   # else the highest recall
        assert chosen[0]["recall_at_10"] == max(c["recall_at_10"] for c in candidates)
    assert "chosen by recall among 3 candidates" in info.auto_reason and not info.on_disk
    assert list(info.timings) == ["pilot", "sample", "train", "add", "tune"]
    assert all(t >= 0 for t in info.timings.values()) and info.timings["pilot"] > 0
    assert sum(info.timings.values()) <= info.build_seconds + 0.01


def test_cli_auto_under_a_budget_prints_phases_and_candidates(pilot_corpus, tmp_path, capsys, one_thread):
    assert main(["index", "--emb", str(pilot_corpus), "--out", str(tmp_path / "index"), "--max-memory", BUDGET,
                 "--tune-queries", "200", "--target-recall", "0.9"]) == 0
    printed = capsys.readouterr().out
    info = read_info(tmp_path / "index")
    assert [c["factory"] for c in info.candidates] == CANDIDATES
    assert all(c["pilot_factory"] == c["factory"] for c in info.candidates)   # default pilot: the whole corpus
    assert re.search(r"^phases     pilot [0-9.]+ s, sample [0-9.]+ s, train [0-9.]+ s, add [0-9.]+ s, tune",
                     printed, re.MULTILINE)
    lines = [line for line in printed.splitlines() if line.startswith("candidate  ")]
    assert len(lines) == 3 and sum("-- chosen" in line for line in lines) == 1
    assert f"factory    {info.factory}  params" in printed


# --- the Ray engine: on-disk parts as Ray tasks, byte-identical to the local engine --------------------------

@pytest.fixture(scope="module")
def ray_cluster():
    if os.environ.get("CI"):
        import ray  # in CI the `ray` extra is installed: an import error must fail, not skip
    else:
        ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.mark.ray
@pytest.mark.parametrize("factory", ["IVF64,Flat", "IVF32,SQ8"])
def test_ray_engine_writes_the_same_index_as_the_local_on_disk_build(mid, tmp_path, ray_cluster, factory, caplog):
    options = {"factory": factory, "shards_per_part": 3, "tune_queries": 200}   # parts of 8,000 / 7,000 / 5,000 rows
    local = build_index(mid, tmp_path / "local", on_disk=True, **options)
    with caplog.at_level(logging.INFO, logger="hrem.index.ray_parts"):
        remote = build_index(mid, tmp_path / "ray", engine="ray", **options)   # --engine ray implies --on-disk
    assert "ray engine: 3 part task(s) of <= 3 shard(s)" in caplog.text
    assert ray_cluster.is_initialized()                     # the build used the test's cluster, left it up
    for name in ("index.faiss", "index.ivfdata"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
    assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == ["index.faiss", "index.ivfdata", "index.json"]
    assert (remote.engine, local.engine) == ("ray", "local") and remote.on_disk and local.on_disk
    assert remote.index_sha256 == local.index_sha256 and remote.search_params == local.search_params
    assert remote.tuning["recall_at_10"] == local.tuning["recall_at_10"]
    assert list(remote.timings) == ["sample", "train", "add", "merge", "tune"]
    queries = clustered(50, seed=21, shift=0.15)
    got = VectorSearcher(tmp_path / "ray").search(queries, 10)
    expected = VectorSearcher(tmp_path / "local").search(queries, 10)
    np.testing.assert_array_equal(got[1], expected[1])
    np.testing.assert_array_equal(got[0], expected[0])
    assert remote.ntotal == local.ntotal == sum(MID)
