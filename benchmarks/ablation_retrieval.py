"""HREM's ablation on ShapesRef region features, with seeds: mean pooling / + fragment relation / full HREM
(+ instance relation), at equal iterations and at equal wall clock.

    python benchmarks/ablation_retrieval.py --data data/shapesref_precomp --out runs/ablation \
        --text-cache data/minilm-shapesref-v2.st --ceiling hrem-out/cache/shapesref-v2-s128-seed0-8000-1000-1000 \
        --seeds 0 1 2 --iterations 1000 --minutes 8 --parallel 2

Every run is `hrem train --card demo` with the variant's overrides, one thread, then `hrem evaluate` on the
test split; runs that already have a test report are skipped, so the script resumes. It prints, per budget
and variant, the mean and the spread (min..max) over seeds of R@1 and rsum, the rsum as a fraction of the
truth-only oracle (`hrem data ceiling`), and the iterations each run reached. Model selection is on dev.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

VARIANTS = {
    "mean pooling": ["--set", "head.pooling=\"mean\"", "--set", "head.fragment_relation=false",
                     "--set", "instance_relation.enabled=false"],
    "+ fragment relation": ["--set", "instance_relation.enabled=false"],
    "full HREM": [],
}


def run_one(args, variant: str, seed: int, budget: str) -> dict:
    name = f"{budget}-{variant.replace(' ', '_').replace('+', 'plus')}-s{seed}"
    out = Path(args.out) / name
    report = out / "eval-test" / "report.json"
    if not report.is_file():
        limit = ["--max-iters", str(args.iterations)] if budget == "iters" else ["--time-budget", str(args.minutes)]
        train = [sys.executable, "-m", "hrem", "train", "--card", "demo", "--data", args.data, "--out", str(out),
                 "--seed", str(seed), "--threads", "1", "--workers", "0", "--device", "cpu",
                 "--eval-every", str(args.eval_every), "--save-every", str(args.eval_every),
                 "--decay-fractions", "0.75", *limit, *VARIANTS[variant]]
        if args.text_cache:
            train += ["--text-cache", args.text_cache]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        with open(out.with_suffix(".log"), "w") as log:
            subprocess.run(train, check=True, stdout=log, stderr=subprocess.STDOUT, env=env)
            subprocess.run([sys.executable, "-m", "hrem", "evaluate", "--model", str(out), "--data", args.data,
                            "--split", "test"], check=True, stdout=log, stderr=subprocess.STDOUT, env=env)
    result = json.loads(report.read_text())["results"]["all"]
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    result["iterations"] = max(s.get("iteration", 0) for s in steps)
    return {"variant": variant, "seed": seed, "budget": budget, **result}


def summary(rows: list[dict], ceiling: float | None) -> list[str]:
    lines = ["| budget | variant | seeds | i2t R@1 | t2i R@1 | rsum (mean, min..max) | of ceiling | iterations |",
             "|---|---|---|---|---|---|---|---|"]
    for budget in ("iters", "wall"):
        for variant in VARIANTS:
            chosen = [r for r in rows if r["budget"] == budget and r["variant"] == variant]
            if not chosen:
                continue
            def mean(key: str, chosen: list[dict] = chosen) -> float:
                return sum(r[key] for r in chosen) / len(chosen)

            rsums = [r["rsum"] for r in chosen]
            share = f"{100 * mean('rsum') / ceiling:.1f} %" if ceiling else "-"
            its = "/".join(str(r["iterations"]) for r in chosen)
            lines.append(f"| {budget} | {variant} | {len(chosen)} | {mean('i2t_r1'):.1f} | {mean('t2i_r1'):.1f} | "
                         f"{mean('rsum'):.1f} ({min(rsums):.1f}..{max(rsums):.1f}) | {share} | {its} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--text-cache", default=None)
    parser.add_argument("--ceiling", default=None, help="ShapesRef folder: report rsum as a share of its oracle")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--budgets", nargs="+", default=["iters", "wall"], choices=["iters", "wall"])
    parser.add_argument("--parallel", type=int, default=2)
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    jobs = [(v, s, b) for b in args.budgets for v in VARIANTS for s in args.seeds]
    with ThreadPoolExecutor(args.parallel) as pool:
        rows = list(pool.map(lambda job: run_one(args, *job), jobs))
    ceiling = None
    if args.ceiling:
        from hrem.eval.ceiling import shapes_ceiling

        ceiling = shapes_ceiling(args.ceiling, "test")["oracle"]["rsum"]
    (Path(args.out) / "ablation.json").write_text(json.dumps({"rows": rows, "ceiling_rsum": ceiling}, indent=1))
    print("\n".join(summary(rows, ceiling)))


if __name__ == "__main__":
    main()
