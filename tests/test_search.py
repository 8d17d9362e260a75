"""Searcher and `hrem search` against a brute-force search over the Parquet embeddings; `hrem evaluate
--index` equals exact evaluation through a flat index; the ShapesRef folder path end to end."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from test_embed_support import make_run

from hrem.cli import main
from hrem.index import build_index
from hrem.pipeline.embed import run_embed
from hrem.pipeline.embed.config import EmbedConfig
from hrem.pipeline.search import Searcher
from hrem.pipeline.search_eval import capped_ranks


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A small ShapesRef folder embedded by a tiny random model, with images and captions indices."""
    from hrem.data.cache import ensure_shapesref

    root = tmp_path_factory.mktemp("search")
    data = ensure_shapesref(root / "shapes", train=8, dev=4, test=24, size=64)
    run = make_run(root / "run")
    emb = root / "emb"
    run_embed(EmbedConfig(data=str(data), model=str(run), out=str(emb), split="test", image_shard_size=10,
                          caption_shard_size=50, workers=0, device="cpu"), show_progress=False)
    for modality in ("images", "captions"):
        build_index(emb, root / "index" / modality, modality=modality)
    return {"data": data, "run": run, "emb": emb, "index": root / "index"}


def _table(emb, modality) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in sorted((emb / modality).glob("part-*.parquet"))])


def test_shapesref_ids_are_karpathy_ids(corpus):
    doc = json.loads(next(corpus["data"].glob("dataset_*.json")).read_text())
    test = [im for im in doc["images"] if im["split"] == "test"]
    images, captions = _table(corpus["emb"], "images"), _table(corpus["emb"], "captions")
    assert images.column("id").to_pylist() == [im["imgid"] for im in test]
    assert images.column("key").to_pylist() == [f"{im['filepath']}/{im['filename']}" for im in test]
    sents = [s for im in test for s in im["sentences"]]
    assert captions.column("id").to_pylist() == [s["sentid"] for s in sents]
    assert captions.column("image_id").to_pylist() == [s["imgid"] for s in sents]


def test_search_text_equals_brute_force(corpus):
    searcher = Searcher.load(corpus["index"])
    queries = ["a red circle left of a blue square", "two green triangles"]
    hits = searcher.search_text(queries, k=5)
    images = _table(corpus["emb"], "images")
    vectors = np.stack(images.column("embedding").to_numpy(zero_copy_only=False))
    ids = np.asarray(images.column("id").to_pylist())
    scores = searcher.encode_text(queries) @ vectors.T
    for q, row in enumerate(hits):
        order = np.argsort(-scores[q], kind="stable")[:5]
        assert [h.id for h in row] == ids[order].tolist()
        np.testing.assert_allclose([h.score for h in row], scores[q][order], rtol=1e-4, atol=1e-5)
        assert all(h.key.startswith("images/") for h in row)


def test_filter_and_image_queries(corpus):
    searcher = Searcher.load(corpus["index"])
    images = _table(corpus["emb"], "images")
    allowed = set(images.column("id").to_pylist()[::3])
    expr = pc.field("id").isin(sorted(allowed))
    hits = searcher.search_text(["a blue star"], k=4, filter=expr)[0]
    assert len(hits) == 4 and {h.id for h in hits} <= allowed
    text = "id in (" + ", ".join(str(i) for i in sorted(allowed)) + ")"   # the filter language (docs/filters.md)
    assert [h.id for h in searcher.search_text(["a blue star"], k=4, filter=text)[0]] == [h.id for h in hits]
    with pytest.raises(ValueError, match="pyarrow expressions are no longer accepted"):
        searcher.search_text(["a blue star"], k=4, filter="pc.field('id') > 3")
    first = corpus["data"] / images.column("key")[0].as_py()
    cap_hits = searcher.search_image([str(first)], k=3)[0]
    assert len(cap_hits) == 3 and all("image_id" in h.metadata for h in cap_hits)


def test_search_cli_json(corpus, capsys):
    assert main(["search", "--index", str(corpus["index"] / "images"), "a red circle", "-k", "3", "--json",
                 "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out[0]["query"] == "a red circle" and len(out[0]["results"]) == 3
    assert {"id", "score", "key"} <= set(out[0]["results"][0])


def test_capped_ranks():
    found = np.array([[5, 7, 9], [1, -1, -1], [2, 3, 4]])
    assert capped_ranks(found, np.array([9, 1, 8]), k=3).tolist() == [2, 0, 3]


def test_evaluate_with_flat_index_equals_exact(corpus, tmp_path, capsys):
    assert main(["evaluate", "--model", str(corpus["run"]), "--data", str(corpus["data"]), "--split", "test",
                 "--protocol", "all", "--out", str(tmp_path / "rep"), "--index", str(corpus["index"]),
                 "--device", "cpu", "--workers", "0"]) == 0
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    exact, ann = report["results"]["all"], report["meta"]["ann"]
    for direction in ("i2t", "t2i"):
        for k in (1, 5, 10):
            assert ann[direction][f"r{k}"] == pytest.approx(exact[f"{direction}_r{k}"], abs=0.01)
    assert "| ANN (" in capsys.readouterr().out
