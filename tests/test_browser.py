"""The page in a real headless Chromium (Debian's `chromium`, driven by Playwright): type a query, wait for
the grid, open a result and check that the overlay (image + translucent mask + box + label) is drawn.

Runs in CI (`.ci/run` installs chromium when missing). Never run `playwright install`: the browser is the
system one. The screenshot goes to $HREM_TEST_ARTIFACTS (default: the test's tmp dir)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_serve_support import ThreadedServer, build_corpus

from hrem.eval import rle_decode, rle_encode

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("HREM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
BOX_RGB = (34, 211, 238)   # BOX_COLOR in static/app.js


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from hrem.cli.serve import create_app

    corpus = build_corpus(tmp_path_factory.getbasetemp() / "serve_corpus")
    running = ThreadedServer(create_app(corpus["index"], corpus["grounding"])).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).is_file():
        # In CI a missing browser is a broken install step, not a reason to pass quietly.
        (pytest.fail if os.environ.get("CI") else pytest.skip)(f"{CHROMIUM} not found (apt-get install chromium)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 820})
        yield context.new_page()
        context.close()


def _canvas_pixels(page) -> np.ndarray:
    data = page.evaluate("""() => {
        const c = document.getElementById('overlay');
        return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data);
    }""")
    return np.asarray(data, np.uint8).reshape(400, 400, 4)


def test_search_open_result_and_draw_overlay(server, page, tmp_path):
    query = "a red circle left of a blue square"
    page.goto(server.url + "/")
    page.fill("#q", query)
    page.select_option("#k", "10")
    page.click("#go")
    page.wait_for_selector("#results .card", timeout=20_000)
    cards = page.locator("#results .card")
    assert cards.count() == 10
    import httpx
    expected = httpx.get(server.url + "/api/search", params={"q": query, "k": 10}).json()["results"]
    assert [int(c) for c in cards.evaluate_all("cs => cs.map(c => c.dataset.id)")] == [r["id"] for r in expected]
    assert "result(s)" in page.text_content("#status")
    page.wait_for_function("() => Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")

    cards.nth(0).click()
    page.wait_for_selector('#overlay[data-overlay="drawn"]', timeout=20_000)
    ground = httpx.get(server.url + "/api/ground", params={"id": expected[0]["id"], "q": query}).json()
    drawn_mask_pixels = int(page.get_attribute("#overlay", "data-mask-pixels"))
    assert drawn_mask_pixels == int(rle_decode(ground["mask"]).sum())
    pixels = _canvas_pixels(page)
    box_pixels = np.all(np.abs(pixels[..., :3].astype(int) - BOX_RGB) <= 2, axis=-1).sum()
    assert box_pixels > 100, "the box outline is not on the canvas"
    assert pixels[..., 3].min() == 255, "the image does not fill the canvas"
    assert "box [" in page.text_content("#detail-info")

    artifacts = Path(os.environ.get("HREM_TEST_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(artifacts / "browser_overlay.png"), full_page=True)
    assert (artifacts / "browser_overlay.png").stat().st_size > 10_000


def test_javascript_rle_decoder_matches_python(server, page):
    page.goto(server.url + "/")
    rng = np.random.default_rng(0)
    for height, width in ((7, 5), (64, 48), (1, 1)):
        mask = rng.random((height, width)) < 0.3
        mask[0, 0] = True   # a mask that starts with a foreground pixel (leading zero run)
        for compressed in (True, False):
            decoded = page.evaluate("rle => Array.from(hremRle.decodeRle(rle).data)",
                                    rle_encode(mask, compressed=compressed))
            np.testing.assert_array_equal(np.asarray(decoded, bool).reshape(height, width), mask)


def test_errors_are_shown_not_thrown(server, page):
    page.goto(server.url + "/")
    page.evaluate("document.getElementById('q').removeAttribute('maxlength')")
    page.fill("#q", "x" * 400)
    page.click("#go")
    page.wait_for_selector("#status.error", timeout=10_000)
    assert "q: expected at most" in page.text_content("#status")


def test_rerank_checkbox_sends_rerank_and_shows_the_reranked_order(server, page):
    import httpx

    query = "two green triangles"
    page.goto(server.url + "/")
    page.wait_for_selector("#rerank-option:not([hidden])", timeout=20_000)   # /healthz says rerank is on
    page.fill("#q", query)
    page.select_option("#k", "10")
    page.check("#rerank")
    with page.expect_request(lambda r: "/api/search?" in r.url) as request:
        page.click("#go")
    assert "rerank=true" in request.value.url
    page.wait_for_selector("#results .card", timeout=60_000)
    expected = httpx.get(server.url + "/api/search", params={"q": query, "k": 10, "rerank": "true"},
                         timeout=60).json()["results"]
    cards = page.locator("#results .card")
    assert [int(c) for c in cards.evaluate_all("cs => cs.map(c => c.dataset.id)")] == [r["id"] for r in expected]
    assert "re-ranked with grounding" in page.text_content("#status")
