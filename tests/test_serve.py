"""`hrem serve`: the JSON API on a tiny real index (tiny random retrieval model, FAISS, Parquet) and a tiny
random MCN, against brute-force references; validation, path safety, the bounded model pool."""
from __future__ import annotations

import asyncio
import json
import os
import threading
import time

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from test_serve_support import build_corpus, reference_grounder

from hrem.cli.serve import create_app, search_function
from hrem.eval import rle_decode
from hrem.pipeline.search import Searcher
from hrem.serve.app import build_app
from hrem.serve.backend import Backend
from hrem.serve.corpus import ImageRefused, corpus_root_from_manifest, resolve_image
from hrem.serve.limits import ModelPool, PoolSaturated, PoolTimeout, ServeLimits


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.getbasetemp() / "serve_corpus")


@pytest.fixture(scope="module")
def searcher(corpus):
    return Searcher.load(corpus["index"])


@pytest.fixture(scope="module")
def client(corpus):
    """The app as `hrem serve --index IDX --grounding RUN` builds it (Searcher + Grounder loaded once)."""
    app = create_app(corpus["index"], corpus["grounding"], ServeLimits(max_k=50, max_query_chars=200))
    with TestClient(app) as test_client:
        yield test_client


def _images(emb) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in sorted((emb / "images").glob("part-*.parquet"))])


def _karpathy_test(corpus) -> list[dict]:
    doc = json.loads(next(corpus["data"].glob("dataset_*.json")).read_text())
    return [im for im in doc["images"] if im["split"] == "test"]


