"""Train the grounding options table's rows with seeds, resumably, side by side, then print the table.

    python benchmarks/grounding_campaign.py --root runs/opt --rows gradnorm ca2m-plain11 --seeds 0 1 2 --parallel 2
    python benchmarks/grounding_campaign.py --root runs/opt --status        # done / partial / missing per run
    python benchmarks/grounding_campaign.py --root runs/opt --dry-run       # the commands it would run

Each row of benchmarks/grounding_rows.json (or --rows-file) is a card and its --set switches; every run is
`hrem train-grounding` with that file's protocol (the shipped demo grounding model's budget and schedule),
one thread, into ROOT/<row>-s<seed>, with its log appended to ROOT/<row>-s<seed>.log. A run with a test
report is done and skipped; a stopped run resumes from its checkpoint (train-grounding resumes a folder by
itself), and stopped runs go first. A folder whose job.json names another card, other switches or another
seed is an error, before anything starts. At the end it prints the table of benchmarks/grounding_seeds.py.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import grounding_seeds  # noqa: E402  (the sibling script that prints the table)

from hrem.train.metrics_log import MetricsLog  # noqa: E402
from hrem.utils.locks import live_holder  # noqa: E402

ROWS_FILE = Path(__file__).resolve().parent / "grounding_rows.json"
DONE = "done"


@dataclass(frozen=True)
class Row:
    name: str
    title: str
    card: str
    switches: dict


@dataclass(frozen=True)
class Run:
    row: Row
    seed: int
    folder: Path

    @property
    def log(self) -> Path:
        return self.folder.with_name(self.folder.name + ".log")


def load_rows(path: Path) -> tuple[dict, dict[str, Row]]:
    """(protocol, rows by name) of a rows file; a malformed file names the field."""
    data = json.loads(path.read_text())
    if not isinstance(data.get("protocol"), dict) or not isinstance(data.get("rows"), dict):
        raise ValueError(f"{path}: expected objects 'protocol' and 'rows', found keys {sorted(data)}")
    rows = {}
    for name, spec in data["rows"].items():
        if not isinstance(spec, dict) or not isinstance(spec.get("card"), str):
            raise ValueError(f"{path}: rows.{name}: expected an object with a 'card' name, found {spec!r}")
        switches = spec.get("set", {})
        if not isinstance(switches, dict):
            raise ValueError(f"{path}: rows.{name}.set: expected an object of --set switches, found {switches!r}")
        rows[name] = Row(name, spec.get("title", name), spec["card"], switches)
    return data["protocol"], rows


def run_state(run: Run) -> str:
    """'done' (a test report), 'running: <holder>' (a live session holds the folder's lock), 'stopped at
    iteration N' (steps logged), or 'missing'."""
    if (run.folder / "report" / "report.json").is_file():
        return DONE
    holder = live_holder(run.folder)
    if holder is not None:
        return f"running: {holder}"
    metrics = MetricsLog(run.folder / "metrics.jsonl")
    if not metrics.path.is_file():
        return "missing"
    steps = metrics.read("step")
    return f"stopped at iteration {max((s.get('iteration', 0) for s in steps), default=0)}"


def check_same_run(run: Run) -> None:
    """A folder started with other settings must not be resumed (or overwritten) under this row's name."""
    job_file = run.folder / "job.json"
    if not job_file.is_file():
        return
    job = json.loads(job_file.read_text())
    found = (job.get("card"), job.get("overrides"), job.get("seed"))
    if found != (run.row.card, run.row.switches, run.seed):
        raise ValueError(f"{job_file}: expected card {run.row.card!r}, switches {run.row.switches} and seed "
                         f"{run.seed} (row {run.row.name!r}), found card {found[0]!r}, switches {found[1]} and "
                         f"seed {found[2]}; move the folder or pick another --root")


def flag_value(value) -> str:
    return ",".join(str(v) for v in value) if isinstance(value, list) else str(value)


def command(run: Run, protocol: dict, data: str | None) -> list[str]:
    cmd = [sys.executable, "-m", "hrem", "train-grounding", "--out", str(run.folder), "--card", run.row.card]
    for key, value in run.row.switches.items():
        cmd += ["--set", f"{key}={json.dumps(value)}"]
    for key, value in protocol.items():
        cmd += [f"--{key.replace('_', '-')}", flag_value(value)]
    cmd += ["--seed", str(run.seed), "--no-progress"]
    return cmd + (["--data", data] if data else [])


def plan(root: Path, rows: list[Row], seeds: list[int]) -> list[Run]:
    """Every (row, seed) run neither done nor running elsewhere: stopped runs first, then the missing ones in
    row order, seed by seed."""
    runs = [Run(row, seed, root / f"{row.name}-s{seed}") for row in rows for seed in seeds]
    for run in runs:
        check_same_run(run)
    todo = [(run, state) for run, state in ((run, run_state(run)) for run in runs)
            if state != DONE and not state.startswith("running")]
    return [run for run, state in sorted(todo, key=lambda pair: pair[1] == "missing")]


def train(run: Run, protocol: dict, data: str | None) -> int:
    run.folder.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(protocol.get("threads", 1))}
    with open(run.log, "a") as log:
        code = subprocess.run(command(run, protocol, data), stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    print(f"{run.folder.name}: {'finished' if code == 0 else f'exit code {code}, see {run.log}'}", flush=True)
    return code


def print_status(root: Path, rows: list[Row], seeds: list[int]) -> None:
    print("| row | seed | state | folder |\n|---|---:|---|---|")
    for row in rows:
        for seed in seeds:
            run = Run(row, seed, root / f"{row.name}-s{seed}")
            print(f"| {row.name} | {seed} | {run_state(run)} | {run.folder} |")


def print_table(root: Path, rows: list[Row], seeds: list[int]) -> None:
    argv = []
    for row in rows:
        argv += ["--row", row.title, *(str(root / f"{row.name}-s{seed}") for seed in seeds)]
    grounding_seeds.main(argv)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, type=Path, help="folder of the run folders")
    parser.add_argument("--rows", nargs="+", default=None, help="row names (default: every row of the file)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--parallel", type=int, default=2, help="runs side by side (one thread each)")
    parser.add_argument("--rows-file", type=Path, default=ROWS_FILE)
    parser.add_argument("--data", default=None, help="ShapesRef folder (default: train-grounding's cached demo)")
    parser.add_argument("--status", action="store_true", help="print each run's state and stop")
    parser.add_argument("--dry-run", action="store_true", help="print the commands it would run and stop")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    protocol, known = load_rows(args.rows_file)
    unknown = sorted(set(args.rows or []) - set(known))
    if unknown:
        raise SystemExit(f"--rows: unknown {unknown}; {args.rows_file} has {sorted(known)}")
    rows = [known[name] for name in (args.rows or known)]
    if args.status:
        print_status(args.root, rows, args.seeds)
        return 0
    todo = plan(args.root, rows, args.seeds)
    if args.dry_run:
        for run in todo:
            print(f"# {run.folder.name}: {run_state(run)}\n{shlex.join(command(run, protocol, args.data))}")
        return 0
    with ThreadPoolExecutor(max(1, args.parallel)) as pool:
        codes = list(pool.map(lambda run: train(run, protocol, args.data), todo))
    print_table(args.root, rows, args.seeds)
    return 0 if all(code == 0 for code in codes) else 1


if __name__ == "__main__":
    sys.exit(main())
