"""Evaluation reports: report.json, report.md and recall_curves.png in one folder (no computation here).

`results` maps a label (e.g. "test/f30k", "test/coco1k", "refs-test") to a summary from
`evaluate_retrieval` (task "retrieval") or `GroundingAccumulator.summary()` (task "grounding"). Every
file is written atomically, so a reader never sees half a report.
"""
from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

import numpy as np

from hrem import __version__
from hrem.eval.grounding import PREC_THRESHOLDS
from hrem.utils.files import write_text_atomic

RETRIEVAL_COLUMNS = (("i2t R@1", "i2t_r1"), ("i2t R@5", "i2t_r5"), ("i2t R@10", "i2t_r10"),
                     ("i2t medr", "i2t_medr"), ("i2t meanr", "i2t_meanr"), ("t2i R@1", "t2i_r1"),
                     ("t2i R@5", "t2i_r5"), ("t2i R@10", "t2i_r10"), ("t2i medr", "t2i_medr"),
                     ("t2i meanr", "t2i_meanr"), ("rsum", "rsum"))
GROUNDING_COLUMNS = (("Acc@0.5", "acc@0.5"), ("box mIoU", "box_miou"), ("mIoU", "miou"), ("oIoU", "oiou"),
                     *((f"P@{t:.2f}", f"prec@{t:.2f}") for t in PREC_THRESHOLDS), ("IE", "ie"))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"report: cannot write {type(value).__name__} to JSON")


def _task(label: str, summary: dict) -> str:
    task = summary.get("task")
    if task not in ("retrieval", "grounding"):
        raise ValueError(f"results[{label!r}]: expected a summary with task 'retrieval' or 'grounding', "
                         f"found task={task!r}")
    return task


def _table(summary: dict, columns: tuple[tuple[str, str], ...]) -> list[str]:
    present = [(title, key) for title, key in columns if key in summary]
    cells = [f"{summary[key]:.2f}" for _, key in present]
    return ["| " + " | ".join(t for t, _ in present) + " |",
            "|" + "---:|" * len(present),
            "| " + " | ".join(cells) + " |"]


def _retrieval_note(summary: dict) -> str:
    note = f"{summary.get('n_images', '?')} images, {summary.get('n_captions', '?'):g} captions"
    if "folds" in summary:
        note = (f"mean over {summary['folds']} fold(s) of 1000 images ({summary['images_used']} of "
                f"{summary['images_total']} images used); per-fold rsum: "
                + ", ".join(f"{r:.2f}" for r in summary["per_fold_rsum"]))
    return note


def render_markdown(results: dict[str, dict], meta: dict) -> str:
    """report.md text: a header with `meta`, then one table per result."""
    lines = ["# hrem evaluation report", ""]
    lines += [f"- **{key}**: {value}" for key, value in meta.items()]
    lines += ["", "Recall in %, ranks 1-based (medr = floor(median) + 1), rsum = sum of the six R@K. "
              "Grounding metrics in % (box IoU > 0.5 for Acc@0.5, mask IoU > X for P@X).", ""]
    for label, summary in results.items():
        task = _task(label, summary)
        lines.append(f"## {label} ({task})")
        lines.append("")
        if task == "retrieval":
            lines += _table(summary, RETRIEVAL_COLUMNS) + ["", _retrieval_note(summary)]
        else:
            lines += _table(summary, GROUNDING_COLUMNS) + ["", f"{summary['n_samples']} samples"]
        lines.append("")
    return "\n".join(lines)


def write_report(out_dir: str | Path, results: dict[str, dict], meta: dict | None = None) -> dict[str, Path]:
    """Write report.json, report.md and (if any retrieval result) recall_curves.png; return their paths."""
    if not results:
        raise ValueError(f"{out_dir}: expected at least one result to report, found none")
    for label, summary in results.items():
        _task(label, summary)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"hrem_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **(meta or {})}
    paths = {"json": out / "report.json", "markdown": out / "report.md"}
    payload = json.dumps({"meta": meta, "results": results}, indent=2, default=_json_default) + "\n"
    write_text_atomic(paths["json"], payload)
    write_text_atomic(paths["markdown"], render_markdown(results, meta))
    curves = {label: s["recall_curve"] for label, s in results.items() if "recall_curve" in s}
    if curves:
        from hrem.eval.plot import plot_recall_curves  # matplotlib loads only when a report is written

        paths["curves"] = plot_recall_curves(out / "recall_curves.png", curves, str(meta.get("title", "")))
    return paths
