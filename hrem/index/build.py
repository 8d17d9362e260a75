"""`build_index`: embeddings directory -> index directory (index.faiss + index.json), torch-free.

    info = build_index("hrem-out/emb", "hrem-out/index", modality="images", factory="auto",
                       max_memory="4G", target_recall=0.95, seed=0)

Steps: validate the manifest and shard ids (duplicates are an error naming both shards) -> choose the
factory (auto: hrem.index.choose, reason recorded) -> train on a seeded uniform sample over all shards ->
add shards in bounded-memory batches with their Parquet ids (or build parts and merge them on disk) ->
tune nprobe/efSearch on held-out queries of the other modality against exact search -> write index.faiss,
then index.json last. Everything is built in `OUT/.staging-<ns>/`; the previous index stays complete and
loadable until the new one is: only then is index.json (the commit marker) removed, index.faiss (+ its
on-disk lists) renamed into place and the new index.json written, with the SHA-256 of index.faiss that
loading verifies. A kill -9 or a full disk mid-build leaves the old index as it was; the next build
removes the staging leftovers. One build per OUT at a time (`hrem.utils.locks.output_lock`).

`append=True` adds only the manifest's shards that index.json does not list yet, after checking that the
model fingerprint and dim are unchanged and the already-indexed shards still have their checksums.
"""
from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from hrem.config.base import from_dict
from hrem.config.index import IndexBuildConfig
from hrem.index.choose import FactoryChoice, budget_candidates, choose_factory, estimate_bytes, is_ivf_factory
from hrem.index.construct import add_shards, make_index, require_gpu, train_index, train_rows
from hrem.index.exact import exact_search_stream
from hrem.index.fill import fill_index
from hrem.index.info import (
    INDEX_FAISS,
    INDEX_JSON,
    IVF_DATA,
    EmbeddingsRef,
    IndexedShard,
    IndexInfo,
    read_info,
    write_info,
)
from hrem.index.loading import check_against_manifest, check_indexed_shards, load_index
from hrem.index.pilot import choose_by_pilot
from hrem.index.preflight import part_rows, preflight
from hrem.index.sampling import read_sample
from hrem.index.tune import TuneResult, drop_self, tune
from hrem.store import Manifest, find_duplicate_ids, iter_embeddings, load_manifest, manifest_sha256
from hrem.utils.files import sha256_file
from hrem.utils.locks import output_lock
from hrem.utils.paths import refuse_overlap

log = logging.getLogger(__name__)
OTHER_MODALITY = {"images": "captions", "captions": "images"}


def build_index(emb_dir: str | Path, out_dir: str | Path, config: IndexBuildConfig | None = None,
                **options: Any) -> IndexInfo:
    """Build (or with append=True, extend) the index of one modality; options are IndexBuildConfig fields."""
    if config is not None and options:
        raise ValueError(f"build_index: pass either config or keyword options, not both (got {sorted(options)})")
    cfg = config or from_dict(IndexBuildConfig, options, where="build_index")
    if cfg.device == "cuda":
        require_gpu()
    previous_threads = faiss.omp_get_max_threads()
    if cfg.threads:
        faiss.omp_set_num_threads(cfg.threads)
    try:
        return _build_or_append(Path(emb_dir), Path(out_dir), cfg)
    finally:
        faiss.omp_set_num_threads(previous_threads)   # the caller's process keeps its own setting


def _build_or_append(emb_dir: Path, out_dir: Path, cfg: IndexBuildConfig) -> IndexInfo:
    # an index inside the embeddings folder (or around it) would mix its files with the shards that
    # `hrem embed --overwrite` manages and that the index is verified against
    refuse_overlap(out_dir, embeddings=emb_dir)
    manifest = load_manifest(emb_dir)
    if not manifest.records(cfg.modality):
        raise ValueError(f"{Path(emb_dir) / 'manifest.json'}: no '{cfg.modality}' shards to index "
                         f"(modalities present: {manifest.modalities})")
    with output_lock(out_dir, command=f"hrem index ({cfg.modality})"):
        remove_leftovers(out_dir)
        if cfg.append:
            return _append(emb_dir, out_dir, cfg, manifest)
        return _build(emb_dir, out_dir, cfg, manifest)


