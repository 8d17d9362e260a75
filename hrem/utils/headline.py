"""The few numbers that summarise a checkpoint, read from the files its training / evaluation wrote.

`hrem models` shows them beside each shipped checkpoint. They are read, never copied into an index, so
they cannot drift from the reports: a report (report.json or report/report.json: the test-split
evaluation) is preferred, else the best dev evaluation in metrics.jsonl. Torch-free (JSON only).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

# model kind -> the metrics shown, in order (dotted = nested, e.g. the detector's joint attribute accuracy)
HEADLINE_KEYS = {
    "retrieval": ("rsum", "i2t_r1", "t2i_r1"),
    "grounding": ("acc@0.5", "miou"),
    "detector": ("ap50", "attribute_accuracy.all"),
}
REPORT_FILES = ("report.json", "report/report.json")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Headline:
    source: str                  # the file the numbers came from, relative to the checkpoint folder
    split: str                   # e.g. "test", "refs-test", "dev"
    numbers: dict[str, float]

    def text(self) -> str:
        """'test: rsum 580.8, i2t_r1 97.6 (report/report.json)'."""
        shown = ", ".join(f"{k} {v:.1f}" for k, v in self.numbers.items())
        return f"{self.split}: {shown} ({self.source})"


def _pick(record: dict, keys: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for key in keys:
        value: object = record.get(key)       # whole key first: "acc@0.5" has a dot of its own
        if value is None:
            value = record
            for part in key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
    return out


def _from_report(path: Path, keys: tuple[str, ...]) -> tuple[str, dict[str, float]] | None:
    """hrem.eval.write_report files ({"meta", "results": {name: metrics}}: the first result) or a flat
    report (the detector's {"split", "ap50", ...})."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict):
        return None
    results = doc.get("results")
    if isinstance(results, dict) and results:
        name, record = next(iter(results.items()))
        split = (doc.get("meta") or {}).get("split") or name
        return str(split), _pick(record if isinstance(record, dict) else {}, keys)
    return str(doc.get("split", "?")), _pick(doc, keys)


def _best_eval(path: Path, keys: tuple[str, ...]) -> tuple[str, dict[str, float]] | None:
    """The last evaluation marked best in a metrics.jsonl (else the last evaluation)."""
    evals = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue                      # a line cut by a kill: the others still say what happened
        if isinstance(record, dict) and record.get("kind") == "eval":
            evals.append(record)
    best = [r for r in evals if r.get("best")] or evals
    return (str(best[-1].get("split", "dev")), _pick(best[-1], keys)) if best else None


def headline(model_dir: Path, kind: str) -> Headline | None:
    """The headline numbers of a checkpoint folder, or None when it has no report and no evaluation."""
    keys = HEADLINE_KEYS.get(kind, ())
    candidates = [(name, _from_report) for name in REPORT_FILES] + [("metrics.jsonl", _best_eval)]
    for name, reader in candidates:
        path = model_dir / name
        if not path.is_file():
            continue
        try:
            found = reader(path, keys)
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            log.debug("%s: unreadable (%s); looking further", path, exc)
            continue                      # listing models must not fail on one bad report
        if found and found[1]:
            return Headline(name, found[0], found[1])
    return None
