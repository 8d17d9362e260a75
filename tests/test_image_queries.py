"""Image queries on a real index (tiny random grid model -> `hrem embed` on a small ShapesRef -> FAISS):
`hrem search --image` (image -> image, image -> text), `Searcher.search_similar`, the region-feature path,
and the HTTP side: POST /api/search with an uploaded image (good, too large, wrong type, corrupt, pixel
bomb) and GET /api/similar, all against brute force over the Parquet embeddings."""
from __future__ import annotations

import io
import json
import struct
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from test_embed_support import make_run
from test_serve_support import build_corpus

from hrem.cli import main
from hrem.cli.serve import create_app, search_function
from hrem.pipeline.search import Searcher
from hrem.serve.app import build_app
from hrem.serve.backend import Backend
from hrem.serve.limits import ServeLimits

MAX_UPLOAD_BYTES = 64 * 1024
MAX_UPLOAD_PIXELS = 256 * 256


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.getbasetemp() / "serve_corpus")


@pytest.fixture(scope="module")
def searcher(corpus):
    return Searcher.load(corpus["index"])


@pytest.fixture(scope="module")
def client(corpus):
    limits = ServeLimits(max_upload_bytes=MAX_UPLOAD_BYTES, max_upload_pixels=MAX_UPLOAD_PIXELS)
    with TestClient(create_app(corpus["index"], None, limits)) as test_client:
        yield test_client


def _table(emb, modality) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in sorted((emb / modality).glob("part-*.parquet"))])


def _stored(emb, modality) -> tuple[np.ndarray, np.ndarray]:
    table = _table(emb, modality)
    return np.asarray(table.column("id").to_pylist()), np.stack(table.column("embedding").to_numpy(zero_copy_only=False))


def _brute_force(vector: np.ndarray, ids: np.ndarray, vectors: np.ndarray, k: int) -> list[int]:
    return ids[np.argsort(-(vectors @ vector), kind="stable")[:k]].tolist()


def _image(corpus, position: int) -> tuple[int, object]:
    table = _table(corpus["emb"], "images")
    return int(table.column("id")[position].as_py()), corpus["data"] / table.column("key")[position].as_py()


