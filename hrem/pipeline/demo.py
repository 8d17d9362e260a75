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
EXAMPLE_QUERIES = ("a red circle left of a blue square", "two green triangles")


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


def print_examples(index_root: Path, emb: Path, queries=EXAMPLE_QUERIES, k: int = 5) -> None:
    from hrem.pipeline.search import Searcher

    searcher = Searcher.load(index_root)
    captions = _read_modality(emb, "captions")[2].select(["key", "image_id"]).to_pylist()
    by_image: dict[int, list[str]] = {}
    for row in captions:
        by_image.setdefault(int(row["image_id"]), []).append(row["key"])
    for query, hits in zip(queries, searcher.search_text(list(queries), k=k)):
        print(f"\nquery: {query!r}")
        for rank, hit in enumerate(hits, 1):
            print(f"  {rank}. {hit.key}  (id {hit.id}, score {hit.score:.3f})")
            for caption in by_image.get(hit.id, [])[:2]:
                print(f"       - {caption}")


def ground_examples(index_root: Path, overlay_dir: Path, queries=EXAMPLE_QUERIES, k: int = 3) -> None:
    """Ground each example query in its top-k images with the shipped grounding model; overlays to a folder."""
    from hrem.pipeline.ground import DEMO_GROUNDING_DIR
    from hrem.pipeline.search import Searcher

    if not (DEMO_GROUNDING_DIR / "model.safetensors").is_file():
        print(f"\ngrounding skipped: no demo grounding model in {DEMO_GROUNDING_DIR}")
        return
    searcher = Searcher.load(index_root)
    for query, hits in zip(queries, searcher.search_text(list(queries), k=k, visualize=overlay_dir)):
        print(f"\ngrounded: {query!r}")
        for rank, hit in enumerate(hits, 1):
            g = hit.grounding
            box = ", ".join(f"{v:.0f}" for v in g.box)
            print(f"  {rank}. {hit.key}  box [{box}]  score {g.score:.3f}  mask {int(g.mask.sum())} px")
    print(f"\ngrounding overlays (box, mask, query, score): {overlay_dir}/")


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
    print_examples(out / "index", out / "emb")
    ground_examples(out / "index", out / "overlays")
    print(f"\ndemo finished in {time.perf_counter() - started:.1f} s; outputs under {out}/")
    return 0


def _has_index(out: Path, modality: str) -> bool:
    return (out / "index" / modality / "index.json").is_file()
