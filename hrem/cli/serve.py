"""`hrem serve`: load the index, the query encoder and (optionally) the grounding model once, then serve the
page and the JSON API with uvicorn.

This module is where the layers meet: `hrem.serve` (the web app) and `hrem.pipeline` (Searcher, grounding)
are siblings that do not import each other, so the entry point wires them together (`create_app`).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from hrem.cli.options import add_device_argument, model_type

log = logging.getLogger(__name__)

DEMO_INDEX = Path("hrem-out/demo/index")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="web page + JSON API for search with grounding",
        description="Serve a search page and a JSON API (/api/search?q=&k=&filter=, POST /api/search with a "
                    "query image, /api/similar?id=, /api/image/{id}, /api/ground?id=&q=, /healthz) over an index built by "
                    "`hrem index`. Without --index it serves the embedded demo (hrem-out/demo/index; built first "
                    "with the shipped demo checkpoint when missing). "
                    "Needs the serve extra: pip install 'hrem[serve]'.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--index", default=None, help="index directory or folder with images/ + captions/ "
                                                       "(default: the embedded demo)")
    parser.add_argument("--grounding", default=None, help="grounding run directory or shipped name (default: "
                                                           "demo-grounding when present; 'none' disables)")
    parser.add_argument("--model", default=None, type=model_type("retrieval"), help="retrieval run directory or shipped name, e.g. demo "
                                                       "(default: recorded at embed time)")
    parser.add_argument("--corpus-root", default=None, help="folder the image keys are relative to "
                                                             "(default: recorded in the embeddings manifest)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (0.0.0.0 exposes it)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--mmap", action="store_true", help="memory-map the FAISS index instead of reading it")
    add_device_argument(parser)   # of the query encoder and the grounding model
    parser.add_argument("--max-k", type=int, default=100, help="largest k a request may ask for")
    parser.add_argument("--max-query-chars", type=int, default=300, help="longest query text accepted")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per model call before 504")
    parser.add_argument("--workers", type=int, default=1, help="threads running model calls")
    parser.add_argument("--queue", type=int, default=32, help="model calls that may wait; beyond -> 503")
    parser.add_argument("--max-connections", type=int, default=256,
                        help="open connections (beyond, the longest-idle ones are closed) and requests in progress "
                             "(beyond, 503; /healthz exempt)")
    parser.add_argument("--read-timeout", type=float, default=5.0,
                        help="seconds a client has to send a whole request (also: idle keep-alive, stalled reads)")
    parser.add_argument("--max-upload-mb", type=float, default=8.0,
                        help="largest query image body accepted (MiB); its pixels are capped at 16 M")
    parser.set_defaults(func=run)


def search_function(searcher: Any):
    def search(query: str, k: int, filter: Any = None) -> list[dict[str, Any]]:
        return [hit.as_dict() for hit in searcher.search_text([query], k=k, filter=filter)[0]]
    return search


def rerank_function(searcher: Any):
    """(query, k[, filter]) -> hits re-ranked with grounding at the default depth and weight (hrem.pipeline.rerank)."""
    from hrem.pipeline.rerank import RerankOptions

    def rerank_search(query: str, k: int, filter: Any = None) -> list[dict[str, Any]]:
        return [hit.as_dict() for hit in searcher.search_text([query], k=k, filter=filter, rerank=RerankOptions())[0]]
    return rerank_search


def image_search_function(searcher: Any):
    """(PIL image, k) -> image -> image hits, or None when the model reads precomputed features, not pixels."""
    if searcher.model.preprocess is None:
        log.warning("model %s reads precomputed region features: image queries (POST /api/search) answer 501",
                    searcher.model.run_dir.name)
        return None

    def image_search(image: Any, k: int, filter: Any = None) -> list[dict[str, Any]]:
        return [hit.as_dict() for hit in searcher.search_image([image], k=k, filter=filter, target="images")[0]]
    return image_search


def similar_function(searcher: Any):
    def similar(image_id: int, k: int, filter: Any = None) -> list[dict[str, Any]]:
        return [hit.as_dict() for hit in searcher.search_similar([image_id], k=k, filter=filter)[0]]
    return similar


def grounding_function(searcher: Any):
    """(image_path, query) -> {"box", "score", "mask"} through the searcher's grounding model, loaded now (the
    same one re-ranking uses: the weights are held once)."""
    grounder = searcher.grounder()

    def ground(image_path: Path, query: str) -> dict[str, Any]:
        result = grounder.ground([image_path], [query])[0].as_dict()
        return {"box": result["box"], "score": result["score"], "mask": result["mask_rle"]}
    return ground


def default_grounding_run() -> Path | None:
    from hrem.pipeline.ground import DEMO_GROUNDING_DIR

    return DEMO_GROUNDING_DIR if (DEMO_GROUNDING_DIR / "model.safetensors").is_file() else None


def create_app(index_dir: str | Path, grounding_run: str | Path | None = None, limits: Any = None,
               model_dir: str | Path | None = None, corpus_root: str | Path | None = None, device: Any = "cpu",
               mmap: bool = False):
    """The FastAPI app for an index: Searcher (+ grounding model) loaded now, once."""
    import torch

    from hrem.pipeline.search import Searcher
    from hrem.serve.app import build_app
    from hrem.serve.backend import Backend

    searcher = Searcher.load(index_dir, model_dir, device=torch.device(device), mmap=mmap,
                             grounding_model=grounding_run, image_root=corpus_root)
    if "images" not in searcher.indices:
        raise ValueError(f"{index_dir}: no images index; the page searches images by text "
                         f"(build one with `hrem index --modality images`)")
    images = searcher.indices["images"]
    ground = grounding_function(searcher) if grounding_run else None
    # Folder names only: /healthz is public and absolute paths tell a visitor about the machine.
    info = {"index": Path(index_dir).name, "images": int(images.info.ntotal), "dim": int(images.dim),
            "factory": images.info.factory, "grounding_run": Path(grounding_run).name if grounding_run else None}
    backend = Backend(search_function(searcher), images.emb_dir, ground,
                      Path(corpus_root) if corpus_root else None, info,
                      image_search=image_search_function(searcher), similar=similar_function(searcher),
                      rerank_search=rerank_function(searcher) if grounding_run else None)
    return build_app(backend, limits)


def _resolve_index(index: str | None) -> Path:
    if index:
        return Path(index)
    if not (DEMO_INDEX / "images" / "index.json").is_file():
        from hrem.pipeline.demo import run_demo

        log.info("no --index and no demo index yet: building the embedded demo under %s", DEMO_INDEX.parent)
        run_demo()
    return DEMO_INDEX


def run(args: argparse.Namespace) -> int:
    from hrem.serve.limits import ServeLimits
    from hrem.serve.server import build_server
    from hrem.utils.device import resolve_device

    limits = ServeLimits(max_k=args.max_k, default_k=min(20, args.max_k), max_query_chars=args.max_query_chars,
                         timeout_s=args.timeout, workers=args.workers, queue=args.queue,
                         read_timeout_s=args.read_timeout, max_connections=args.max_connections,
                         max_upload_bytes=int(args.max_upload_mb * 2**20))
    grounding = None if args.grounding == "none" else (args.grounding or default_grounding_run())
    if grounding is None:
        log.warning("no grounding model: results are served without box/mask (pass --grounding RUN)")
    app = create_app(_resolve_index(args.index), grounding, limits, args.model, args.corpus_root,
                     resolve_device(args.device), args.mmap)
    log.info("serving on http://%s:%d/", args.host, args.port)
    build_server(app, args.host, args.port, limits).run()
    return 0
