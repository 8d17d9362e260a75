"""Image queries on the page in a real headless Chromium (the system `chromium`, driven by Playwright, as in
test_browser.py): pick an image file, drop one on the page, click "more like this" on a result -- each
grid equals what the JSON API answers, and no Content-Security-Policy violation is reported."""
from __future__ import annotations

import httpx
import pyarrow.parquet as pq
import pytest
from test_browser import page, server  # noqa: F401  (the uvicorn server and the headless Chromium page)
from test_serve_support import build_corpus

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.getbasetemp() / "serve_corpus")   # the one the server fixture serves


def _corpus_image(corpus, position: int):
    table = pq.read_table(corpus["emb"] / "images")
    return int(table.column("id")[position].as_py()), corpus["data"] / table.column("key")[position].as_py()


def _grid_ids(page) -> list[int]:  # noqa: F811
    return [int(i) for i in page.locator("#results .card").evaluate_all("cs => cs.map(c => c.dataset.id)")]


def _watch_csp(page) -> None:  # noqa: F811
    page.evaluate("""() => { window.__violations = [];
        document.addEventListener('securitypolicyviolation', e => window.__violations.push(e.violatedDirective)); }""")


def _wait_for_grid(page, query: str) -> None:  # noqa: F811
    page.wait_for_function(f"() => document.getElementById('results').dataset.query === '{query}'", timeout=20_000)
    page.wait_for_function("() => Array.from(document.images).every(i => !i.src || (i.complete && i.naturalWidth > 0))")


def test_upload_drop_and_more_like_this(server, page, corpus):  # noqa: F811
    own, path = _corpus_image(corpus, 6)
    page.goto(server.url + "/")
    _watch_csp(page)
    page.select_option("#k", "10")

    page.set_input_files("#image-file", str(path))           # the "Image…" button's file input
    _wait_for_grid(page, "image")
    expected = httpx.post(server.url + "/api/search", params={"k": 10}, content=path.read_bytes()).json()
    assert _grid_ids(page) == [r["id"] for r in expected["results"]] and _grid_ids(page)[0] == own
    assert page.is_visible("#query-preview") and page.get_attribute("#query-preview", "src").startswith("blob:")
    assert "result(s) for uploaded PNG image, 64 x 64" in page.text_content("#status")

    other, _ = _corpus_image(corpus, 11)                      # drop a file (fetched from the server) on the page
    page.evaluate("""async (id) => {
        const blob = await (await fetch('/api/image/' + id)).blob();
        const data = new DataTransfer();
        data.items.add(new File([blob], 'dropped.png', { type: blob.type }));
        document.getElementById('results').dispatchEvent(
            new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true }));
    }""", other)
    page.wait_for_function(f"() => document.querySelector('#results .card').dataset.id === '{other}'",
                           timeout=20_000)
    assert _grid_ids(page)[0] == other

    second = _grid_ids(page)[1]                               # "more like this" on the second result
    page.locator("#results .card").nth(1).locator("button.more").click()
    _wait_for_grid(page, "similar")
    similar = httpx.get(server.url + "/api/similar", params={"id": second, "k": 10}).json()
    assert _grid_ids(page) == [r["id"] for r in similar["results"]] and second not in _grid_ids(page)
    assert page.is_hidden("#detail"), "the button must not also open the detail panel"
    assert f"more like image {second}" in page.text_content("#status")

    page.locator("#results .card").nth(0).click()            # detail of an image-query result: image, no grounding
    page.wait_for_selector('#overlay[data-overlay="image-only"]', timeout=20_000)
    assert "no text to ground" in page.text_content("#detail-info")
    assert page.evaluate("window.__violations") == []


def test_a_file_that_is_not_an_image_shows_the_server_error(server, page, tmp_path):  # noqa: F811
    fake = tmp_path / "photo.png"
    fake.write_text("not an image, whatever the name says")
    page.goto(server.url + "/")
    page.set_input_files("#image-file", str(fake))
    page.wait_for_selector("#status.error", timeout=10_000)
    assert "expected a PNG, JPEG or WebP image" in page.text_content("#status")
