"""`manifest.json` of an embeddings directory: what produced the vectors and which shards are complete.

The embed job creates a `Manifest` with `new_manifest(...)`, writes each shard with `write_shard`, then
records it with `manifest = manifest.with_shard(modality, record)` + `write_manifest(emb_dir, manifest)`
(atomic), so a killed job leaves a manifest that lists exactly the finished shards. On a re-run it calls
`load_manifest`, checks `manifest.model.fingerprint`, and skips every shard for which
`manifest.shard(modality, name)` exists and `verify_shard(emb_dir, modality, record)` passes.

JSON layout (format_version 1):
    {"format": "hrem-embeddings", "format_version": 1,
     "model": {"fingerprint", "card_sha256", "weights_sha256", "name"},
     "dim": 1024, "dtype": "float32" | "float16", "normalized": true, "input_fingerprint": "...",
     "shards": {"images": [{"name": "part-00000.parquet", "rows", "sha256", "bytes",
                            "timings": {"read", "encode", "write"}}], "captions": [...]},
     "totals": {"images": rows, "captions": rows}, "extra": {...}}
`totals` is derived from `shards` and checked on load.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hrem.config.base import require_format, ConfigError, from_dict, load_json, require
from hrem.utils.files import sha256_file, write_json_atomic

MANIFEST = "manifest.json"
FORMAT = "hrem-embeddings"
FORMAT_VERSION = 1
SHARD_RE = re.compile(r"^part-\d{5,}\.parquet$")


@dataclass(frozen=True)
class ShardRecord:
    """One complete shard file: its name inside `<modality>/`, row count, SHA-256, size and stage timings."""

    name: str
    rows: int
    sha256: str
    bytes: int
    timings: dict[str, float] = field(default_factory=dict)

    def validate(self) -> None:
        require(bool(SHARD_RE.match(self.name)), f"name: expected 'part-NNNNN.parquet', found {self.name!r}")
        require(self.rows >= 0, f"rows: expected >= 0, found {self.rows}")
        require(bool(re.fullmatch(r"[0-9a-f]{64}", self.sha256)),
                f"sha256: expected 64 hex digits, found {self.sha256!r}")


@dataclass(frozen=True)
class ModelRef:
    """Which model produced the vectors. `fingerprint` is what later stages compare."""

    fingerprint: str
    card_sha256: str = ""
    weights_sha256: str = ""
    name: str = ""

    def validate(self) -> None:
        require(bool(self.fingerprint), "fingerprint: expected a non-empty model fingerprint, found ''")


@dataclass(frozen=True)
class Manifest:
    model: ModelRef
    dim: int
    dtype: Literal["float32", "float16"]
    normalized: bool
    input_fingerprint: str = ""
    shards: dict[str, tuple[ShardRecord, ...]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def validate(self) -> None:
        require_format((self.format, self.format_version), (FORMAT, FORMAT_VERSION))
        require(self.dim > 0, f"dim: expected a positive integer, found {self.dim}")

    @property
    def modalities(self) -> list[str]:
        return sorted(self.shards)

    def records(self, modality: str) -> tuple[ShardRecord, ...]:
        return self.shards.get(modality, ())

    def rows(self, modality: str) -> int:
        return sum(record.rows for record in self.records(modality))

    def totals(self) -> dict[str, int]:
        return {modality: self.rows(modality) for modality in self.modalities}

    def shard(self, modality: str, name: str) -> ShardRecord | None:
        return next((r for r in self.records(modality) if r.name == name), None)

    def with_shard(self, modality: str, record: ShardRecord) -> Manifest:
        """A copy with `record` added (or replacing the record of the same name), shards sorted by name."""
        kept = [r for r in self.records(modality) if r.name != record.name]
        shards = dict(self.shards)
        shards[modality] = tuple(sorted([*kept, record], key=lambda r: r.name))
        return dataclasses.replace(self, shards=shards)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format, "format_version": self.format_version,
            "model": dataclasses.asdict(self.model),
            "dim": self.dim, "dtype": self.dtype, "normalized": self.normalized,
            "input_fingerprint": self.input_fingerprint,
            "shards": {m: [dataclasses.asdict(r) for r in self.records(m)] for m in self.modalities},
            "totals": self.totals(),
            "extra": self.extra,
        }


def new_manifest(fingerprint: str, dim: int, dtype: str = "float32", normalized: bool = True,
                 card_sha256: str = "", weights_sha256: str = "", model_name: str = "",
                 input_fingerprint: str = "", extra: dict[str, Any] | None = None) -> Manifest:
    """An empty manifest (no shards yet), validated like a loaded one."""
    data = {"model": {"fingerprint": fingerprint, "card_sha256": card_sha256,
                      "weights_sha256": weights_sha256, "name": model_name},
            "dim": dim, "dtype": dtype, "normalized": normalized,
            "input_fingerprint": input_fingerprint, "extra": extra or {}}
    return from_dict(Manifest, data, where="new_manifest")


def parse_manifest(data: Any, where: str) -> Manifest:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object, found {type(data).__name__}")
    data = dict(data)
    raw_shards = data.pop("shards", {})
    raw_totals = data.pop("totals", None)
    manifest = from_dict(Manifest, data, where=where)
    if not isinstance(raw_shards, dict):
        raise ConfigError(f"{where}.shards: expected an object {{modality: [shard, ...]}}, "
                          f"found {type(raw_shards).__name__}")
    shards = {modality: _parse_records(records, f"{where}.shards.{modality}")
              for modality, records in raw_shards.items()}
    manifest = dataclasses.replace(manifest, shards=shards)
    if raw_totals is not None and raw_totals != manifest.totals():
        raise ConfigError(f"{where}.totals: expected {manifest.totals()} (sum of shard rows), found {raw_totals}")
    return manifest


def _parse_records(records: Any, where: str) -> tuple[ShardRecord, ...]:
    if not isinstance(records, list):
        raise ConfigError(f"{where}: expected a list of shards, found {type(records).__name__}")
    parsed = tuple(from_dict(ShardRecord, r, where=f"{where}[{i}]") for i, r in enumerate(records))
    names = [r.name for r in parsed]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{where}: shard names must be unique, found {duplicates} more than once")
    return parsed


def load_manifest(emb_dir: str | Path) -> Manifest:
    """Read and validate `<emb_dir>/manifest.json`; errors name the file and the field."""
    path = Path(emb_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no manifest; is {emb_dir} an embeddings directory written by "
                                f"`hrem embed`?")
    return parse_manifest(load_json(path), where=str(path))


def write_manifest(emb_dir: str | Path, manifest: Manifest) -> Path:
    path = Path(emb_dir) / MANIFEST
    write_json_atomic(path, manifest.to_json())
    return path


def manifest_sha256(emb_dir: str | Path) -> str:
    """Checksum of the manifest file as it is on disk (recorded by the index so drift is detectable)."""
    return sha256_file(Path(emb_dir) / MANIFEST)


__all__ = [
    "MANIFEST",
    "Manifest",
    "ModelRef",
    "ShardRecord",
    "load_manifest",
    "manifest_sha256",
    "new_manifest",
    "parse_manifest",
    "write_manifest",
]
