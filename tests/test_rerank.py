"""Grounding-aware re-ranking: the ordering against a naive reference, its validation, and the real path
through `Searcher.search_text(rerank=...)`, `hrem search --rerank` and `GET /api/search?rerank=true`."""
from __future__ import annotations

import json

import numpy as np
import pytest
from test_ground_search import corpus  # noqa: F401  (module fixture: tiny index + tiny grounding run)

from hrem.cli import main
from hrem.pipeline.ground import Grounder, Grounding
from hrem.pipeline.rerank import RerankOptions, rerank_hits, rerank_row
from hrem.pipeline.search import Searcher, SearchHit

QUERIES = ["a red circle left of a blue square", "two green triangles"]


def _hit(i: int, score: float, grounding_score: float) -> SearchHit:
    g = Grounding((0.0, 0.0, 1.0, 1.0), grounding_score, np.zeros((2, 2), bool))
    return SearchHit(i, score, f"img{i}.png", {}, g)


def _naive(hits, weight, k):
    """Reference: combined scores by a loop, ordered by (-combined, original position)."""
    keyed = [(-(h.score + weight * h.grounding.score), pos, h.id) for pos, h in enumerate(hits)]
    return [hit_id for _, _, hit_id in sorted(keyed)][:k]


def test_rerank_row_matches_a_naive_reference():
    rng = np.random.default_rng(0)
    for trial in range(50):
        n, k = int(rng.integers(1, 15)), int(rng.integers(1, 15))
        # coarse values so ties happen and their order (retrieval order) is checked too
        hits = [_hit(i, float(rng.integers(0, 4)) / 4, float(rng.integers(0, 4)) / 4) for i in range(n)]
        weight = float(rng.choice([0.0, 0.5, 1.0, 3.0]))
        out = rerank_row(hits, weight, k)
        assert [h.id for h in out] == _naive(hits, weight, k), trial
        for h in out:
            original = hits[h.id]
            assert h.retrieval_score == original.score
            assert h.score == pytest.approx(original.score + weight * original.grounding.score)


def test_grounding_can_promote_a_lower_hit():
    hits = [_hit(0, 0.60, 0.05), _hit(1, 0.58, 0.95)]
    assert [h.id for h in rerank_row(hits, 0.0, 2)] == [0, 1]
    assert [h.id for h in rerank_row(hits, 1.0, 2)] == [1, 0]
    assert rerank_row(hits, 1.0, 2)[0].as_dict()["retrieval_score"] == 0.58


def test_rerank_refuses_ungrounded_hits_and_bad_options():
    with pytest.raises(ValueError, match="carry no grounding"):
        rerank_hits([[SearchHit(3, 0.5, "a.png")]], RerankOptions(), 1)
    with pytest.raises(ValueError, match="depth: expected >= 1"):
        RerankOptions(depth=0)
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="weight: expected a number >= 0"):
            RerankOptions(weight=bad)


def test_searcher_rerank_equals_grounding_the_deeper_list(corpus):  # noqa: F811
    searcher = Searcher.load(corpus["index"], grounding_model=corpus["ground"])
    options = RerankOptions(depth=6, weight=2.0)
    reranked = searcher.search_text(QUERIES, k=3, rerank=options)
    deeper = searcher.search_text(QUERIES, k=6)
    grounder = Grounder.load(corpus["ground"])
    for query, row, deep in zip(QUERIES, reranked, deeper):
        direct = grounder.ground([corpus["data"] / h.key for h in deep], [query] * len(deep))
        combined = {h.id: h.score + 2.0 * g.score for h, g in zip(deep, direct)}
        expected = sorted(combined, key=lambda i: -combined[i])[:3]
        assert [h.id for h in row] == expected
        for hit in row:
            assert hit.score == pytest.approx(combined[hit.id], abs=1e-5)
            assert hit.retrieval_score == pytest.approx(next(h.score for h in deep if h.id == hit.id))
            assert hit.grounding is not None


def test_search_cli_rerank_json_and_refusals(corpus, capsys):  # noqa: F811
    base = ["--index", str(corpus["index"]), "--grounding-model", str(corpus["ground"]), "--device", "cpu"]
    assert main(["search", "a red circle", *base, "-k", "2", "--rerank", "--rerank-depth", "4", "--json"]) == 0
    out = capsys.readouterr().out
    results = json.loads(out[out.index("["):out.rindex("]") + 1])[0]["results"]
    assert len(results) == 2 and all("retrieval_score" in r and "grounding" in r for r in results)
    assert results[0]["score"] >= results[1]["score"]
    assert main(["search", "a red circle", *base, "--rerank", "--rerank-depth", "0"]) == 1   # before loading
    assert "rerank depth: expected >= 1" in capsys.readouterr().err
    image = corpus["data"] / "images" / sorted(p.name for p in (corpus["data"] / "images").iterdir())[0]
    assert main(["search", "--image", str(image), *base, "--rerank"]) == 1
    assert "--rerank" in capsys.readouterr().err


def test_api_search_rerank(corpus):  # noqa: F811
    from fastapi.testclient import TestClient

    from hrem.cli.serve import create_app

    with TestClient(create_app(corpus["index"], grounding_run=corpus["ground"])) as client:
        assert client.get("/healthz").json()["rerank"] is True
        body = client.get("/api/search", params={"q": "a red circle", "k": 2, "rerank": "true"}).json()
        assert body["rerank"] is True and len(body["results"]) == 2
        assert all("retrieval_score" in r and "grounding" in r for r in body["results"])
    with TestClient(create_app(corpus["index"], grounding_run=None)) as client:
        response = client.get("/api/search", params={"q": "a red circle", "rerank": "true"})
        assert response.status_code == 501 and "grounding model" in response.json()["error"]