def remove_leftovers(out_dir: Path) -> int:
    """Delete the `.staging-*` folders and `.*.tmp` files of builds that were killed (nobody reads them)."""
    stale = [p for p in out_dir.glob(".staging-*")] + [p for p in out_dir.glob(".*.tmp")]
    for path in stale:
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    if stale:
        log.info("%s: removed %d leftover(s) of an interrupted build", out_dir, len(stale))
    return len(stale)


def plan_factory(cfg: IndexBuildConfig, n: int, dim: int) -> FactoryChoice:
    """auto -> choose_factory; an explicit string is kept, switched to on-disk when it exceeds the budget.
    --engine ray builds the parts of an on-disk index, so it implies --on-disk."""
    on_disk = cfg.on_disk or cfg.engine == "ray"
    if cfg.factory == "auto":
        choice = choose_factory(n, dim, cfg.max_memory_bytes, cfg.target_recall, ivf_only=on_disk)
        reason = choice.reason + ("; lists kept on disk (--on-disk)" if on_disk else "")
        return dataclasses.replace(choice, on_disk=choice.on_disk or on_disk, reason=reason)
    need = estimate_bytes(cfg.factory, n, dim)
    over = need > cfg.max_memory_bytes and is_ivf_factory(cfg.factory)
    reason = (f"explicit factory; ~{need / 2**30:.2f} GiB exceeds --max-memory {cfg.max_memory}, so its "
              f"inverted lists are built on disk") if over and not on_disk else None
    return FactoryChoice(cfg.factory, need, reason or "explicit factory", on_disk=on_disk or over)


def pilot_choice(choice: FactoryChoice, cfg: IndexBuildConfig, emb_dir: Path, manifest: Manifest,
                 shards: list[str], queries: QuerySet, timings: dict[str, float],
                 ) -> tuple[FactoryChoice, list[dict]]:
    """auto with an IVF choice under the budget: tune every fitting candidate on a pilot, keep the best."""
    n, dim = manifest.rows(cfg.modality), manifest.dim
    fits = choice.bytes <= cfg.max_memory_bytes
    candidates = budget_candidates(n, dim, cfg.max_memory_bytes, ivf_only=choice.on_disk) if fits else []
    if cfg.factory != "auto" or not is_ivf_factory(choice.factory) or len(candidates) < 2 or queries.exclude is not None:
        return choice, []
    start = time.perf_counter()
    best, results = choose_by_pilot(candidates, emb_dir, cfg.modality, manifest, shards, queries.vectors,
                                    queries.source, cfg.metric, cfg.target_recall, cfg.seed, cfg.pilot_rows)
    timings["pilot"] = round(time.perf_counter() - start, 3)
    chosen = next(r for r in results if r["factory"] == best.factory)
    reason = (f"{best.reason}; chosen by recall among {len(results)} candidates that fit, each tuned on a "
              f"{chosen['pilot_rows']:,}-vector pilot ({chosen['pilot_factory']}: recall@10 "
              f"{chosen['recall_at_10']} at {chosen['params']}, {chosen['verdict']})")
    return dataclasses.replace(best, reason=reason + ("; lists kept on disk" if choice.on_disk else ""),
                               on_disk=choice.on_disk), results


