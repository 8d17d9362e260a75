"""`hrem serve` against careless and hostile clients, on the real server (`hrem.serve.server.build_server`, what
the CLI runs) over a tiny real index: idle and slow connections cannot lock others out, every response carries
the security headers, no body reveals the server's directories, /docs needs no CDN."""
from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path
from typing import Self

import httpx
import pytest
from test_browser import page as browser_page  # noqa: F401  (the headless Chromium fixture)
from test_serve_support import build_corpus, free_port

from hrem.cli.serve import create_app
from hrem.serve.app import build_app
from hrem.serve.backend import Backend
from hrem.serve.limits import ServeLimits
from hrem.serve.server import build_server

SECURITY_HEADERS = ("content-security-policy", "x-frame-options", "x-content-type-options", "referrer-policy")


class Running:
    """The real server on a free loopback port in a daemon thread."""

    def __init__(self, app, limits: ServeLimits) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = build_server(app, "127.0.0.1", self.port, limits)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"server did not start on {self.url}")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.getbasetemp() / "serve_corpus")


@pytest.fixture(scope="module")
def served(corpus):
    with Running(create_app(corpus["index"], corpus["grounding"]), ServeLimits()) as running:
        yield running


def _closed_by_server(sock: socket.socket, wait_s: float) -> bool:
    """True once the server has closed `sock` (EOF or reset) within `wait_s`; bytes it sent are skipped."""
    sock.settimeout(wait_s)
    try:
        while sock.recv(4096):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


