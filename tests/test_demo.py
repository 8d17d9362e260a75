"""The embedded default on a tiny ShapesRef and a tiny random model: embeds, indexes, prints the R@K table
(exact and ANN) and the top-5 of the example queries; a second run reuses every shard."""
from __future__ import annotations

from test_embed_support import make_run

from hrem.pipeline.demo import EXAMPLE_QUERIES, run_demo
from hrem.store import load_manifest


def test_demo_end_to_end_and_rerun(tmp_path, capsys):
    from hrem.data.cache import ensure_shapesref

    data = ensure_shapesref(tmp_path / "shapes", train=8, dev=4, test=12, size=64)
    run = make_run(tmp_path / "run")
    assert run_demo(out=tmp_path / "demo", model_dir=run, data_dir=data, show_progress=False) == 0
    out = capsys.readouterr().out
    assert "| exact |" in out and "| ANN (" in out
    for query in EXAMPLE_QUERIES:
        assert f"query: {query!r}  -- " in out                 # judged from the scene graphs
    assert out.count("satisfy the query") == len(EXAMPLE_QUERIES)
    assert out.count("  5. images/") == len(EXAMPLE_QUERIES)
    assert "[yes]" in out or "[no]" in out
    assert load_manifest(tmp_path / "demo" / "emb").totals() == {"captions": 60, "images": 12}
    assert run_demo(out=tmp_path / "demo", model_dir=run, data_dir=data, show_progress=False) == 0
    assert "0 written" in capsys.readouterr().out
