"""Search results carry grounding: `Searcher.search_text(ground=True)` and `hrem search --ground --json
--visualize` equal grounding each retrieved image directly, and the overlays are written."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_embed_support import make_run

from hrem.checkpoint import save_run
from hrem.cli import main
from hrem.eval.rle import rle_decode
from hrem.factory import create_model, load_card
from hrem.index import build_index
from hrem.pipeline.embed import run_embed
from hrem.pipeline.embed.config import EmbedConfig
from hrem.pipeline.ground import Grounder
from hrem.pipeline.search import Searcher


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from hrem.data.cache import ensure_shapesref

    root = tmp_path_factory.mktemp("gsearch")
    data = ensure_shapesref(root / "shapes", train=4, dev=2, test=10, size=64, workers=1)
    run = make_run(root / "run")
    run_embed(EmbedConfig(data=str(data), model=str(run), out=str(root / "emb"), split="test",
                          image_shard_size=10, caption_shard_size=50, workers=0, device="cpu"), show_progress=False)
    build_index(root / "emb", root / "index" / "images", modality="images")
    torch.manual_seed(1)
    card = load_card("mcn-tiny")
    save_run(root / "ground", create_model(card), card)
    return {"data": data, "index": root / "index", "ground": root / "ground", "root": root}


def test_search_text_ground_adds_box_score_mask(corpus, tmp_path):
    searcher = Searcher.load(corpus["index"], grounding_model=corpus["ground"])
    queries = ["a red circle left of a blue square", "two green triangles"]
    plain = searcher.search_text(queries, k=3)
    grounded = searcher.search_text(queries, k=3, ground=True, visualize=tmp_path / "ov")
    grounder = Grounder.load(corpus["ground"])
    for query, row, plain_row in zip(queries, grounded, plain):
        assert [h.id for h in row] == [h.id for h in plain_row] and all(h.grounding is not None for h in row)
        direct = grounder.ground([corpus["data"] / h.key for h in row], [query] * len(row))
        for hit, g in zip(row, direct):
            # the search grounds k images per batch, the direct call a different batch: CPU kernels (e.g.
            # AVX-512 GEMM blocking) may round differently per batch size, so equal to float32 precision
            np.testing.assert_allclose(hit.grounding.box, g.box, rtol=1e-5, atol=1e-4)
            assert hit.grounding.score == pytest.approx(g.score)
            record = hit.as_dict()["grounding"]
            assert np.array_equal(rle_decode(record["mask_rle"]), g.mask) and len(record["box"]) == 4
    assert len(list((tmp_path / "ov").glob("q*-r*.png"))) == 6


def test_search_cli_ground_json(corpus, tmp_path, capsys):
    assert main(["search", "a red circle", "--index", str(corpus["index"]), "-k", "2", "--ground", "--json",
                 "--grounding-model", str(corpus["ground"]), "--visualize", str(tmp_path / "v"),
                 "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    payload = json.loads(out[out.index("["):out.rindex("]") + 1])
    results = payload[0]["results"]
    assert len(results) == 2 and all({"box", "score", "mask_rle"} <= set(r["grounding"]) for r in results)
    assert len(list((tmp_path / "v").glob("*.png"))) == 2


def test_missing_grounding_model_is_reported(corpus):
    searcher = Searcher.load(corpus["index"], grounding_model=corpus["root"] / "nothing")
    with pytest.raises(FileNotFoundError, match="grounding model not available"):
        searcher.search_text(["a red circle"], k=1, ground=True)


def test_demo_ends_by_grounding_its_queries(corpus, tmp_path, capsys):
    from hrem.pipeline.demo import EXAMPLE_QUERIES, ground_examples
    from hrem.pipeline.ground import DEMO_GROUNDING_DIR

    assert (DEMO_GROUNDING_DIR / "model.safetensors").is_file(), "the shipped demo grounding model is missing"
    ground_examples(corpus["index"], tmp_path / "overlays", k=2)
    out = capsys.readouterr().out
    expected = 2 * len(EXAMPLE_QUERIES)
    assert all(f"grounded: {q!r}" in out for q in EXAMPLE_QUERIES) and out.count("box [") == expected
    assert f"grounding overlays (box, mask, query, score): {tmp_path / 'overlays'}/" in out
    # one overlay per grounded image plus the summary sheet
    overlays = sorted(p.name for p in (tmp_path / "overlays").glob("*.png"))
    assert len(overlays) == expected + 1 and "summary.png" in overlays, overlays
