"""Load test of `hrem serve` on loopback: valid searches at a fixed concurrency plus malformed requests.

    python benchmarks/bench_serve.py                          # the demo index if built, else a small one
    python benchmarks/bench_serve.py --index hrem-out/demo/index --requests 2000 --concurrency 16

The server runs as a real `hrem serve` subprocess (uvicorn, one model worker, bounded queue). The client
(asyncio + httpx, one connection per concurrent worker) sends `--requests` valid /api/search calls with
varied queries and k, interleaved with malformed ones: missing q, k=10**9, k=abc, a 10 kB q, unknown and
non-integer ids, path-traversal attempts on /static and /api/image, ground without id. Reported: QPS and
p50/p99 latency of the valid requests, status counts per kind, and -- as the baseline measured in the same
run -- the QPS of calling `Searcher.search_text` directly in-process (no HTTP), with the ratio.

Exit status 1 if any valid request got a 5xx or no answer, any malformed one got a 5xx or a 2xx where a 4xx
belongs, or the server does not answer /healthz and a search afterwards.

    python benchmarks/bench_serve.py --reliability            # idle-connection and slow-client runs instead

Reliability runs (loopback, bounded by --hold-seconds each): a baseline with nobody else connected, then while
--idle sockets that never send a byte are held open (reopened when the server closes them), then while --slow
clients send a request head one byte per second (reopened likewise). In each: /healthz probed on a fresh
connection every 0.1 s, and --concurrency keep-alive clients searching; reported are latencies, QPS, status
counts and the ratios to the baseline. Exit status 1 if a probe or a search failed or took over 2 s.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np

COLORS = ("red", "green", "blue", "yellow", "purple", "orange", "white", "black")
SHAPES = ("circle", "square", "triangle", "star", "heart", "cross", "hexagon", "diamond")
RELATIONS = ("left of", "right of", "above", "below")


def queries(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a = f"a {rng.choice(COLORS)} {rng.choice(SHAPES)}"
        out.append(a if rng.random() < 0.4 else f"{a} {rng.choice(RELATIONS)} a {rng.choice(COLORS)} "
                                                 f"{rng.choice(SHAPES)}")
    return out


def malformed(n: int) -> list[tuple[str, dict]]:
    """(path, params) requests that must get a 4xx."""
    kinds = [("/api/search", {}), ("/api/search", {"q": "red", "k": 10**9}), ("/api/search", {"q": "red", "k": "abc"}),
             ("/api/search", {"q": "x" * 10_000}), ("/api/search", {"q": "   "}), ("/api/image/999999999", {}),
             ("/api/image/abc", {}), (f"/api/image/{10**30}", {}), ("/api/image/..%2f..%2f..%2fetc%2fpasswd", {}),
             ("/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd", {}), ("/static/..%2f..%2fapp.py", {}),
             ("/api/ground", {"q": "red"}), ("/api/ground", {"id": "-x", "q": "red"})]
    return [kinds[i % len(kinds)] for i in range(n)]


def build_small_index(root: Path) -> Path:
    """ShapesRef test split (200 images, 64 px) embedded by a tiny random model -> images + captions indices."""
    import torch

    from hrem.checkpoint import save_run
    from hrem.cli import main
    from hrem.data.cache import ensure_shapesref
    from hrem.factory import create_model, load_card

    data = ensure_shapesref(root / "shapes", train=20, dev=10, test=200, size=64)
    torch.manual_seed(0)
    card = load_card("tiny")
    save_run(root / "run", create_model(card), card)
    main(["--log-level", "WARNING", "embed", "--data", str(data), "--model", str(root / "run"), "--out", str(root / "emb"), "--workers", "0",
          "--device", "cpu", "--no-progress"])
    for modality in ("images", "captions"):
        main(["--log-level", "WARNING", "index", "--emb", str(root / "emb"), "--out", str(root / "index" / modality), "--modality", modality])
    return root / "index"


def direct_baseline(index: Path, texts: list[str], ks: list[int]) -> float:
    """Searches per second of Searcher.search_text in this process, one query per call (no HTTP)."""
    import torch

    from hrem.pipeline.search import Searcher

    torch.set_num_threads(1)
    searcher = Searcher.load(index)
    for text in texts[:20]:
        searcher.search_text([text], k=10)
    started = time.perf_counter()
    for text, k in zip(texts, ks):
        searcher.search_text([text], k=k)
    return len(texts) / (time.perf_counter() - started)


def start_server(index: Path, port: int, workers: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "hrem", "--log-level", "WARNING", "serve", "--index", str(index),
               "--grounding", "none", "--port", str(port), "--workers", str(workers), "--device", "cpu"]
    return subprocess.Popen(command, env=env)


def wait_ready(url: str, server: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"server exited with code {server.returncode} before answering")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise SystemExit(f"server at {url} did not answer /healthz within {timeout:.0f} s")


async def fire(url: str, jobs: list[tuple[str, str, dict]], concurrency: int) -> list[tuple[str, int, float]]:
    """(kind, status (0 = no answer), seconds) per job; `concurrency` workers, one keep-alive connection each."""
    queue: asyncio.Queue = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    results: list[tuple[str, int, float]] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            kind, path, params = queue.get_nowait()
            started = time.perf_counter()
            try:
                status = (await client.get(path, params=params)).status_code
            except httpx.HTTPError:
                status = 0
            results.append((kind, status, time.perf_counter() - started))

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return results


def report(results: list[tuple[str, int, float]], wall: float, baseline_qps: float) -> list[str]:
    problems = []
    valid = [(s, t) for kind, s, t in results if kind == "valid"]
    bad = [(s, t) for kind, s, t in results if kind == "malformed"]
    latencies = np.array([t for _, t in valid]) * 1000
    qps = len(valid) / wall
    print(f"valid searches: {len(valid)}  QPS {qps:.1f} (over the whole run, malformed included in the wall time)")
    print(f"latency ms: p50 {np.percentile(latencies, 50):.1f}  p90 {np.percentile(latencies, 90):.1f}  "
          f"p99 {np.percentile(latencies, 99):.1f}  max {latencies.max():.1f}")
    print(f"baseline (Searcher.search_text in-process, 1 query/call): {baseline_qps:.1f} QPS; "
          f"served/direct = {qps / baseline_qps:.2f}x")
    print(f"status counts, valid: {dict(sorted(Counter(s for s, _ in valid).items()))}")
    print(f"status counts, malformed: {dict(sorted(Counter(s for s, _ in bad).items()))}")
    if any(s == 0 or s >= 500 for s, _ in valid):
        problems.append("a valid request got a 5xx or no answer")
    if any(not 400 <= s < 500 for s, _ in bad):
        problems.append("a malformed request got something other than a 4xx")
    return problems


def still_answers(url: str) -> list[str]:
    try:
        healthy = httpx.get(url + "/healthz", timeout=5).json()
        search = httpx.get(url + "/api/search", params={"q": "a red circle", "k": 5}, timeout=10)
    except httpx.HTTPError as exc:
        return [f"the server stopped answering after the load: {exc}"]
    print(f"after the load: /healthz {healthy['status']}, in_flight {healthy['in_flight']}; "
          f"search -> {search.status_code} with {len(search.json().get('results', []))} results")
    return [] if search.status_code == 200 and healthy["status"] == "ok" else ["server unhealthy after the load"]


class Holders:
    """`n` hostile connections kept open for the whole phase: idle (never send) or slow (one byte per second).
    A connection the server closes is reopened after a pause, so the pressure stays on."""

    HEAD = b"GET /api/search?q=red HTTP/1.1\r\nHost: x\r\nUser-Agent: " + b"s" * 500

    def __init__(self, port: int, n: int, slow: bool) -> None:
        self.port, self.n, self.slow = port, n, slow
        self.opened = self.closed_by_server = self.answered_408 = 0
        self.stop = asyncio.Event()

    async def _one(self) -> None:
        while not self.stop.is_set():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.2)
                continue
            self.opened += 1
            await self._hold(reader, writer)
            writer.close()
            await asyncio.sleep(0.1)   # reconnect pause: pressure without a busy loop on the bench side

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for i in range(len(self.HEAD) if self.slow else 1 << 30):
            if self.slow:
                writer.write(self.HEAD[i:i + 1])
            try:
                data = await asyncio.wait_for(reader.read(4096), 1.0)
            except asyncio.TimeoutError:
                if self.stop.is_set():
                    return
                continue
            except OSError:
                data = b""
            self.answered_408 += data.startswith(b"HTTP/1.1 408")
            self.closed_by_server += 1
            return

    def start(self) -> list[asyncio.Task]:
        return [asyncio.create_task(self._one()) for _ in range(self.n)]


async def probe_health(url: str, until: float) -> list[tuple[int, float]]:
    """(status, seconds) of /healthz on a fresh connection every 0.1 s; status 0 = no answer."""
    out = []
    fresh = httpx.Limits(max_keepalive_connections=0)   # a new connection per probe: what a lock-out blocks
    async with httpx.AsyncClient(timeout=5, limits=fresh) as client:
        while time.monotonic() < until:
            started = time.perf_counter()
            try:
                status = (await client.get(url + "/healthz")).status_code
            except httpx.HTTPError:
                status = 0
            out.append((status, time.perf_counter() - started))
            await asyncio.sleep(0.1)
    return out


async def search_load(url: str, until: float, concurrency: int) -> list[tuple[int, float]]:
    texts = queries(5000, seed=2)
    out: list[tuple[int, float]] = []

    async def worker(client: httpx.AsyncClient, offset: int) -> None:
        i = offset
        while time.monotonic() < until:
            started = time.perf_counter()
            try:
                status = (await client.get("/api/search", params={"q": texts[i % len(texts)], "k": 10})).status_code
            except httpx.HTTPError:
                status = 0
            out.append((status, time.perf_counter() - started))
            i += concurrency
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10) as client:
        await asyncio.gather(*(worker(client, j) for j in range(concurrency)))
    return out


async def phase(url: str, port: int, seconds: float, concurrency: int, idle: int, slow: int) -> dict:
    holders = Holders(port, idle or slow, slow=bool(slow))
    tasks = holders.start() if holders.n else []
    await asyncio.sleep(min(2.0, seconds / 4))   # let them connect (and the server start closing them)
    until = time.monotonic() + seconds
    started = time.perf_counter()
    health, searches = await asyncio.gather(probe_health(url, until), search_load(url, until, concurrency))
    wall = time.perf_counter() - started
    holders.stop.set()
    await asyncio.gather(*tasks)
    return {"health": health, "searches": searches, "wall": wall, "holders": holders}


def summarize(name: str, result: dict, base: dict | None) -> tuple[dict, list[str]]:
    health_ms = np.array([t for _, t in result["health"]]) * 1000
    search_ms = np.array([t for _, t in result["searches"]]) * 1000
    figures = {"health_p50": np.percentile(health_ms, 50), "health_max": health_ms.max(),
               "search_p50": np.percentile(search_ms, 50), "search_p99": np.percentile(search_ms, 99),
               "qps": len(search_ms) / result["wall"]}
    h = result["holders"]
    print(f"[{name}] held {h.n}: opened {h.opened}, closed by the server {h.closed_by_server} "
          f"(408: {h.answered_408})")
    print(f"[{name}] /healthz: {len(health_ms)} probes, status {dict(Counter(s for s, _ in result['health']))}, "
          f"p50 {figures['health_p50']:.1f} ms, max {figures['health_max']:.1f} ms")
    print(f"[{name}] search: {len(search_ms)} in {result['wall']:.1f} s = {figures['qps']:.1f} QPS, "
          f"p50 {figures['search_p50']:.1f} ms, p99 {figures['search_p99']:.1f} ms, "
          f"status {dict(Counter(s for s, _ in result['searches']))}")
    if base:
        print(f"[{name}] vs baseline: QPS x{figures['qps'] / base['qps']:.2f}, search p50 "
              f"x{figures['search_p50'] / base['search_p50']:.2f}, health p50 "
              f"x{figures['health_p50'] / base['health_p50']:.2f}")
    failed = [s for s, t in result["health"] + result["searches"] if s != 200 or t > 2.0]
    return figures, [f"{name}: {len(failed)} probe(s)/search(es) failed or took over 2 s"] if failed else []


def reliability(url: str, port: int, args: argparse.Namespace) -> list[str]:
    problems: list[str] = []
    base = None
    runs = [("baseline", 0, 0)] + [(f"{n} idle", n, 0) for n in args.idle] + [(f"{n} slow", 0, n) for n in args.slow]
    for name, idle, slow in runs:
        result = asyncio.run(phase(url, port, args.hold_seconds, args.concurrency, idle, slow))
        figures, failed = summarize(name, result, base)
        base = base or figures
        problems += failed
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", default=None, help="index dir (default: hrem-out/demo/index if built, else a "
                                                      "small ShapesRef index built in a temp dir)")
    parser.add_argument("--requests", type=int, default=2000, help="valid search requests")
    parser.add_argument("--malformed", type=int, default=300, help="malformed requests mixed in")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1, help="server model threads")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--reliability", action="store_true", help="idle-connection and slow-client runs")
    parser.add_argument("--idle", type=int, nargs="+", default=[200, 300],
                        help="idle connections held, one run per number (the server's cap is 256)")
    parser.add_argument("--slow", type=int, nargs="+", default=[50], help="slow clients held, one run per number")
    parser.add_argument("--hold-seconds", type=float, default=10.0, help="length of each reliability phase")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="bench_serve_") as tmp:
        demo = Path("hrem-out/demo/index")
        index = Path(args.index) if args.index else demo if (demo / "images").is_dir() else build_small_index(Path(tmp))
        print(f"index: {index}")
        texts = queries(args.requests)
        ks = [random.Random(i).choice((5, 10, 20, 50)) for i in range(args.requests)]
        baseline = direct_baseline(index, texts[:300], ks[:300])
        jobs = [("valid", "/api/search", {"q": t, "k": k}) for t, k in zip(texts, ks)]
        jobs += [("malformed", path, params) for path, params in malformed(args.malformed)]
        random.Random(1).shuffle(jobs)
        url = f"http://127.0.0.1:{args.port}"
        server = start_server(index, args.port, args.workers)
        try:
            wait_ready(url, server)
            if args.reliability:
                problems = reliability(url, args.port, args) + still_answers(url)
            else:
                started = time.perf_counter()
                results = asyncio.run(fire(url, jobs, args.concurrency))
                problems = report(results, time.perf_counter() - started, baseline) + still_answers(url)
        finally:
            server.terminate()
            server.wait(timeout=20)
    for problem in problems:
        print(f"FAIL: {problem}")
    print("PASS" if not problems else "FAIL")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