class SlowLoris(threading.Thread):
    """Sends a request head one byte per `interval` s; records what the server answered and when it hung up."""

    HEAD = b"GET /api/search?q=red HTTP/1.1\r\nHost: x\r\nUser-Agent: " + b"s" * 200

    def __init__(self, port: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.interval, self.answer, self.closed_after = interval, b"", None

    def run(self) -> None:
        started = time.monotonic()
        self.sock.settimeout(self.interval)
        for byte in self.HEAD:
            try:
                self.sock.send(bytes([byte]))
                chunk = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
            self.answer += chunk
            if not chunk:
                break
        self.closed_after = time.monotonic() - started
        self.sock.close()


def test_idle_and_slow_clients_do_not_lock_out_health_or_search(corpus):
    limits = ServeLimits(read_timeout_s=2.0)
    with Running(create_app(corpus["index"]), limits) as running:
        idle = [socket.create_connection(("127.0.0.1", running.port)) for _ in range(300)]
        lorises = [SlowLoris(running.port, interval=0.5) for _ in range(5)]
        for loris in lorises:
            loris.start()
        time.sleep(0.5)   # the server has accepted them all
        started = time.monotonic()
        health = httpx.get(running.url + "/healthz", timeout=5)
        search = httpx.get(running.url + "/api/search", params={"q": "a red circle", "k": 3}, timeout=5)
        took = time.monotonic() - started
        assert health.status_code == 200, health.text
        assert search.status_code == 200 and len(search.json()["results"]) == 3, search.text
        assert took < 2.0, f"health + search took {took:.2f} s while idle/slow clients were held"
        # Every idle socket is closed by the read timeout (or earlier, to make room) -- none is kept forever.
        assert all(_closed_by_server(sock, limits.read_timeout_s + 1.5) for sock in idle)
        for loris in lorises:
            loris.join(timeout=limits.read_timeout_s + 2)
            assert loris.closed_after is not None and loris.closed_after < limits.read_timeout_s + 1.5
            assert loris.answer.startswith(b"HTTP/1.1 408"), loris.answer
        assert httpx.get(running.url + "/healthz", timeout=5).json()["status"] == "ok"
        for sock in idle:
            sock.close()


def test_keep_alive_connection_that_stalls_mid_request_is_closed(corpus):
    """One full request, then a partial one that never finishes: the second must not hold the socket."""
    limits = ServeLimits(read_timeout_s=1.0)
    with Running(create_app(corpus["index"]), limits) as running:
        sock = socket.create_connection(("127.0.0.1", running.port))
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHo")
        started = time.monotonic()
        sock.settimeout(3)
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
        assert time.monotonic() - started < limits.read_timeout_s + 1.5
        assert answer.startswith(b"HTTP/1.1 200") and b"HTTP/1.1 408" in answer, answer
        sock.close()


def test_health_is_exempt_from_the_busy_limit(corpus):
    """Every connection busy with a slow search: further searches get 503, /healthz still answers 200."""
    release = threading.Event()

    def blocking(query, k):
        release.wait(10)
        return []
    limits = ServeLimits(max_connections=4, workers=1, queue=16, timeout_s=10)
    with Running(build_app(Backend(blocking, corpus["emb"]), limits), limits) as running:
        def search(out: list) -> None:
            out.append(httpx.get(running.url + "/api/search", params={"q": "red"}, timeout=15).status_code)
        held: list[int] = []
        threads = [threading.Thread(target=search, args=(held,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        extra = httpx.get(running.url + "/api/search", params={"q": "red"}, timeout=5)
        health = httpx.get(running.url + "/healthz", timeout=5)
        release.set()
        for thread in threads:
            thread.join(timeout=15)
        assert extra.status_code == 503 and "busy" in extra.json()["error"], extra.text
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert held == [200] * 4


def test_every_response_sends_the_security_headers(served, corpus):
    first = httpx.get(served.url + "/api/search", params={"q": "red", "k": 1}).json()["results"][0]["id"]
    for path in ("/", "/healthz", "/api/search?q=red&k=2", "/static/app.js", "/static/style.css", "/docs",
                 "/nope", "/api/image/999999", "/api/search?k=0", f"/api/image/{first}",
                 f"/api/ground?id={first}&q=red"):
        response = httpx.get(served.url + path)
        missing = [name for name in SECURITY_HEADERS if name not in response.headers]
        assert not missing, (path, response.status_code, missing)
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        policy = response.headers["content-security-policy"]
        assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy, policy
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy, policy


def test_page_has_no_inline_script_or_style(served):
    page = httpx.get(served.url + "/").text
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page), "inline <script> would be blocked by the CSP"
    assert "<style" not in page and " style=" not in page and not re.search(r"\bon[a-z]+=", page)


def test_no_response_reveals_server_directories(served, corpus):
    secrets = {str(Path(corpus[name]).resolve()) for name in ("index", "emb", "grounding", "data", "run")}
    secrets |= {str(Path(corpus["index"]).resolve().parent), str(Path.cwd().resolve())}
    for path in ("/healthz", "/nope", "/api/image/999999", "/api/image/abc", "/api/ground?id=999999&q=red",
                 "/static/nope.js", "/static/%2e%2e/%2e%2e/etc/passwd", "/api/search?q=red&k=3", "/docs",
                 "/openapi.json"):
        body = httpx.get(served.url + path).text
        leaked = [s for s in secrets if s in body]
        assert not leaked, (path, leaked, body[:300])
        assert not re.search(r'"(/tmp|/home|/root|/work)/', body), (path, body[:300])
    health = httpx.get(served.url + "/healthz").json()
    assert health["index"] == Path(corpus["index"]).name and health["grounding_run"] == "grounding"


def test_docs_are_self_contained(served):
    response = httpx.get(served.url + "/docs")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    body = response.text
    assert "http://" not in body and "https://" not in body, "the API description must not load anything remote"
    assert not re.search(r"<script(?![^>]*\bsrc=\"/)[^>]*>", body) and "<style" not in body
    for route in ("/api/search", "/api/image/{image_id}", "/api/ground", "/healthz"):
        assert route in body, route
    for parameter in ("q", "k", "id"):
        assert f"<code>{parameter}</code>" in body, parameter


def test_client_that_stops_reading_a_response_is_dropped(corpus):
    """A large response the client never reads: the buffered bytes are dropped after the timeout, not kept."""
    def huge(query, k):
        return [{"id": i, "score": 0.0, "key": "x" * 200_000} for i in range(k)]
    limits = ServeLimits(read_timeout_s=1.0)
    with Running(build_app(Backend(huge, corpus["emb"]), limits), limits) as running:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", running.port))
        sock.sendall(b"GET /api/search?q=red&k=50 HTTP/1.1\r\nHost: x\r\n\r\n")   # ~10 MB answer, never read
        guard = running.server.config.http.guard
        time.sleep(0.5)
        assert len(guard.open) == 1, "the response should be stuck in the server's buffers by now"
        deadline = time.monotonic() + limits.read_timeout_s + 3
        while guard.open and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not guard.open and guard.timed_out >= 1, "the stalled connection is still open"
        received = 0
        sock.settimeout(2)
        try:
            while chunk := sock.recv(1 << 16):
                received += len(chunk)
        except ConnectionResetError:
            pass
        assert received < 50 * 200_000
        assert httpx.get(running.url + "/healthz", timeout=5).status_code == 200
        sock.close()


def test_internal_errors_carry_the_security_headers(corpus):
    def broken(query, k):
        raise KeyError("boom")
    limits = ServeLimits()
    with Running(build_app(Backend(broken, corpus["emb"]), limits), limits) as running:
        response = httpx.get(running.url + "/api/search", params={"q": "red"})
    assert response.status_code == 500 and "internal error" in response.json()["error"]
    assert all(name in response.headers for name in SECURITY_HEADERS), response.headers


@pytest.mark.browser
def test_page_works_under_the_csp_and_the_csp_is_enforced(served, browser_page):  # noqa: F811
    """Chromium: a search renders with no CSP violation, and an injected inline script is refused."""
    browser_page.goto(served.url + "/")
    browser_page.evaluate("""() => { window.__violations = [];
        document.addEventListener('securitypolicyviolation', e => window.__violations.push(e.violatedDirective)); }""")
    browser_page.fill("#q", "a red circle")
    browser_page.click("#go")
    browser_page.wait_for_selector("#results .card", timeout=20_000)
    browser_page.wait_for_function("() => Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    assert browser_page.evaluate("window.__violations") == []
    ran = browser_page.evaluate("""() => { const s = document.createElement('script');
        s.textContent = 'window.__inline = 1'; document.body.appendChild(s); return window.__inline === 1; }""")
    assert ran is False
    browser_page.wait_for_function("() => window.__violations.length > 0")
    assert browser_page.evaluate("window.__violations")[0].startswith("script-src")


def _corpus_image(corpus, image_id: int) -> Path:
    from hrem.serve.catalog import Catalog
    from hrem.serve.corpus import corpus_root_from_manifest, resolve_image

    return resolve_image(corpus_root_from_manifest(corpus["emb"]), Catalog(corpus["emb"], 10).image_key(image_id))


def test_grounding_a_huge_or_corrupt_corpus_image_is_a_422_without_its_path(served, corpus, monkeypatch):
    image_id = httpx.get(served.url + "/api/search", params={"q": "red", "k": 1}).json()["results"][0]["id"]
    path = _corpus_image(corpus, image_id)
    original = path.read_bytes()
    try:
        path.write_bytes(original[: len(original) // 3])   # truncated on disk
        response = httpx.get(served.url + "/api/ground", params={"id": image_id, "q": "red"})
        assert response.status_code == 422, response.text
        assert response.json()["error"] == f"image {image_id} cannot be grounded: its file is not a readable image"
    finally:
        path.write_bytes(original)
    monkeypatch.setenv("HREM_MAX_IMAGE_PIXELS", "1000")   # every 64 x 64 corpus image is now over the budget
    response = httpx.get(served.url + "/api/ground", params={"id": image_id, "q": "red"})
    assert response.status_code == 422 and str(path.parent) not in response.text
    assert response.json()["error"] == (f"image {image_id} cannot be grounded: it is 64 x 64 pixels, over the "
                                        f"server's decoding budget of 1,000 pixels")
    response = httpx.get(served.url + "/api/search", params={"q": "red", "rerank": "true"})
    assert response.status_code == 422
    assert response.json()["error"].startswith("the image of one of the top hits cannot be grounded: it is 64 x 64")
