"""The embedded default (`python jobs/embed.py` / `hrem embed` with no arguments).

ShapesRef (generated once, cached under hrem-out/cache) + the demo checkpoint shipped in the package ->
embed the test split -> hrem-out/demo/emb -> FAISS indices for images and captions -> hrem-out/demo/index
-> a summary, the R@K table (exact and through the index) and the top-5 images for two example queries.
Re-running reuses everything that is already complete (shards are skipped by checksum).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from hrem.utils.paths import ASSETS_DIR

log = logging.getLogger(__name__)

DEMO_MODEL = ASSETS_DIR / "demo-retrieval"
DEMO_OUT = Path("hrem-out/demo")
# An attribute combination, a relation and a count, each true of 17-69 test images (so a top 5 can be right);
# picked from the test split's scene graphs before the model was trained, not from its results.
EXAMPLE_QUERIES = ("a small yellow star", "a red shape left of a yellow shape", "two red shapes")


def _read_modality(emb: Path, modality: str) -> tuple[np.ndarray, np.ndarray, pa.Table]:
    """(ids, float32 vectors, metadata rows in the same order) of one modality, through hrem.store (the
    demo split is small enough to hold)."""
    from hrem.store import iter_embeddings, read_metadata

    batches = list(iter_embeddings(emb, modality))
    ids = np.concatenate([b[0] for b in batches])
    vectors = np.concatenate([b[1] for b in batches]).astype(np.float32, copy=False)
    return ids, vectors, read_metadata(emb, modality, ids)


def exact_and_ann(emb: Path, index_root: Path) -> tuple[dict, dict]:
    """R@K of the embedded split, exactly (hrem.eval) and through the indices (search_eval)."""
    from hrem.eval import evaluate_retrieval
    from hrem.pipeline.search_eval import evaluate_with_index

    image_ids, img, _ = _read_modality(emb, "images")
    _, cap, captions = _read_modality(emb, "captions")
    row_of = {int(i): r for r, i in enumerate(image_ids)}
    caption_image = np.asarray([row_of[int(i)] for i in captions.column("image_id").to_pylist()], np.int64)
    exact = evaluate_retrieval(img, cap, caption_image, ("all",))["all"]
    ann = evaluate_with_index({m: index_root / m for m in ("images", "captions")}, img, cap, image_ids,
                              caption_image, k=100)
    return exact, ann


def print_examples(index_root: Path, emb: Path, data: Path | None = None, queries=EXAMPLE_QUERIES,
                   k: int = 5) -> None:
    """Top-k images per query with two of their captions; on a ShapesRef folder also whether each image
    really satisfies the query (hrem.eval.shapes_truth, from the scene graphs, independent of the model)."""
    from hrem.pipeline.search import Searcher

    searcher = Searcher.load(index_root)
    captions = _read_modality(emb, "captions")[2].select(["key", "image_id"]).to_pylist()
    by_image: dict[int, list[str]] = {}
    for row in captions:
        by_image.setdefault(int(row["image_id"]), []).append(row["key"])
    for query, hits in zip(queries, searcher.search_text(list(queries), k=k)):
        truth = query_truth(data, query, [hit.id for hit in hits]) if data else None
        verdict = f"  -- {sum(truth)}/{len(truth)} satisfy the query" if truth is not None else ""
        print(f"\nquery: {query!r}{verdict}")
        for rank, hit in enumerate(hits, 1):
            mark = "" if truth is None else ("  [yes]" if truth[rank - 1] else "  [no]")
            print(f"  {rank}. {hit.key}  (id {hit.id}, score {hit.score:.3f}){mark}")
            for caption in by_image.get(hit.id, [])[:2]:
                print(f"       - {caption}")


def query_truth(data: Path, query: str, image_ids: list[int]) -> list[bool] | None:
    """Whether each image (by imgid) of a ShapesRef test split satisfies the query; None when the folder is
    not ShapesRef or the query is outside the caption grammar."""
    import json

    from hrem.eval.shapes_grammar import CaptionParseError, Vocabulary, parse_caption
    from hrem.eval.shapes_truth import truth_matrix

    meta, scenes_file = data / "shapesref.json", data / "scenes" / "test.json"
    if not (meta.is_file() and scenes_file.is_file()):
        return None
    try:
        facts = parse_caption(query, Vocabulary.from_metadata(json.loads(meta.read_text(encoding="utf-8"))))
    except CaptionParseError:
        return None
    scenes = json.loads(scenes_file.read_text(encoding="utf-8"))
    by_id = {s["imgid"]: s for s in scenes["images"]}
    chosen = [by_id[i] for i in image_ids if i in by_id]
    if len(chosen) != len(image_ids):
        return None
    return truth_matrix([facts], chosen, int(scenes["size"]))[0].tolist()


def ground_examples(index_root: Path, overlay_dir: Path, queries=EXAMPLE_QUERIES, k: int = 3) -> None:
    """Ground each example query in its top-k images with the shipped grounding model; overlays to a folder."""
    from hrem.pipeline.ground import DEMO_GROUNDING_DIR
    from hrem.pipeline.search import Searcher

    if not (DEMO_GROUNDING_DIR / "model.safetensors").is_file():
        print(f"\ngrounding skipped: no demo grounding model in {DEMO_GROUNDING_DIR}")
        return
    from hrem.pipeline.overlay import write_grid

    searcher = Searcher.load(index_root)
    for stale in overlay_dir.glob("q*-r*.png") if overlay_dir.is_dir() else ():   # a previous run's results
        stale.unlink()
    for query, hits in zip(queries, searcher.search_text(list(queries), k=k, visualize=overlay_dir)):
        print(f"\ngrounded: {query!r}")
        for rank, hit in enumerate(hits, 1):
            g = hit.grounding
            box = ", ".join(f"{v:.0f}" for v in g.box)
            print(f"  {rank}. {hit.key}  box [{box}]  score {g.score:.3f}  mask {int(g.mask.sum())} px")
    rows = [sorted(overlay_dir.glob(f"q{q}-r*.png")) for q in range(1, len(queries) + 1)]
    sheet = write_grid(overlay_dir / "summary.png", rows)
    print(f"\ngrounding overlays (box, mask, query, score): {overlay_dir}/ (all of them: {sheet})")


def run_demo(out: str | Path = DEMO_OUT, model_dir: str | Path = DEMO_MODEL, data_dir: str | Path | None = None,
             show_progress: bool = True) -> int:
    from hrem.data.cache import ensure_shapesref
    from hrem.index import build_index
    from hrem.pipeline.embed import run_embed
    from hrem.pipeline.embed.config import EmbedConfig
    from hrem.pipeline.search_eval import side_by_side

    started = time.perf_counter()
    model_dir, out = Path(model_dir), Path(out)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir}: the demo checkpoint is missing (config.json + model.safetensors); "
                                f"reinstall hrem or pass --data/--model/--out")
    # Only the test split is embedded: draw just that (same imgids and pixels as the full dataset), or
    # reuse the full dataset when training already generated it.
    data = Path(data_dir) if data_dir else ensure_shapesref(splits=("test",))
    summary = run_embed(EmbedConfig(data=str(data), model=str(model_dir), out=str(out / "emb"), split="test",
                                    image_shard_size=500, caption_shard_size=2500), show_progress=show_progress)
    print("\n".join(summary.lines()))
    for modality in ("images", "captions"):
        info = build_index(out / "emb", out / "index" / modality, modality=modality, append=_has_index(out, modality))
        print(f"index ({modality}): {out / 'index' / modality}  {info.factory}, {info.ntotal} vectors, "
              f"recall@10 vs exact {info.tuning.get('recall_at_10')}")
    exact, ann = exact_and_ann(out / "emb", out / "index")
    print(f"\nShapesRef test split, {exact['n_images']} images / {exact['n_captions']} captions (R@K in %):")
    print("\n".join(side_by_side(exact, ann)))
    print_examples(out / "index", out / "emb", data)
    ground_examples(out / "index", out / "overlays")
    print(f"\ndemo finished in {time.perf_counter() - started:.1f} s; outputs under {out}/")
    return 0


def _has_index(out: Path, modality: str) -> bool:
    return (out / "index" / modality / "index.json").is_file()
