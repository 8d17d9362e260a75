"""Mean and spread over seeds of trained grounding runs, from each run's test report.

    python benchmarks/grounding_seeds.py --row "cross-task + uncertainty" RUN_S0 RUN_S1 RUN_S2 [--row NAME RUN ...]

Reads RUN/report/report.json (written by `hrem train-grounding` at the end of a run) and prints, per row,
Acc@0.5, mask mIoU, oIoU, P@0.7 and IE as mean (min..max) over the runs, with the number of seeds: the
figures of the options table in docs/results.md. A run without its report is named and left out.
`--weights` adds, per row, the RES : REC task-weight ratio at the last logged step of each run (uncertainty
weights: 0.5 exp(-s) of each task; GradNorm: its weights), mean (min..max): how the balancing shared the
training between the two tasks.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from hrem.train.metrics_log import MetricsLog

METRICS = (("acc@0.5", "Acc@0.5"), ("miou", "mIoU"), ("oiou", "oIoU"), ("prec@0.70", "P@0.7"), ("ie", "IE"))


def test_result(run: Path, split: str) -> dict | None:
    path = run / "report" / "report.json"
    if not path.is_file():
        print(f"  {run}: no {path.relative_to(run)} (still training?); left out", file=sys.stderr)
        return None
    results = json.loads(path.read_text())["results"]
    if split not in results:
        raise ValueError(f"{path}: expected a {split!r} result, found {sorted(results)}")
    return results[split]


def final_weight_ratio(run: Path) -> float | None:
    """RES weight / REC weight at the last logged step, or None for a run without learned task weights."""
    steps = MetricsLog(run / "metrics.jsonl").read("step")
    if not steps:
        return None
    last = steps[-1]
    if "weight_res" in last:                      # GradNorm
        return last["weight_res"] / last["weight_rec"]
    if "log_var_res" in last:                     # uncertainty: 0.5 exp(-s) per task; the 0.5 cancels
        return math.exp(last["log_var_rec"] - last["log_var_res"])
    return None


def spread(values: list[float], digits: int = 1) -> str:
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ({min(values):.{digits}f}..{max(values):.{digits}f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--row", nargs="+", action="append", required=True, metavar=("NAME", "RUN"),
                        help="a row name followed by its run folders (one per seed)")
    parser.add_argument("--split", default="refs-test")
    parser.add_argument("--weights", action="store_true", help="add the final RES : REC task-weight ratio")
    args = parser.parse_args(argv)
    extra = ["RES : REC weight"] if args.weights else []
    print("| row | seeds | " + " | ".join([label for _, label in METRICS] + extra) + " |")
    print("|---|---:|" + "---:|" * (len(METRICS) + len(extra)))
    for name, *runs in args.row:
        reported = [(Path(run), test_result(Path(run), args.split)) for run in runs]
        found = [(run, r) for run, r in reported if r is not None]
        if not found:
            continue
        cells = [spread([r[key] for _, r in found]) for key, _ in METRICS]
        if args.weights:
            ratios = [x for x in (final_weight_ratio(run) for run, _ in found) if x is not None]
            cells.append(spread(ratios, digits=2) if ratios else "-")
        print(f"| {name} | {len(found)} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
