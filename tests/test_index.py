"""The FAISS index stage on synthetic clustered vectors written through the store, checked against a
brute-force numpy search written here."""
import argparse
import json

import numpy as np
import pyarrow.compute as pc
import pytest

from hrem.index import VectorSearcher, build_index, choose_factory, load_index, read_info
from hrem.index.sampling import read_sample, sample_positions
from hrem.store import build_table, new_manifest, write_manifest, write_shard

DIM = 32
CENTERS = np.random.default_rng(123).normal(size=(24, DIM))


def clustered(n, seed, shift=0.0):
    """Normalised points around 24 fixed centres; `shift` moves the distribution (text-like queries)."""
    rng = np.random.default_rng(seed)
    x = CENTERS[rng.integers(0, len(CENTERS), n)] + 0.45 * rng.normal(size=(n, DIM)) + shift
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def write_corpus(emb_dir, sizes, fingerprint="fp-A", captions=300):
    """Image shards with ids 7 + 3*i (not row numbers), a 'split' column, and shifted caption queries."""
    manifest = new_manifest(fingerprint, DIM)
    ids, vecs, start = [], [], 0
    for number, size in enumerate(sizes):
        shard_ids = 7 + 3 * np.arange(start, start + size)
        shard_vecs = clustered(size, seed=number)
        table = build_table(shard_ids, [f"{i}.png" for i in shard_ids], shard_vecs,
                            metadata={"split": np.where(shard_ids % 5 == 0, "test", "train")})
        manifest = manifest.with_shard("images", write_shard(emb_dir, "images", number, table))
        ids.append(shard_ids)
        vecs.append(shard_vecs)
        start += size
    if captions:
        queries = clustered(captions, seed=99, shift=0.15)
        table = build_table(10**6 + np.arange(captions), ["a caption"] * captions, queries,
                            image_ids=np.zeros(captions, np.int64))
        manifest = manifest.with_shard("captions", write_shard(emb_dir, "captions", 0, table))
    write_manifest(emb_dir, manifest)
    return np.concatenate(ids), np.concatenate(vecs)


def brute_force(queries, database, ids, k):
    scores = queries @ database.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1), ids[order]


def recall(found, truth):
    return np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    emb = tmp_path_factory.mktemp("emb")
    ids, vecs = write_corpus(emb, [900, 1300, 800])
    return emb, ids, vecs