def _is_json_error(response, status: int, mentions: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == status and mentions in body["error"], body
    assert "Traceback" not in response.text and 'File "' not in response.text


def test_search_equals_brute_force_with_captions(client, corpus, searcher):
    query = "a red circle left of a blue square"
    body = client.get("/api/search", params={"q": query, "k": 7}).json()
    images = _images(corpus["emb"])
    vectors = np.stack(images.column("embedding").to_numpy(zero_copy_only=False))
    ids = np.asarray(images.column("id").to_pylist())
    scores = searcher.encode_text([query])[0] @ vectors.T
    order = np.argsort(-scores, kind="stable")[:7]
    assert [r["id"] for r in body["results"]] == ids[order].tolist()
    np.testing.assert_allclose([r["score"] for r in body["results"]], scores[order], rtol=1e-4, atol=1e-5)
    sentences = {im["imgid"]: [s["raw"] for s in im["sentences"]] for im in _karpathy_test(corpus)}
    for result in body["results"]:
        assert result["captions"] == sentences[result["id"]][:3]
        assert result["image_url"] == f"/api/image/{result['id']}"
    assert body["k"] == 7 and body["query"] == query


def test_image_bytes_and_ground_match_references(client, corpus):
    first = _karpathy_test(corpus)[3]
    path = corpus["data"] / first["filepath"] / first["filename"]
    response = client.get(f"/api/image/{first['imgid']}")
    assert response.status_code == 200 and response.content == path.read_bytes()
    assert response.headers["content-type"] == "image/png"
    body = client.get("/api/ground", params={"id": first["imgid"], "q": "the red circle"}).json()
    expected = reference_grounder(corpus["grounding"])(path, "the red circle")
    assert body["box"] == pytest.approx(expected["box"], abs=0.01)       # the stage rounds to 0.01 px
    assert body["score"] == pytest.approx(expected["score"], abs=1e-4)
    assert body["mask"] == expected["mask"] and (body["width"], body["height"]) == (64, 64)
    mask = rle_decode(body["mask"])
    assert mask.shape == (64, 64)
    x1, y1, x2, y2 = body["box"]
    assert 0 <= x1 <= x2 <= 64 and 0 <= y1 <= y2 <= 64


@pytest.mark.parametrize(("params", "status", "mentions"), [
    ({}, 422, "q:"),
    ({"q": "   "}, 422, "q:"),
    ({"q": "x" * 10_000}, 422, "q: expected at most 200"),
    ({"q": "red", "k": 10**9}, 422, "k: expected an integer in 1..50"),
    ({"q": "red", "k": 0}, 422, "k:"),
    ({"q": "red", "k": "many"}, 422, "k:"),
])
def test_search_validation_is_json_naming_the_parameter(client, params, status, mentions):
    _is_json_error(client.get("/api/search", params=params), status, mentions)


def test_bad_ids_and_paths_are_json_4xx(client):
    _is_json_error(client.get("/api/image/123456789"), 404, "id:")
    _is_json_error(client.get("/api/image/abc"), 422, "image_id")
    _is_json_error(client.get(f"/api/image/{10**30}"), 422, "id:")
    _is_json_error(client.get("/api/ground", params={"q": "red"}), 422, "id:")
    _is_json_error(client.get("/api/ground", params={"id": 999999, "q": "red"}), 404, "id:")
    _is_json_error(client.get("/api/nope"), 404, "Not Found")
    for raw in ("/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/static/..%2f..%2fapp.py", "/api/image/..%2f..%2fetc"):
        response = client.get(raw)
        assert response.status_code in (404, 422) and "root:" not in response.text, raw


def test_page_and_health(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="search-form"' in page.text
    assert client.get("/static/app.js").status_code == 200
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["grounding"] is True and health["in_flight"] == 0


def test_resolve_image_refuses_traversal_and_escaping_symlinks(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "images").mkdir(parents=True)
    outside.mkdir()
    (root / "images" / "a.png").write_bytes(b"inside")
    (outside / "secret.txt").write_text("secret")
    os.symlink(outside / "secret.txt", root / "images" / "escape.png")
    os.symlink(outside, root / "linked_dir")
    os.symlink(root / "images" / "a.png", root / "alias.png")     # a link that stays inside is fine
    assert resolve_image(root, "images/a.png") == (root / "images" / "a.png").resolve()
    assert resolve_image(root, "alias.png") == (root / "images" / "a.png").resolve()
    for key in ("../outside/secret.txt", "images/../../outside/secret.txt", str(outside / "secret.txt"),
                "images/escape.png", "linked_dir/secret.txt", "images", "images/missing.png", "", "a\x00b"):
        with pytest.raises(ImageRefused):
            resolve_image(root, key)


def test_api_refuses_images_behind_an_escaping_symlink(corpus, searcher, tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    os.symlink(corpus["data"] / "images", root / "images")   # every key now resolves outside `root`
    backend = Backend(search_function(searcher), searcher.indices["images"].emb_dir, corpus_root=root)
    with TestClient(build_app(backend)) as test_client:
        image_id = _karpathy_test(corpus)[0]["imgid"]
        _is_json_error(test_client.get(f"/api/image/{image_id}"), 404, "not available")
    assert corpus_root_from_manifest(corpus["emb"]) == corpus["data"]


def test_cli_create_app_without_grounding(corpus):
    with TestClient(create_app(corpus["index"])) as test_client:
        hits = test_client.get("/api/search", params={"q": "a green square"}).json()["results"]
        assert len(hits) == 20   # default k
        _is_json_error(test_client.get("/api/ground", params={"id": hits[0]["id"], "q": "x"}), 501, "grounding")
        assert test_client.get("/healthz").json()["images"] == 24


def test_unexpected_errors_are_generic_json(corpus):
    def broken(query, k):
        raise KeyError("/secret/path/in/a/trace")
    with TestClient(build_app(Backend(broken, corpus["emb"])), raise_server_exceptions=False) as test_client:
        response = test_client.get("/api/search", params={"q": "red"})
    _is_json_error(response, 500, "internal error")
    assert "/secret/path" not in response.text


def test_pool_answers_503_when_full_and_504_on_timeout(corpus):
    release = threading.Event()

    def blocking(query, k):
        release.wait(5)
        return []
    limits = ServeLimits(workers=1, queue=1, timeout_s=0.5)
    app = build_app(Backend(blocking, corpus["emb"]), limits)

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            tasks = [asyncio.create_task(http.get("/api/search", params={"q": f"q{i}"})) for i in range(4)]
            responses = await asyncio.gather(*tasks)
            release.set()
            await asyncio.sleep(0.2)
            health = (await http.get("/healthz")).json()
            return [r.status_code for r in responses], [r.json() for r in responses], health
    statuses, bodies, health = asyncio.run(scenario())
    assert sorted(statuses) == [503, 503, 504, 504], bodies
    assert health["in_flight"] == 0   # the timed-out calls released their slots once they finished


def test_model_pool_bounds_and_releases():
    pool = ModelPool(workers=1, queue=0, timeout_s=0.3)

    async def scenario():
        assert await pool.run(lambda a, b: a + b, 2, 3) == 5
        slow = asyncio.create_task(pool.run(time.sleep, 0.5))
        await asyncio.sleep(0.05)
        with pytest.raises(PoolSaturated):
            await pool.run(lambda: 1)
        with pytest.raises(PoolTimeout):
            await slow
        await asyncio.sleep(0.4)
        assert pool.in_flight == 0
        return await pool.run(lambda: "free again")
    assert asyncio.run(scenario()) == "free again"
    pool.shutdown()
    with pytest.raises(ValueError, match="workers"):
        ServeLimits(workers=0)
