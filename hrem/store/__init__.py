"""The embeddings directory: Parquet shards + manifest.json + failures.parquet (pyarrow/numpy only).

Layout (PRODUCT.md "Embeddings directory"):
    EMB/images/part-00000.parquet ...   EMB/captions/part-00000.parquet ...
    EMB/manifest.json                   EMB/failures.parquet

Writing (the embed job):
    manifest = new_manifest(fingerprint, dim=1024, dtype="float32", normalized=True, ...)
    table = build_table(ids, keys, vectors, image_ids=None, metadata={"split": [...]})
    record = write_shard(emb_dir, "images", 0, table, timings={"read": r, "encode": e})
    manifest = manifest.with_shard("images", record); write_manifest(emb_dir, manifest)
    record_failures(emb_dir, "images", record.name, [Failure(source_index, key, reason), ...])
  Resume: skip shard i when `manifest.shard(modality, shard_name(i))` exists and `verify_shard(...)`.

Reading (index, eval, search):
    iter_embeddings(emb_dir, "images", batch_rows=65536) -> (ids, float32 vectors) batches
    read_metadata(emb_dir, "images", ids, columns) -> pyarrow.Table in the order of `ids`
    select_ids(emb_dir, "images", pc.field("split") == "test") -> matching ids
    select_ids(emb_dir, "images", "split = 'test' and width >= 100") -> the same from filter text
    parse_where(text, schema=None) -> pc.Expression (hrem.store.where: the safe filter language)
    count_rows, read_rows_at, find_duplicate_ids, load_manifest, manifest_sha256
"""
from hrem.store.failures import FAILURES, Failure, read_failures, record_failures
from hrem.store.manifest import (
                                 MANIFEST,
                                 Manifest,
                                 ModelRef,
                                 ShardRecord,
                                 load_manifest,
                                 manifest_sha256,
                                 new_manifest,
                                 parse_manifest,
                                 write_manifest,
)
from hrem.store.reader import (
                                 count_rows,
                                 find_duplicate_ids,
                                 iter_embeddings,
                                 iter_shard_batches,
                                 metadata_schema,
                                 read_metadata,
                                 read_rows_at,
                                 select_ids,
)
from hrem.store.schema import EMBEDDING, build_table, check_schema, embeddings_to_numpy
from hrem.store.shards import check_shard, shard_name, shard_path, verify_shard, write_shard
from hrem.store.where import MAX_FILTER_CHARS, FilterError, parse_where

__all__ = [
                                 "EMBEDDING",
                                 "FAILURES",
                                 "MANIFEST",
                                 "MAX_FILTER_CHARS",
                                 "Failure",
                                 "FilterError",
                                 "Manifest",
                                 "ModelRef",
                                 "ShardRecord",
                                 "build_table",
                                 "check_schema",
                                 "check_shard",
                                 "count_rows",
                                 "embeddings_to_numpy",
                                 "find_duplicate_ids",
                                 "iter_embeddings",
                                 "iter_shard_batches",
                                 "load_manifest",
                                 "manifest_sha256",
                                 "metadata_schema",
                                 "new_manifest",
                                 "parse_manifest",
                                 "parse_where",
                                 "read_failures",
                                 "read_metadata",
                                 "read_rows_at",
                                 "record_failures",
                                 "select_ids",
                                 "shard_name",
                                 "shard_path",
                                 "verify_shard",
                                 "write_manifest",
                                 "write_shard",
]
