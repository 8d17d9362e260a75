"""The embeddings store: Parquet shards, manifest, failures, bounded-memory reading (synthetic data)."""
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from hrem.config import ConfigError
from hrem.store import (
    Failure,
    build_table,
    check_shard,
    count_rows,
    find_duplicate_ids,
    iter_embeddings,
    iter_shard_batches,
    load_manifest,
    new_manifest,
    read_failures,
    read_metadata,
    read_rows_at,
    record_failures,
    select_ids,
    shard_name,
    verify_shard,
    write_manifest,
    write_shard,
)

DIM = 8


def vectors(n, seed, dim=DIM):
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def write_images(emb_dir, sizes, dtype="float32", first_id=100):
    """Shards of images with ids first_id, first_id + 3, ... and a 'split' metadata column."""
    manifest = new_manifest("fp-test", DIM, dtype=dtype, card_sha256="c" * 64, weights_sha256="w" * 64)
    all_ids, all_vecs, start = [], [], 0
    for number, size in enumerate(sizes):
        ids = first_id + 3 * np.arange(start, start + size)
        vecs = vectors(size, seed=number)
        table = build_table(ids, [f"img/{i}.png" for i in ids], vecs, dtype=dtype,
                            metadata={"split": ["test" if i % 2 else "train" for i in ids]})
        record = write_shard(emb_dir, "images", number, table, timings={"read": 0.1, "encode": 0.2})
        manifest = manifest.with_shard("images", record)
        write_manifest(emb_dir, manifest)
        all_ids.append(ids)
        all_vecs.append(vecs)
        start += size
    return manifest, np.concatenate(all_ids), np.concatenate(all_vecs)


def test_round_trip_ids_vectors_metadata(tmp_path):
    manifest, ids, vecs = write_images(tmp_path, [50, 70, 30])
    got_ids, got = zip(*iter_embeddings(tmp_path, "images"))
    np.testing.assert_array_equal(np.concatenate(got_ids), ids)
    np.testing.assert_array_equal(np.concatenate(got), vecs)
    assert (tmp_path / "images" / "part-00002.parquet").is_file()
    loaded = load_manifest(tmp_path)
    assert loaded == manifest
    assert loaded.totals() == {"images": 150} and count_rows(tmp_path, "images") == 150
    assert loaded.records("images")[0].timings.keys() == {"read", "encode", "write"}
    schema = pq.read_schema(tmp_path / "images" / "part-00000.parquet")
    assert schema.names == ["id", "key", "split", "embedding"]
    assert schema.field("embedding").type == pa.list_(pa.float32(), DIM)


def test_float16_and_caption_image_ids(tmp_path):
    vecs = vectors(20, 1)
    table = build_table(np.arange(20), ["a caption"] * 20, vecs, image_ids=np.arange(20) // 5, dtype="float16")
    record = write_shard(tmp_path, "captions", 0, table)
    write_manifest(tmp_path, new_manifest("fp", DIM, dtype="float16").with_shard("captions", record))
    (_, got), = iter_embeddings(tmp_path, "captions")
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, vecs, atol=1e-3)
    rows = read_metadata(tmp_path, "captions", [7, 2])
    assert rows.column("image_id").to_pylist() == [1, 0]


def test_same_input_gives_same_bytes_and_checksum(tmp_path):
    records = []
    for folder in ("a", "b", "a"):  # the second "a" is a re-run over an existing shard
        records.append(write_images(tmp_path / folder, [40, 40])[0].records("images"))
    for first, second in zip(records[0], records[1]):
        assert (first.sha256, first.bytes) == (second.sha256, second.bytes)
    assert [r.sha256 for r in records[0]] == [r.sha256 for r in records[2]]
    assert (tmp_path / "a" / "images" / "part-00001.parquet").read_bytes() == \
        (tmp_path / "b" / "images" / "part-00001.parquet").read_bytes()


def test_verify_shard_detects_changed_bytes(tmp_path):
    manifest, _, _ = write_images(tmp_path, [30])
    record = manifest.records("images")[0]
    assert verify_shard(tmp_path, "images", record)
    path = tmp_path / "images" / record.name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert not verify_shard(tmp_path, "images", record)
    with pytest.raises(ValueError, match="part-00000.parquet: expected sha256"):
        check_shard(tmp_path, "images", record)


