"""`regions.json`: what a precomp folder written by `hrem regions` was made from, and how far it got.

    {"format": "hrem-regions", "version": 1, "identity": {detector, fingerprint, regions, geometry, ...},
     "layout": {"feature_dim": F, "geometry_columns": [...], "row_width": F + 5},
     "splits": {"test": {"input_fingerprint", "count", "shard_size",
                         "shards": {"part-00000": {"rows", "kept", "bytes", "sha256"}},
                         "complete": false}}}

Shards are written to `.parts/<split>/part-NNNNN.npz` (atomically) before they are recorded here; a split
is assembled into `{split}_ims.npy` etc. only when all its shards are recorded. A kill at any moment
leaves either a recorded shard with a matching checksum (skipped on re-run) or an unrecorded one (redone).
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hrem.config.base import load_json
from hrem.store import FAILURES
from hrem.utils.files import sha256_file, write_json_atomic

STATE, FORMAT, VERSION = "regions.json", "hrem-regions", 1
PARTS = ".parts"
SPLIT_FILES = ("{}_ims.npy", "{}_boxes.npy", "{}_scores.npy", "{}_ids.txt", "{}_caps.txt")   # caps: Karpathy inputs only


@dataclass
class RegionsState:
    out: Path
    identity: dict[str, Any]
    layout: dict[str, Any]
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)

    def save(self) -> None:
        write_json_atomic(self.out / STATE, {"format": FORMAT, "version": VERSION, "identity": self.identity,
                                             "layout": self.layout, "splits": self.splits})

    def shard_done(self, split: str, name: str) -> bool:
        record = self.splits.get(split, {}).get("shards", {}).get(name)
        path = shard_file(self.out, split, name)
        return bool(record) and path.is_file() and path.stat().st_size == record["bytes"] \
            and sha256_file(path) == record["sha256"]


def shard_file(out: Path, split: str, name: str) -> Path:
    return out / PARTS / split / f"{name}.npz"


def split_files(out: Path, split: str) -> list[Path]:
    return [out / pattern.format(split) for pattern in SPLIT_FILES]


def _clear(out: Path, previous: dict[str, Any]) -> None:
    """Remove only what a previous `hrem regions` run recorded as its own output."""
    for split in previous.get("splits", {}):
        for path in split_files(out, split):
            path.unlink(missing_ok=True)
    shutil.rmtree(out / PARTS, ignore_errors=True)
    (out / FAILURES).unlink(missing_ok=True)
    (out / STATE).unlink(missing_ok=True)


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    # The fingerprint identifies the detector; 'shapes-detector', 'packaged:shapes-detector' and the folder's
    # path are spellings of one detector, so the recorded spelling alone must not refuse a resume.
    same_detector = old.get("detector_fingerprint") == new.get("detector_fingerprint")
    return [f"{k}: folder has {old.get(k)!r}, this run has {new.get(k)!r}" for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k) and not (k == "detector" and same_detector)]


def open_state(out: Path, identity: dict[str, Any], layout: dict[str, Any], overwrite: bool) -> RegionsState:
    """The state to continue (same identity), or a fresh one; a folder made otherwise is refused unless
    `overwrite` (then only its recorded outputs are removed); precomp files without a state are never touched."""
    path = out / STATE
    if path.is_file():
        previous = load_json(path)
        if previous.get("format") != FORMAT:
            raise ValueError(f"{path}: expected a {FORMAT} state file, found format {previous.get('format')!r}")
        problems = _differences(previous.get("identity", {}), identity)
        if not problems:
            return RegionsState(out, identity, layout, previous.get("splits", {}))
        if not overwrite:
            raise ValueError(f"{path}: this folder was written with other settings ({'; '.join(problems)}); "
                             f"use another --out or --overwrite to replace it")
        _clear(out, previous)
    elif any(p.is_file() for p in out.glob("*_ims.npy")):
        # No state file: nothing says these are ours, so even --overwrite must not replace them.
        raise ValueError(f"{out}: holds *_ims.npy files not written by `hrem regions` (no {STATE}); expected an "
                         f"empty folder or one `hrem regions` wrote; refusing to replace them, also with "
                         f"--overwrite (use another --out)")
    out.mkdir(parents=True, exist_ok=True)
    state = RegionsState(out, identity, layout)
    state.save()
    return state
