"""Mean and spread over seeds of trained grounding runs, from each run's test report.

    python benchmarks/grounding_seeds.py --row "cross-task + uncertainty" RUN_S0 RUN_S1 RUN_S2 [--row NAME RUN ...]

Reads RUN/report/report.json (written by `hrem train-grounding` at the end of a run) and prints, per row,
Acc@0.5, mask mIoU, oIoU, P@0.7 and IE as mean (min..max) over the runs, with the number of seeds: the
figures of the options table in docs/results.md. A run without its report is named and left out.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

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


def spread(values: list[float]) -> str:
    mean = sum(values) / len(values)
    return f"{mean:.1f}" if len(values) == 1 else f"{mean:.1f} ({min(values):.1f}..{max(values):.1f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--row", nargs="+", action="append", required=True, metavar=("NAME", "RUN"),
                        help="a row name followed by its run folders (one per seed)")
    parser.add_argument("--split", default="refs-test")
    args = parser.parse_args(argv)
    print("| row | seeds | " + " | ".join(label for _, label in METRICS) + " |")
    print("|---|---:|" + "---:|" * len(METRICS))
    for name, *runs in args.row:
        found = [r for r in (test_result(Path(run), args.split) for run in runs) if r is not None]
        if not found:
            continue
        cells = [spread([r[key] for r in found]) for key, _ in METRICS]
        print(f"| {name} | {len(found)} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