def test_flat_is_exact_and_returns_parquet_ids(corpus, tmp_path):
    emb, ids, vecs = corpus
    info = build_index(emb, tmp_path, factory="Flat", tune_queries=100)
    assert info.id_map == "IDMap2" and info.ntotal == len(ids) and info.tuning["recall_at_10"] == 1.0
    queries = clustered(20, seed=5, shift=0.15)
    scores, found = VectorSearcher(tmp_path).search(queries, k=10)
    true_scores, true_ids = brute_force(queries, vecs, ids, 10)
    np.testing.assert_array_equal(found, true_ids)
    np.testing.assert_allclose(scores, true_scores, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("factory", ["HNSW32,Flat", "IVF32,Flat", "IVF16,SQ8"])
def test_approximate_index_reaches_target_recall(corpus, tmp_path, factory):
    emb, ids, vecs = corpus
    info = build_index(emb, tmp_path, factory=factory, target_recall=0.9, tune_queries=200)
    assert info.tuning["target_reached"] and info.tuning["recall_at_10"] >= 0.9
    assert info.tuning["query_source"].startswith("captions")
    assert info.search_params and info.tuning["qps_batch"] > 0 and info.tuning["qps_single"] > 0
    queries = clustered(100, seed=6, shift=0.15)  # fresh queries, not the tuning sample
    _, found = VectorSearcher(tmp_path).search(queries, k=10)
    assert set(found.ravel()) <= set(ids.tolist())
    assert recall(found, brute_force(queries, vecs, ids, 10)[1]) >= 0.85


def test_auto_choice_depends_on_n_dim_and_budget():
    gib = 2**30
    assert choose_factory(10_000, 1024, 4 * gib).factory == "Flat"
    assert choose_factory(10_000, 1024, 4 * gib, target_recall=0.999).factory == "Flat"
    assert choose_factory(500_000, 1024, 4 * gib).factory == "HNSW32,Flat"
    mid = choose_factory(1_000_000, 1024, 2 * gib)  # Flat would need 4 GiB: SQ8 codes fit in half of it
    assert mid.factory == "HNSW32,SQ8" and mid.bytes <= 2 * gib and "HNSW32" in mid.reason
    big = choose_factory(50_000_000, 768, 64 * gib)
    assert big.factory == "IVF65536_HNSW32,SQ8" and not big.on_disk
    small_budget = choose_factory(50_000_000, 768, 4 * gib)  # 39 x 65536 x 768-d training rows: 7.3 GiB
    assert small_budget.factory == "IVF8192_HNSW32,PQ64x8np" and "training sample fits" in small_budget.reason
    assert choose_factory(10_000, 64, gib, ivf_only=True).factory == "IVF256,Flat"  # --on-disk needs IVF
    too_big = choose_factory(2_000_000_000, 1024, gib)
    assert too_big.on_disk and too_big.factory.endswith("PQ8x8np")


def test_training_sample_is_uniform_across_shards(tmp_path):
    sizes = [1000, 3000, 500, 5500]
    per_shard = sample_positions(sizes, 2000, seed=0)
    counts = np.array([len(p) for p in per_shard])
    expected = 2000 * np.array(sizes) / sum(sizes)
    assert counts.sum() == 2000 and np.all(np.abs(counts - expected) < 4 * np.sqrt(expected))
    for positions, size in zip(per_shard, sizes):  # spread over the whole shard, not its first rows
        assert positions.min() < size * 0.1 and positions.max() > size * 0.9
    emb = tmp_path / "emb"
    write_corpus(emb, [300, 900, 150], captions=0)
    from hrem.store import load_manifest
    sample_ids, sample = read_sample(emb, "images", load_manifest(emb), 270, seed=3)
    shard_of = np.searchsorted(np.cumsum([300, 900, 150]), (sample_ids - 7) // 3, side="right")
    assert np.bincount(shard_of).tolist() == pytest.approx([60, 180, 30], abs=20)
    assert len(np.unique(sample_ids)) == 270 and sample.shape == (270, DIM)


def test_append_equals_one_shot_build(tmp_path):
    one_shot, appended = tmp_path / "one", tmp_path / "two"
    write_corpus(tmp_path / "emb_all", [400, 500, 300])
    build_index(tmp_path / "emb_all", one_shot, factory="Flat", tune_queries=100)
    write_corpus(tmp_path / "emb_grow", [400, 500])
    first = build_index(tmp_path / "emb_grow", appended, factory="Flat", tune_queries=100)
    assert [s.name for s in first.shards] == ["part-00000.parquet", "part-00001.parquet"]
    write_corpus(tmp_path / "emb_grow", [400, 500, 300])  # the embed job wrote one more shard
    info = build_index(tmp_path / "emb_grow", appended, factory="Flat", append=True, tune_queries=100)
    assert info.ntotal == 1200 and len(info.shards) == 3
    queries = clustered(30, seed=8, shift=0.15)
    expected = VectorSearcher(one_shot).search(queries, 10)
    got = VectorSearcher(appended).search(queries, 10)
    np.testing.assert_array_equal(got[1], expected[1])
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-6)


def test_append_refuses_another_model(tmp_path):
    write_corpus(tmp_path / "emb", [200])
    build_index(tmp_path / "emb", tmp_path / "idx", factory="Flat", tune_queries=50)
    write_corpus(tmp_path / "emb", [200, 100], fingerprint="fp-B")
    with pytest.raises(ValueError, match="fingerprint mismatch: index.json has fp-A, the embeddings manifest has fp-B"):
        build_index(tmp_path / "emb", tmp_path / "idx", factory="Flat", append=True)


def test_on_disk_merge_equals_in_memory(corpus, tmp_path):
    emb = corpus[0]
    memory = build_index(emb, tmp_path / "memory", factory="IVF32,Flat", tune_queries=100)
    disk = build_index(emb, tmp_path / "disk", factory="IVF32,Flat", on_disk=True, shards_per_part=1,
                       tune_queries=100)
    assert disk.on_disk and (tmp_path / "disk" / "index.ivfdata").is_file()
    assert not list((tmp_path / "disk").glob(".staging-*"))
    assert disk.search_params == memory.search_params
    moved = tmp_path / "moved"
    (tmp_path / "disk").rename(moved)  # the header finds index.ivfdata in its own folder
    queries = clustered(40, seed=11, shift=0.15)
    got = VectorSearcher(moved, emb_dir=emb).search(queries, 10)
    expected = VectorSearcher(tmp_path / "memory").search(queries, 10)
    np.testing.assert_array_equal(got[1], expected[1])
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-6)