def _encoded(path, fmt: str) -> bytes:
    buffer = io.BytesIO()
    with Image.open(path) as image:
        image.convert("RGB").save(buffer, format=fmt)
    return buffer.getvalue()


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width x height pixels and that holds no pixel data (a few dozen bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def _is_json_error(response, status: int, mentions: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == status and mentions in body["error"], body


# -- CLI and Python -----------------------------------------------------------------------------------

def test_cli_image_to_image_returns_each_corpus_image_first(corpus, searcher, capsys):
    (id_a, path_a), (id_b, path_b) = _image(corpus, 2), _image(corpus, 9)
    assert main(["search", "--index", str(corpus["index"]), "--image", str(path_a), str(path_b),
                 "--target", "images", "-k", "5", "--json", "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(o["image"], o["target"]) for o in out] == [(str(path_a), "images"), (str(path_b), "images")]
    ids, vectors = _stored(corpus["emb"], "images")
    for entry, own in zip(out, (id_a, id_b)):
        assert entry["results"][0]["id"] == own and entry["results"][0]["score"] == pytest.approx(1.0, abs=1e-4)
        stored = vectors[ids.tolist().index(own)]
        assert [r["id"] for r in entry["results"]] == _brute_force(stored, ids, vectors, 5)
    # the query went through the embed job's own decoding and preprocessing: the same vector
    np.testing.assert_allclose(searcher.encode_images([path_a])[0], vectors[ids.tolist().index(id_a)], atol=1e-5)


def test_cli_image_auto_searches_images_then_captions(corpus, searcher, capsys):
    _, path = _image(corpus, 5)
    assert main(["search", "--index", str(corpus["index"]), "--image", str(path), "-k", "4", "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert f"image: {path} -> images  (4 result(s))" in text and f"image: {path} -> captions  (4 result(s))" in text
    hits = searcher.search_image([path], k=4, target="captions")[0]
    ids, vectors = _stored(corpus["emb"], "captions")
    assert [h.id for h in hits] == _brute_force(searcher.encode_images([path])[0], ids, vectors, 4)
    assert all("image_id" in h.metadata for h in hits)


@pytest.mark.parametrize("extra, message", [
    (["a red circle"], "expected text queries or --image PATH [PATH ...], found both"),
    (["--ground"], "grounding needs a text query"),
    (["--target", "bogus"], None),
])
def test_cli_refuses_mixed_or_wrong_arguments(corpus, capsys, extra, message):
    _, path = _image(corpus, 0)
    argv = ["search", "--index", str(corpus["index"]), "--image", str(path), "--device", "cpu", *extra]
    if message is None:
        with pytest.raises(SystemExit):
            main(argv)
        assert "invalid choice: 'bogus'" in capsys.readouterr().err
        return
    assert main(argv) == 1
    assert message in capsys.readouterr().err


def test_cli_names_bad_query_images(corpus, tmp_path, monkeypatch, capsys):
    index = str(corpus["index"])
    assert main(["search", "--index", index, "--image", str(tmp_path / "missing.png"), "--device", "cpu"]) == 1
    assert "missing.png: no such image file" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    assert main(["search", "--index", index, "--image", str(corrupt), "--device", "cpu"]) == 1
    assert "corrupt.png: not a readable image" in capsys.readouterr().err
    _, path = _image(corpus, 0)
    monkeypatch.setenv("HREM_MAX_IMAGE_PIXELS", "1000")    # the 64 x 64 image is over this budget
    assert main(["search", "--index", index, "--image", str(path), "--device", "cpu"]) == 1
    assert "exceeds the decoding budget of 1,000 pixels" in capsys.readouterr().err


def test_search_similar_leaves_the_image_out_and_equals_brute_force(corpus, searcher):
    ids, vectors = _stored(corpus["emb"], "images")
    wanted = [int(ids[0]), int(ids[7])]
    for own, row in zip(wanted, searcher.search_similar(wanted, k=4)):
        expected = [i for i in _brute_force(vectors[ids.tolist().index(own)], ids, vectors, 5) if i != own][:4]
        assert [h.id for h in row] == expected
    with pytest.raises(KeyError, match=r"ids \[999999\] not found"):
        searcher.search_similar([999999], k=3)


def test_regions_card_takes_region_rows_and_refuses_image_files(corpus, tmp_path):
    import torch

    from hrem.checkpoint.loaded import load_model
    from hrem.pipeline.query_images import query_inputs

    loaded = load_model(make_run(tmp_path / "regions-run", card="tiny-regions"), torch.device("cpu"))
    _, path = _image(corpus, 0)
    with pytest.raises(ValueError, match=r"reads precomputed region features \[R, \d+\], not image files.*"
                                         r"hrem regions"):
        query_inputs(loaded, [path])
    rows = np.random.default_rng(0).standard_normal((6, loaded.feature_dim)).astype(np.float32)
    np.save(tmp_path / "rows.npy", rows)
    tensors = query_inputs(loaded, [tmp_path / "rows.npy", rows])
    assert [tuple(t.shape) for t in tensors] == [(6, loaded.feature_dim)] * 2
    with pytest.raises(ValueError, match="wrong feature shape"):
        query_inputs(loaded, [rows[:, :3]])


# -- HTTP -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_upload_returns_the_search_json_with_the_image_first(client, corpus, searcher, fmt):
    own, path = _image(corpus, 4)
    data = path.read_bytes() if fmt == "PNG" else _encoded(path, fmt)
    response = client.post("/api/search", params={"k": 6}, content=data,
                           headers={"content-type": "application/octet-stream"})   # the type is sniffed
    assert response.status_code == 200, response.text
    body = response.json()
    text_shape = client.get("/api/search", params={"q": "a red circle", "k": 6}).json()
    assert set(text_shape) <= set(body) and set(text_shape["results"][0]) == set(body["results"][0])
    assert body["query_image"] == {"format": fmt, "width": 64, "height": 64, "bytes": len(data)}
    with Image.open(io.BytesIO(data)) as image:
        expected = searcher.search_image([image.convert("RGB")], k=6, target="images")[0]
    assert [r["id"] for r in body["results"]] == [h.id for h in expected]
    if fmt != "JPEG":   # lossless: exactly the stored image's vector
        assert body["results"][0]["id"] == own
    assert body["results"][0]["image_url"] == f"/api/image/{body['results'][0]['id']}"


def test_upload_too_large_is_413_with_or_without_a_length(client, corpus):
    big = b"\x89PNG\r\n\x1a\n" + bytes(MAX_UPLOAD_BYTES)
    _is_json_error(client.post("/api/search", content=big), 413, f"at most {MAX_UPLOAD_BYTES:,} bytes")

    def chunks():   # no Content-Length: the cap is applied while reading
        yield b"\x89PNG\r\n\x1a\n"
        for _ in range(MAX_UPLOAD_BYTES // 4096 + 2):
            yield bytes(4096)
    _is_json_error(client.post("/api/search", content=chunks()), 413, "found more")


@pytest.mark.parametrize("data, content_type, mentions", [
    (b"GIF89a" + bytes(40), "image/gif", "found bytes starting 47 49 46 38"),
    (b"hello, I am text named photo.png", "image/png", "expected a PNG, JPEG or WebP image"),
    (b"--x\r\ncontent-disposition: form-data\r\n\r\n", "multipart/form-data; boundary=x", "found a multipart form"),
])
def test_wrong_type_is_415_whatever_the_header_says(client, data, content_type, mentions):
    _is_json_error(client.post("/api/search", content=data, headers={"content-type": content_type}), 415, mentions)


def test_corrupt_or_empty_upload_is_422(client, corpus):
    _, path = _image(corpus, 1)
    truncated = path.read_bytes()[:200]
    _is_json_error(client.post("/api/search", content=truncated), 422, "uploaded PNG image: not a readable image")
    _is_json_error(client.post("/api/search", content=b"\xff\xd8\xff" + b"\x00" * 64), 422,
                   "uploaded JPEG image: not a readable image")
    _is_json_error(client.post("/api/search", content=b""), 422, "found an empty body")


def test_pixel_bomb_header_is_413_before_decoding(client):
    bomb = _png_header(13000, 13000)     # 169 M pixels declared in a 57-byte file
    response = client.post("/api/search", content=bomb)
    _is_json_error(response, 413, "image of 13000 x 13000 = 169,000,000 pixels exceeds the decoding budget "
                                  f"of {MAX_UPLOAD_PIXELS:,} pixels for query images")
    assert "HREM_MAX_IMAGE_PIXELS" not in response.text
    # beyond twice PIL's own limit its guard fires first: still 413, still from the header
    _is_json_error(client.post("/api/search", content=_png_header(30000, 30000)), 413, "decoding budget")
    _is_json_error(client.post("/api/search", content=_png_header(300, 300)), 413, "90,000 pixels")


def test_similar_by_id(client, corpus, searcher):
    ids, _ = _stored(corpus["emb"], "images")
    own = int(ids[3])
    body = client.get("/api/similar", params={"id": own, "k": 5}).json()
    assert body["similar_to"] == own and own not in [r["id"] for r in body["results"]]
    assert [r["id"] for r in body["results"]] == [h.id for h in searcher.search_similar([own], k=5)[0]]
    assert all(r["image_url"] == f"/api/image/{r['id']}" and "captions" in r for r in body["results"])
    _is_json_error(client.get("/api/similar", params={"id": 999999}), 404, "no image with id 999999")
    _is_json_error(client.get("/api/similar"), 422, "id: expected the id of an image")
    _is_json_error(client.get("/api/similar", params={"id": own, "k": 0}), 422, "k: expected an integer")


def test_health_reports_image_queries(client):
    body = client.get("/healthz").json()
    assert body["image_search"] is True and body["similar"] is True
    assert body["max_upload_bytes"] == MAX_UPLOAD_BYTES and body["max_upload_pixels"] == MAX_UPLOAD_PIXELS


def test_backend_without_image_queries_answers_501(corpus, searcher):
    app = build_app(Backend(search_function(searcher), searcher.indices["images"].emb_dir))
    with TestClient(app) as plain:
        _, path = _image(corpus, 0)
        _is_json_error(plain.post("/api/search", content=path.read_bytes()), 501, "image queries are not available")
        _is_json_error(plain.get("/api/similar", params={"id": 1}), 501, "more-like-this is not available")


def test_image_queries_take_the_search_filter(client, corpus, searcher):
    own, path = _image(corpus, 4)
    body = client.post("/api/search", params={"k": 5, "filter": f"id > {own}"}, content=path.read_bytes()).json()
    assert body["filter"] == f"id > {own}" and body["results"] and all(r["id"] > own for r in body["results"])
    similar = client.get("/api/similar", params={"id": own, "k": 5, "filter": f"id < {own}"}).json()
    assert similar["results"] and all(r["id"] < own for r in similar["results"])
    _is_json_error(client.post("/api/search", params={"filter": "colour = 'red'"}, content=path.read_bytes()),
                   400, "colour")
