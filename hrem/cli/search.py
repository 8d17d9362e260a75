"""`hrem search`: encode a text query with the model that made the index and print the nearest items."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "search",
        help="query an index with text",
        description="Encode the query with the model recorded in the index (or --model), search the image "
                    "index and print ids, scores, keys and metadata. --filter takes a pyarrow expression over "
                    "the Parquet metadata columns, e.g. \"pc.field('split') == 'test'\".",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("query", nargs="+", help="one or more text queries")
    parser.add_argument("--index", required=True, help="index directory (or a folder with images/ and captions/)")
    parser.add_argument("--model", default=None, help="run directory (default: the one recorded at embed time)")
    parser.add_argument("-k", type=int, default=10, help="results per query")
    parser.add_argument("--filter", default=None, help="pyarrow expression over metadata columns (pc, ds in scope)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda:N (query encoder)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--ground", action="store_true",
                        help="ground the query in each result: box [x1, y1, x2, y2], score, mask (COCO RLE in --json)")
    parser.add_argument("--visualize", type=Path, default=None, metavar="DIR",
                        help="write overlay PNGs (box, mask, query, score) of the grounded results to DIR")
    parser.add_argument("--grounding-model", type=Path, default=None,
                        help="grounding run directory (default: the shipped demo grounding model)")
    parser.add_argument("--image-root", type=Path, default=None,
                        help="folder the result keys are relative to (default: the embedded dataset's folder)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hrem.pipeline.search import Searcher, parse_filter
    from hrem.utils.device import resolve_device

    searcher = Searcher.load(args.index, args.model, device=resolve_device(args.device),
                             grounding_model=args.grounding_model, image_root=args.image_root)
    results = searcher.search_text(args.query, k=args.k, filter=parse_filter(args.filter), ground=args.ground,
                                   visualize=args.visualize)
    if args.json:
        print(json.dumps([{"query": q, "results": [h.as_dict() for h in hits]}
                          for q, hits in zip(args.query, results)], indent=2))
        return 0
    for query, hits in zip(args.query, results):
        print(f"query: {query!r}  ({len(hits)} result(s))")
        for rank, hit in enumerate(hits, 1):
            meta = "  ".join(f"{k}={v}" for k, v in hit.metadata.items())
            print(f"  {rank:>3}. id {hit.id:<10} score {hit.score:.4f}  {hit.key}  {meta}".rstrip())
            if hit.grounding is not None:
                box = ", ".join(f"{v:.1f}" for v in hit.grounding.box)
                print(f"       grounded: box [{box}]  score {hit.grounding.score:.3f}  "
                      f"mask {int(hit.grounding.mask.sum())} px")
    if args.visualize:
        print(f"overlays: {args.visualize}/")
    return 0
