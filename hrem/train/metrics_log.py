"""`metrics.jsonl`: one JSON object per line, appended and flushed, so a killed run keeps its history."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def _clean(value: Any) -> Any:
    # NaN/inf are not JSON; write null so any JSON reader accepts the file.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


class MetricsLog:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)   # the folder is made on the first write: reading a run's log creates nothing

    def write(self, kind: str, **fields: Any) -> None:
        record = _clean({"kind": kind, **fields})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=False) + "\n")
            handle.flush()

    def read(self, kind: str | None = None) -> list[dict]:
        """Every record (of `kind` only, when given); [] when the log does not exist yet."""
        if not self.path.is_file():
            return []
        records = [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return [r for r in records if kind is None or r.get("kind") == kind]
