"""The driver's view of the embeddings directory: start or resume a manifest, record finished shards.

Order of writes for one shard (each atomic): shard file (by the runner) -> failures.parquet rows of the
shard (replaced, never appended) -> manifest.json. A kill between any two leaves a directory where the
shard is either listed with a matching checksum (skipped on re-run) or not listed (redone, producing
the same bytes), so a resumed run ends equal to an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from hrem.pipeline.embed.config import MODALITIES
from hrem.pipeline.embed.plan import ShardTask
from hrem.pipeline.embed.runner import ShardResult
from hrem.store import (
    FAILURES,
    MANIFEST,
    Manifest,
    load_manifest,
    new_manifest,
    record_failures,
    verify_shard,
    write_manifest,
)

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class JobIdentity:
    """What must match for a re-run to resume an existing directory."""
    fingerprint: str
    card_sha256: str
    weights_sha256: str
    model_name: str
    model_dir: str
    dim: int
    dtype: str
    normalized: bool
    input_fingerprint: str


def _mismatches(manifest: Manifest, ident: JobIdentity) -> list[str]:
    pairs = [("model fingerprint", manifest.model.fingerprint, ident.fingerprint),
             ("input fingerprint", manifest.input_fingerprint, ident.input_fingerprint),
             ("dim", manifest.dim, ident.dim), ("dtype", manifest.dtype, ident.dtype)]
    return [f"{name}: directory has {old!r}, this run has {new!r}" for name, old, new in pairs if old != new]


def clear_outputs(out: Path, manifest: Manifest) -> None:
    """Remove what this tool wrote, as the manifest lists it: its shard files, failures and manifest.
    Never a whole folder: `out/images/` may hold files the manifest does not know (or a user's own). Only the
    two shard folders count: a hand-edited modality like "../x" must not steer a delete outside `out`."""
    for modality in (m for m in manifest.modalities if m in MODALITIES):
        for record in manifest.records(modality):
            (out / modality / record.name).unlink(missing_ok=True)
        folder = out / modality
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    for name in (FAILURES, MANIFEST):
        (out / name).unlink(missing_ok=True)


def remove_stale_temporaries(out: Path) -> int:
    """Delete `.part-*.tmp` / `.manifest.json.*.tmp` files a killed run left behind (never read by anyone)."""
    stale = [p for d in (out, out / "images", out / "captions") if d.is_dir() for p in d.glob(".*.tmp")]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def open_manifest(out: Path, ident: JobIdentity, extra: dict[str, Any], overwrite: bool) -> Manifest:
    """The manifest to continue: the existing one when it matches, else a fresh one written first."""
    remove_stale_temporaries(out)
    if (out / MANIFEST).is_file():
        existing = load_manifest(out)
        problems = _mismatches(existing, ident)
        if not problems:
            return existing
        if not overwrite:
            raise ValueError(f"{out / MANIFEST}: this embeddings directory was made from another input or "
                             f"model ({'; '.join(problems)}); use another --out or --overwrite to replace it")
        log.warning("--overwrite: replacing %s (%s)", out, "; ".join(problems))
        clear_outputs(out, existing)
    elif any(any((out / m).glob("*.parquet")) for m in ("images", "captions")):
        # Without a manifest nothing says these files are ours, so even --overwrite deletes none of them.
        raise ValueError(f"{out}: holds Parquet shards but no {MANIFEST}; expected an empty folder or one written "
                         f"by `hrem embed`; refusing to mix or delete them (--overwrite removes only files a "
                         f"manifest lists): use another --out, or move those files away")
    manifest = new_manifest(ident.fingerprint, ident.dim, ident.dtype, ident.normalized, ident.card_sha256,
                            ident.weights_sha256, ident.model_name, ident.input_fingerprint,
                            extra={**extra, "shard_stats": {}})
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(out, manifest)
    return manifest


def pending_tasks(out: Path, manifest: Manifest, tasks: list[ShardTask]) -> list[ShardTask]:
    """Tasks whose shard is not listed in the manifest or whose file fails its size/checksum test."""
    todo = []
    for task in tasks:
        record = manifest.shard(task.modality, task.name)
        if record is None or not verify_shard(out, task.modality, record):
            todo.append(task)
    return todo


def record_result(out: Path, manifest: Manifest, result: ShardResult) -> Manifest:
    """Failures then manifest, both atomic; returns the new manifest."""
    task = result.task
    record_failures(out, task.modality, task.name, result.failures)
    stats = {m: dict(v) for m, v in manifest.extra.get("shard_stats", {}).items()}
    stats.setdefault(task.modality, {})[task.name] = result.stats
    ordered = {m: dict(sorted(stats[m].items())) for m in sorted(stats)}
    manifest = manifest.with_shard(task.modality, result.record)
    manifest = dataclasses.replace(manifest, extra={**manifest.extra, "shard_stats": ordered})
    write_manifest(out, manifest)
    return manifest
