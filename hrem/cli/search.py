"""`hrem search`: encode text queries (or query images, --image) with the model that made the index and print
the nearest items. Text searches the images index; an image searches the images index (image -> image)
and/or the captions index (image -> text), chosen with --target."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from hrem.cli.options import add_device_argument, add_threads_argument, model_type
from hrem.pipeline.rerank import DEFAULT_DEPTH, DEFAULT_WEIGHT, RerankOptions   # light: no torch

IMAGE_TARGETS = ("images", "captions")   # = hrem.pipeline.search.IMAGE_TARGETS (not imported: keeps --help light)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "search",
        help="query an index with text or images",
        description="Encode the query with the model recorded in the index (or --model), search the image "
                    "index and print ids, scores, keys and metadata. --filter keeps only rows whose Parquet "
                    "metadata match a SQL-WHERE-like condition, e.g. \"split = 'test' and width >= 100\" "
                    "(= != <> < <= > >=, in (...), not in (...), is [not] null, and, or, not, parentheses; "
                    "strings in single quotes; docs/filters.md). It is parsed, never run as code.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("query", nargs="*", help="one or more text queries (or none, with --image)")
    parser.add_argument("--image", nargs="+", type=Path, default=None, metavar="PATH",
                        help="query image file(s) instead of text (.npy region rows for precomputed-feature models)")
    parser.add_argument("--target", choices=["auto", *IMAGE_TARGETS], default="auto",
                        help="what --image searches: images (image -> image), captions (image -> text); auto = "
                             "every one of the two indices that exists")
    parser.add_argument("--index", required=True, help="index directory (or a folder with images/ and captions/)")
    parser.add_argument("--model", default=None, type=model_type("retrieval"), help="retrieval run directory or shipped name, e.g. demo "
                                                        "(default: the one recorded at embed time)")
    parser.add_argument("-k", type=int, default=10, help="results per query")
    parser.add_argument("--filter", default=None, metavar="CONDITION",
                        help="metadata condition, e.g. \"split = 'test' and color in ('red', 'blue')\" "
                             "(docs/filters.md)")
    add_device_argument(parser)   # of the query encoder (and the grounding model)
    add_threads_argument(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--ground", action="store_true",
                        help="ground the query in each result: box [x1, y1, x2, y2], score, mask (COCO RLE in --json)")
    parser.add_argument("--visualize", type=Path, default=None, metavar="DIR",
                        help="write overlay PNGs (box, mask, query, score) of the grounded results to DIR")
    parser.add_argument("--rerank", action="store_true",
                        help="grounding-aware re-ranking: ground the query in the top --rerank-depth images and "
                             "order them by retrieval score + --rerank-weight x grounding score (docs/search.md)")
    parser.add_argument("--rerank-depth", type=int, default=DEFAULT_DEPTH, metavar="N",
                        help="with --rerank: hits grounded and re-ranked per query (the top -k are printed)")
    parser.add_argument("--rerank-weight", type=float, default=DEFAULT_WEIGHT, metavar="W",
                        help="with --rerank: weight of the grounding score in the combined score")
    parser.add_argument("--grounding-model", type=model_type("grounding", Path), default=None,
                        help="grounding run directory or shipped name (default: demo-grounding)")
    parser.add_argument("--image-root", type=Path, default=None,
                        help="folder the result keys are relative to (default: the embedded dataset's folder)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hrem.pipeline.search import Searcher
    from hrem.store import parse_where
    from hrem.utils.device import resolve_device, set_threads

    check_query_kind(args)
    # built (and so checked) before any model loads
    rerank = RerankOptions(args.rerank_depth, args.rerank_weight) if args.rerank else None
    if args.filter is not None:
        parse_where(args.filter)   # syntax errors before the model loads; columns are checked by the search
    set_threads(args.threads)
    searcher = Searcher.load(args.index, args.model, device=resolve_device(args.device),
                             grounding_model=args.grounding_model, image_root=args.image_root)
    if args.image:
        return run_image_queries(searcher, args, args.filter)
    results = searcher.search_text(args.query, k=args.k, filter=args.filter, ground=args.ground,
                                   visualize=args.visualize, rerank=rerank)
    if args.json:
        print(json.dumps([{"query": q, "results": [h.as_dict() for h in hits]}
                          for q, hits in zip(args.query, results)], indent=2))
        return 0
    for query, hits in zip(args.query, results):
        print(f"query: {query!r}  ({len(hits)} result(s))")
        for rank, hit in enumerate(hits, 1):
            print(hit_line(rank, hit))
            if hit.grounding is not None:
                box = ", ".join(f"{v:.1f}" for v in hit.grounding.box)
                print(f"       grounded: box [{box}]  score {hit.grounding.score:.3f}  "
                      f"mask {int(hit.grounding.mask.sum())} px")
    if args.visualize:
        print(f"overlays: {args.visualize}/")
    return 0


def hit_line(rank: int, hit) -> str:
    meta = "  ".join(f"{k}={v}" for k, v in hit.metadata.items())
    retrieval = "" if hit.retrieval_score is None else f" (retrieval {hit.retrieval_score:.4f})"
    return f"  {rank:>3}. id {hit.id:<10} score {hit.score:.4f}{retrieval}  {hit.key}  {meta}".rstrip()


def check_query_kind(args: argparse.Namespace) -> None:
    """Text queries or --image, not both; grounding needs text; --target is for --image."""
    if bool(args.query) == bool(args.image):
        raise ValueError("expected text queries or --image PATH [PATH ...], found "
                         + ("both" if args.query else "neither"))
    if args.image and (args.ground or args.visualize or args.rerank):
        raise ValueError("--ground / --visualize / --rerank: grounding needs a text query; they do not apply "
                         "to --image")
    if args.query and args.target != "auto":
        raise ValueError(f"--target {args.target}: applies to --image queries (text always searches images)")


def image_targets(target: str, loaded: dict) -> list[str]:
    """The indices an image query searches: the one asked for, or (auto) each of images/captions present."""
    if target != "auto":
        return [target]
    return [t for t in IMAGE_TARGETS if t in loaded]


def run_image_queries(searcher, args: argparse.Namespace, filter) -> int:
    vectors = searcher.encode_images(args.image)   # once, whatever the number of targets
    results = [(target, searcher.search_vectors(vectors, target, args.k, filter))
               for target in image_targets(args.target, searcher.indices)]
    rows = [(str(path), target, hits[i]) for i, path in enumerate(args.image) for target, hits in results]
    if args.json:
        print(json.dumps([{"image": path, "target": target, "results": [h.as_dict() for h in hits]}
                          for path, target, hits in rows], indent=2))
        return 0
    for path, target, hits in rows:
        print(f"image: {path} -> {target}  ({len(hits)} result(s))")
        for rank, hit in enumerate(hits, 1):
            print(hit_line(rank, hit))
    return 0
