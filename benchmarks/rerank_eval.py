"""Grounding-aware re-ranking, measured: text -> image R@1/5/10 on ShapesRef version 2 with and without.

    python benchmarks/rerank_eval.py [--workdir hrem-out/rerank] [--depth 10] [--captions-per-image 1]

Protocol: the shipped retrieval model (`demo`) embeds ShapesRef v2 dev and test (cached data, generated on
first use), each split gets an exact (Flat) images index, so that the approximate search does not blur
the effect. Every query caption searches its own split's images for the top --depth hits; the shipped
grounding model (`demo-grounding`) grounds the query in each hit; the hits are re-ordered by
retrieval score + weight x grounding score (hrem.pipeline.rerank) for every --weights value. The weight
is CHOSEN ON DEV (best R@1, then R@5) and only then is test read at weight 0 (plain retrieval) and at the
chosen weight. Ranks beyond --depth count as misses, so R@K is exact for K <= depth. Also printed: the
cost per query of the search alone and of the grounding, timed in the same run.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

RECALL_KS = (1, 5, 10)


def prepare_split(data: Path, workdir: Path, split: str) -> Path:
    """Embeddings of one split with the shipped demo model and an exact images index; reused when present."""
    from hrem.index import build_index
    from hrem.pipeline.demo import DEMO_MODEL
    from hrem.pipeline.embed import run_embed
    from hrem.pipeline.embed.config import EmbedConfig

    emb, index = workdir / f"emb-{split}", workdir / f"index-{split}"
    run_embed(EmbedConfig(data=str(data), model=str(DEMO_MODEL), out=str(emb), split=split), show_progress=True)
    if not (index / "images" / "index.json").is_file():
        build_index(emb, index / "images", modality="images", factory="Flat")
    return index


def query_captions(index: Path, per_image: int) -> tuple[list[str], np.ndarray]:
    """The first `per_image` captions of every image (text, image id), in caption-id order."""
    from hrem.index.info import read_info
    from hrem.store import iter_embeddings, read_metadata

    emb = Path(read_info(index / "images").embeddings.path)
    ids = np.concatenate([batch[0] for batch in iter_embeddings(emb, "captions")])
    rows = read_metadata(emb, "captions", ids, ["key", "image_id"]).to_pylist()
    taken: dict[int, int] = {}
    texts, targets = [], []
    for row in rows:
        image = int(row["image_id"])
        if taken.get(image, 0) < per_image:
            taken[image] = taken.get(image, 0) + 1
            texts.append(str(row["key"]))
            targets.append(image)
    return texts, np.asarray(targets, np.int64)


def grounded_hits(index: Path, texts: list[str], depth: int, batch: int) -> tuple[list, dict]:
    """Top-depth grounded hits per query, with the seconds spent searching and grounding."""
    from tqdm import tqdm

    from hrem.pipeline.search import Searcher

    searcher = Searcher.load(index)
    out, seconds = [], {"search": 0.0, "ground": 0.0}
    for start in tqdm(range(0, len(texts), batch), desc=f"ground {index.name}", dynamic_ncols=True):
        chunk = texts[start:start + batch]
        began = time.perf_counter()
        hits = searcher.search_text(chunk, k=depth)
        searched = time.perf_counter()
        out += searcher.ground_hits(chunk, hits)
        seconds["search"] += searched - began
        seconds["ground"] += time.perf_counter() - searched
    return out, seconds


def recalls(rows: list, targets: np.ndarray, weight: float, depth: int) -> dict[int, float]:
    from hrem.pipeline.rerank import RerankOptions, rerank_hits

    ordered = rerank_hits(rows, RerankOptions(depth=depth, weight=weight), depth) if weight else rows
    ranks = np.array([next((r for r, hit in enumerate(row) if hit.id == t), depth)
                      for row, t in zip(ordered, targets)])
    return {k: 100.0 * float(np.mean(ranks < k)) for k in RECALL_KS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("hrem-out/rerank"))
    parser.add_argument("--depth", type=int, default=10, help="hits grounded and re-ranked per query")
    parser.add_argument("--captions-per-image", type=int, default=1, help="query captions per image (1-5)")
    parser.add_argument("--weights", type=float, nargs="+",
                        default=[0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0])
    parser.add_argument("--batch", type=int, default=50, help="queries per search + grounding call")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    import torch

    from hrem.data.cache import ensure_shapesref

    torch.set_num_threads(args.threads)
    data = ensure_shapesref(splits=("val", "test"))   # on-disk split names: val = dev
    results = {}
    for split in ("dev", "test"):
        index = prepare_split(data, args.workdir, split)
        texts, targets = query_captions(index, args.captions_per_image)
        rows, seconds = grounded_hits(index, texts, args.depth, args.batch)
        results[split] = (rows, targets, seconds, len(texts))
    rows, targets, _, _ = results["dev"]
    dev = {w: recalls(rows, targets, w, args.depth) for w in args.weights}
    chosen = max(args.weights, key=lambda w: (dev[w][1], dev[w][5], -w))
    print(f"ShapesRef v2, shipped demo + demo-grounding, depth {args.depth}, {args.captions_per_image} caption(s) "
          f"per image, {args.threads} thread(s); t2i R@1/5/10 in %")
    for w in args.weights:
        r = dev[w]
        print(f"  dev  weight {w:<5g} R@1 {r[1]:5.1f}  R@5 {r[5]:5.1f}  R@10 {r[10]:5.1f}"
              + ("  <- chosen on dev" if w == chosen else ""))
    rows, targets, seconds, n = results["test"]
    best_nonzero = max((w for w in args.weights if w), key=lambda w: (dev[w][1], dev[w][5], -w), default=chosen)
    for w in sorted({0.0, chosen, best_nonzero}):
        r = recalls(rows, targets, w, args.depth)
        print(f"  test weight {w:<5g} R@1 {r[1]:5.1f}  R@5 {r[5]:5.1f}  R@10 {r[10]:5.1f}  ({n} queries)")
    on_target = [h.grounding.score for row, t in zip(rows, targets) for h in row if h.id == t]
    off_target = [h.grounding.score for row, t in zip(rows, targets) for h in row if h.id != t]
    print(f"  grounding score on test: the query's own image {np.mean(on_target):.3f} (n {len(on_target)}), "
          f"the other hits {np.mean(off_target):.3f} (n {len(off_target)})")
    print(f"  cost per query on test: search {1000 * seconds['search'] / n:.1f} ms, grounding {args.depth} hits "
          f"{1000 * seconds['ground'] / n:.1f} ms ({seconds['ground'] / max(seconds['search'], 1e-9):.0f}x the search)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