def test_no_temporary_files_are_left(tmp_path):
    write_images(tmp_path, [10, 10])
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == [shard_name(0), shard_name(1)]
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("edit, field", [
    (lambda m: m.pop("dim"), "dim"),
    (lambda m: m.update(dtype="int8"), "dtype"),
    (lambda m: m.update(totals={"images": 1}), "totals"),
    (lambda m: m["shards"]["images"][0].update(sha256="xyz"), "shards.images[0]: sha256"),
    (lambda m: m["shards"]["images"].append(dict(m["shards"]["images"][0])), "shards.images"),
    (lambda m: m.update(format_version=7), "format_version"),
])
def test_manifest_validation_names_file_and_field(tmp_path, edit, field):
    write_images(tmp_path, [10])
    path = tmp_path / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as info:
        load_manifest(tmp_path)
    assert str(path) in str(info.value) and field in str(info.value)


def test_shard_that_disagrees_with_manifest_is_named(tmp_path):
    write_images(tmp_path, [10])
    wrong = build_table(np.arange(10), ["k"] * 10, vectors(10, 0, dim=DIM + 1))
    write_shard(tmp_path, "images", 0, wrong)  # replaced behind the manifest's back
    with pytest.raises(ValueError, match=r"part-00000.parquet: column 'embedding': expected dim 8"):
        list(iter_embeddings(tmp_path, "images"))


def test_iteration_is_bounded_by_batch_rows(tmp_path):
    _, ids, vecs = write_images(tmp_path, [250, 120, 33])
    batches = list(iter_shard_batches(tmp_path, "images", batch_rows=64))
    assert max(len(b[1]) for b in batches) <= 64
    assert batches[0][0] == "part-00000.parquet" and batches[-1][0] == "part-00002.parquet"
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), ids)
    np.testing.assert_array_equal(np.concatenate([b[2] for b in batches]), vecs)


def test_read_rows_at_and_metadata(tmp_path):
    _, ids, vecs = write_images(tmp_path, [100, 100])
    got_ids, got = read_rows_at(tmp_path, "images", "part-00001.parquet", np.array([99, 0, 42]))
    np.testing.assert_array_equal(got_ids, ids[[100, 142, 199]])
    np.testing.assert_array_equal(got, vecs[[100, 142, 199]])
    rows = read_metadata(tmp_path, "images", [ids[150], ids[3]], columns=["key"])
    assert rows.column("key").to_pylist() == [f"img/{ids[150]}.png", f"img/{ids[3]}.png"]
    with pytest.raises(KeyError, match="ids \\[5\\] not found"):
        read_metadata(tmp_path, "images", [5])
    test_ids = select_ids(tmp_path, "images", pc.field("split") == "test")
    np.testing.assert_array_equal(test_ids, ids[ids % 2 == 1])


def test_duplicate_ids_name_both_shards(tmp_path):
    manifest, _, _ = write_images(tmp_path, [20])
    clash = build_table(np.array([1000, 103]), ["x", "y"], vectors(2, 5))  # 103 is in shard 0
    manifest = manifest.with_shard("images", write_shard(tmp_path, "images", 1, clash))
    write_manifest(tmp_path, manifest)
    with pytest.raises(ValueError, match="id 103 occurs in both part-00000.parquet and part-00001.parquet"):
        find_duplicate_ids(tmp_path, "images")


def test_failures_are_recorded_per_shard_without_duplicates(tmp_path):
    assert read_failures(tmp_path).num_rows == 0
    record_failures(tmp_path, "images", "part-00000.parquet", [Failure(3, "a.png", "truncated JPEG")])
    record_failures(tmp_path, "images", "part-00001.parquet", [Failure(9, "b.png", "not an image")])
    # re-running shard 0 replaces its rows
    total = record_failures(tmp_path, "images", "part-00000.parquet",
                            [Failure(3, "a.png", "truncated JPEG"), Failure(4, "c.png", "empty file")])
    table = read_failures(tmp_path)
    assert total == 3 and table.column("source_index").to_pylist() == [3, 4, 9]
    assert table.column("reason").to_pylist()[1] == "empty file"


def test_build_table_errors_name_the_column():
    with pytest.raises(ValueError, match="keys: expected 3 values"):
        build_table(np.arange(3), ["a"], vectors(3, 0))
    with pytest.raises(ValueError, match="metadata column 'id': the name is reserved"):
        build_table(np.arange(3), ["a"] * 3, vectors(3, 0), metadata={"id": [1, 2, 3]})
    with pytest.raises(ValueError, match="id: expected integers"):
        build_table(np.array([0.5, 1, 2]), ["a"] * 3, vectors(3, 0))