@pytest.mark.parametrize("factory", ["Flat", "HNSW32,Flat", "IVF32,Flat"])
def test_filter_returns_allowed_ids_matching_brute_force(corpus, tmp_path, factory):
    emb, ids, vecs = corpus
    build_index(emb, tmp_path, factory=factory, tune_queries=100)
    searcher = VectorSearcher(tmp_path)
    queries = clustered(10, seed=12, shift=0.15)
    allowed = ids % 5 == 0  # the 'split' == 'test' rows
    _, found = searcher.search(queries, 10, filter=pc.field("split") == "test")
    assert set(found.ravel()) <= set(ids[allowed].tolist())
    np.testing.assert_array_equal(found, brute_force(queries, vecs[allowed], ids[allowed], 10)[1])
    few = ids[[3, 500, 2999]]  # a tiny allowed set is answered exactly (HNSW alone would miss some)
    _, found = searcher.search(queries, 10, filter=few)
    assert found.shape == (10, 3) and all(set(row) == set(few.tolist()) for row in found)
    searcher.exact_filter_rows = 0  # force the IDSelector path inside the FAISS scan
    _, found = searcher.search(queries, 10, filter=ids[allowed])
    assert set(found.ravel()) <= set(ids[allowed].tolist())
    assert recall(found, brute_force(queries, vecs[allowed], ids[allowed], 10)[1]) >= 0.8


def test_search_without_other_modality_uses_held_out_self_queries(tmp_path):
    write_corpus(tmp_path / "emb", [600], captions=0)
    info = build_index(tmp_path / "emb", tmp_path / "idx", factory="HNSW32,Flat", tune_queries=100)
    assert "held-out self-queries" in info.tuning["query_source"]
    assert info.tuning["recall_at_10"] >= 0.95


def test_loading_checks_fingerprint_and_truncation(corpus, tmp_path):
    emb, _, _ = corpus
    build_index(emb, tmp_path / "idx", factory="Flat", tune_queries=50)
    other = tmp_path / "other_emb"
    write_corpus(other, [100], fingerprint="fp-OTHER", captions=0)
    with pytest.raises(ValueError, match="index.json has fp-A, the embeddings manifest has fp-OTHER"):
        load_index(tmp_path / "idx", emb_dir=other)
    path = tmp_path / "idx" / "index.faiss"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"index.faiss: expected \d+ bytes \(index.json\), found 1000"):
        load_index(tmp_path / "idx")
    info = json.loads((tmp_path / "idx" / "index.json").read_text())
    info["index_bytes"] = 1000  # even when index.json agrees, FAISS's own read error is reported clearly
    info["index_sha256"] = ""  # (an index.json without a checksum, as older builds wrote)
    (tmp_path / "idx" / "index.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match="index.faiss: FAISS cannot read it"):
        load_index(tmp_path / "idx")


def test_duplicate_ids_fail_the_build(tmp_path):
    emb = tmp_path / "emb"
    write_corpus(emb, [100, 100], captions=0)
    from hrem.store import load_manifest
    clash = build_table(np.array([10**7, 7 + 3 * 150]), ["x", "y"], clustered(2, 1))  # id of row 150 (shard 1)
    write_manifest(emb, load_manifest(emb).with_shard("images", write_shard(emb, "images", 2, clash)))
    with pytest.raises(ValueError, match="occurs in both part-00001.parquet and part-00002.parquet"):
        build_index(emb, tmp_path / "idx", factory="Flat")


def test_cuda_without_gpu_is_a_clear_error(corpus, tmp_path):
    import faiss
    if faiss.get_num_gpus() > 0:
        pytest.skip("a GPU is visible")
    with pytest.raises(RuntimeError, match="--device cuda: this FAISS build has no GPU support"):
        build_index(corpus[0], tmp_path, device="cuda")


def test_cli_builds_and_prints_summary(corpus, tmp_path, capsys):
    from hrem.cli import index as cli_index
    parser = argparse.ArgumentParser()
    cli_index.register(parser.add_subparsers())
    args = parser.parse_args(["index", "--emb", str(corpus[0]), "--out", str(tmp_path), "--tune-queries", "100"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "factory    Flat" in out and "recall@10  1.0" in out and "QPS" in out
    assert read_info(tmp_path).auto_reason.startswith("N=3,000 < 50,000")


@pytest.mark.parametrize("factory", ["Flat", "IVF32,Flat"])
def test_memory_mapped_loading_gives_the_same_results(corpus, tmp_path, factory):
    build_index(corpus[0], tmp_path, factory=factory, tune_queries=50)
    queries = clustered(10, seed=13, shift=0.15)
    expected = VectorSearcher(tmp_path).search(queries, 10)
    got = VectorSearcher(tmp_path, mmap=True).search(queries, 10)
    np.testing.assert_array_equal(got[1], expected[1])


def test_store_and_index_do_not_load_torch_at_run_time():
    import subprocess
    import sys
    code = "import sys, hrem.store, hrem.index, hrem.cli.index; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