def _build(emb_dir: Path, out_dir: Path, cfg: IndexBuildConfig, manifest: Manifest) -> IndexInfo:
    start, timings = time.perf_counter(), {}
    shards = [r.name for r in manifest.records(cfg.modality)]
    find_duplicate_ids(emb_dir, cfg.modality, manifest=manifest)
    n = manifest.rows(cfg.modality)
    queries = tuning_queries(emb_dir, cfg, manifest, shards)
    choice, candidates = pilot_choice(plan_factory(cfg, n, manifest.dim), cfg, emb_dir, manifest, shards,
                                      queries, timings)
    log.info("factory %s for %d x %d (%s)", choice.factory, n, manifest.dim, choice.reason)
    index, id_map = make_index(choice.factory, manifest.dim, cfg.metric)
    cap = min(cfg.max_train_rows, max(1, cfg.max_memory_bytes // 4 // (4 * manifest.dim)))
    preflight(choice.factory, choice.on_disk, n, manifest.dim,
              train_rows(index, choice.factory, n, cfg.train_rows_per_list, cap),
              part_rows(manifest, cfg.modality, shards, cfg.shards_per_part), cfg.max_memory_bytes,
              cfg.max_memory, out_dir)
    training = train_index(index, choice.factory, emb_dir, cfg.modality, manifest, shards,
                           cfg.train_rows_per_list, cap, cfg.seed, cfg.device)
    timings.update(sample=training.get("sample_seconds", 0.0), train=training.get("train_seconds", 0.0))
    staging = out_dir.resolve() / f".staging-{time.time_ns()}"
    try:
        index = fill_index(index, choice.on_disk, cfg, emb_dir, manifest, shards, staging, timings)
        tune_start = time.perf_counter()
        tuning = tune_on_queries(index, emb_dir, cfg, manifest, shards, queries=queries)
        timings["tune"] = round(time.perf_counter() - tune_start, 3)
        info = _info(cfg, choice, id_map, index, emb_dir, manifest, shards, training, tuning)
        info = dataclasses.replace(info, timings=timings, candidates=tuple(candidates), engine=cfg.engine)
        return _commit(out_dir, staging, index, info, start)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _append(emb_dir: Path, out_dir: Path, cfg: IndexBuildConfig, manifest: Manifest) -> IndexInfo:
    start = time.perf_counter()
    old = read_info(out_dir)
    check_against_manifest(old, manifest, where=str(out_dir / INDEX_JSON))
    if old.on_disk or old.modality != cfg.modality or old.metric != cfg.metric:
        raise ValueError(f"{out_dir / INDEX_JSON}: cannot append: the index is on_disk={old.on_disk}, "
                         f"modality={old.modality!r}, metric={old.metric!r}; asked for modality="
                         f"{cfg.modality!r}, metric={cfg.metric!r} (on-disk indices are rebuilt, not appended)")
    check_indexed_shards(old, manifest, out_dir)
    indexed = {s.name for s in old.shards}
    new = [r.name for r in manifest.records(cfg.modality) if r.name not in indexed]
    if not new:
        log.info("append: every shard of %s is already in %s", cfg.modality, out_dir)
        return old
    find_duplicate_ids(emb_dir, cfg.modality, manifest=manifest)
    index, _ = load_index(out_dir)
    add_shards(index, emb_dir, cfg.modality, new, manifest, cfg.batch_rows)
    shards = sorted(indexed | set(new))
    tuning = tune_on_queries(index, emb_dir, cfg, manifest, shards)
    choice = FactoryChoice(old.factory, old.estimated_bytes, old.auto_reason or "explicit factory")
    info = _info(cfg, choice, old.id_map, index, emb_dir, manifest, shards, old.training, tuning)
    info = dataclasses.replace(info, auto_reason=old.auto_reason,
                               estimated_bytes=estimate_bytes(old.factory, index.ntotal, old.dim))
    staging = out_dir / f".staging-{time.time_ns()}"
    try:
        return _commit(out_dir, staging, index, info, start)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@dataclasses.dataclass(frozen=True)
class QuerySet:
    vectors: np.ndarray
    source: str
    exclude: np.ndarray | None  # held-out self-queries: their own ids, removed from both result lists


def tuning_queries(emb_dir: Path, cfg: IndexBuildConfig, manifest: Manifest, shards: list[str]) -> QuerySet:
    """A uniform sample of the other modality (or held-out self-queries when there is none)."""
    other = OTHER_MODALITY.get(cfg.modality)
    seed = cfg.seed + 1  # independent of the training sample
    if other and manifest.rows(other) > 0:
        _, queries = read_sample(emb_dir, other, manifest, cfg.tune_queries, seed)
        return QuerySet(queries, f"{other} (cross-modal queries, uniform sample)", None)
    query_ids, queries = read_sample(emb_dir, cfg.modality, manifest, cfg.tune_queries, seed, shards)
    return QuerySet(queries, f"{cfg.modality} (held-out self-queries, own id removed)", query_ids)


def tune_on_queries(index: faiss.Index, emb_dir: Path, cfg: IndexBuildConfig, manifest: Manifest,
                    shards: list[str], k: int = 10, queries: QuerySet | None = None) -> TuneResult:
    """Tune on the tuning queries vs exact search by a streaming scan over the shards."""
    queries = queries or tuning_queries(emb_dir, cfg, manifest, shards)
    extra = 0 if queries.exclude is None else 1
    batches = iter_embeddings(emb_dir, cfg.modality, cfg.batch_rows, shards, manifest)
    scores, truth = exact_search_stream(queries.vectors, batches, k + extra, cfg.metric)
    truth = drop_self(truth, scores, queries.exclude, k)[1]
    return tune(index, np.ascontiguousarray(queries.vectors), truth, cfg.target_recall, queries.source,
                queries.exclude, k)


def _info(cfg: IndexBuildConfig, choice: FactoryChoice, id_map: str | None, index: faiss.Index, emb_dir: Path,
          manifest: Manifest, shards: list[str], training: dict, tuning: TuneResult) -> IndexInfo:
    records = [manifest.shard(cfg.modality, name) for name in shards]
    return IndexInfo(
        factory=choice.factory, metric=cfg.metric, dim=manifest.dim, ntotal=int(index.ntotal),
        modality=cfg.modality, index_bytes=0, id_map=id_map, on_disk=choice.on_disk,
        embeddings=EmbeddingsRef(path=str(emb_dir.resolve()), manifest_sha256=manifest_sha256(emb_dir),
                                 model_fingerprint=manifest.model.fingerprint, dtype=manifest.dtype,
                                 normalized=manifest.normalized),
        shards=tuple(IndexedShard(r.name, r.sha256, r.rows) for r in records),
        search_params=dict(tuning.params), auto_reason=choice.reason if cfg.factory == "auto" else None,
        estimated_bytes=choice.bytes, training=training, tuning=tuning.to_json(),
        faiss_version=faiss.__version__, device=cfg.device, seed=cfg.seed)


def _clear_commit_marker(out_dir: Path) -> None:
    (out_dir / INDEX_JSON).unlink(missing_ok=True)


def _commit(out_dir: Path, staging: Path, index: faiss.Index, info: IndexInfo, start: float) -> IndexInfo:
    """Write index.faiss into `staging` (beside its on-disk lists, if any), then swap it into `out_dir`:
    remove the old index.json, rename the files, write the new index.json (size + SHA-256) last."""
    staging.mkdir(parents=True, exist_ok=True)
    faiss.write_index(index, str(staging / INDEX_FAISS))
    info = dataclasses.replace(info, index_bytes=(staging / INDEX_FAISS).stat().st_size,
                               index_sha256=sha256_file(staging / INDEX_FAISS),
                               build_seconds=round(time.perf_counter() - start, 3))
    _clear_commit_marker(out_dir)
    if (staging / IVF_DATA).exists():
        (staging / IVF_DATA).replace(out_dir / IVF_DATA)
    elif not info.on_disk:
        (out_dir / IVF_DATA).unlink(missing_ok=True)  # left by an earlier on-disk build in this folder
    (staging / INDEX_FAISS).replace(out_dir / INDEX_FAISS)
    write_info(out_dir, info)
    log.info("wrote %s: %s, ntotal %d, recall@10 %.4f", out_dir, info.factory, info.ntotal,
             info.tuning.get("recall_at_10", float("nan")))
    return info


__all__ = ["QuerySet", "build_index", "plan_factory", "tune_on_queries", "tuning_queries"]
