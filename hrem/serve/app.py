"""The HTTP API and the page (FastAPI). Handlers are thin: validate, call the backend through the pool, shape JSON.

    GET /                      the search page (hrem/serve/static/)
    GET /healthz               {"status": "ok", "in_flight", "capacity", "grounding", ...backend info}
    GET /api/search?q=&k=      {"query", "k", "took_ms", "results": [{"id", "score", "key", "captions",
                                "image_url", ...metadata}]}
    GET /api/search?q=&filter= the same among images whose metadata match the filter (hrem.serve.filters,
                               docs/filters.md; echoed as "filter"; 400 naming the column of a mistake)
    POST /api/search?k=        the same JSON for a query image sent as the raw body (PNG, JPEG or WebP;
                               hrem.serve.uploads: 413 too large, 415 not an image, 422 undecodable)
    GET /api/similar?id=&k=    the same JSON: "more like this" stored image (the image itself left out)
    GET /api/image/{id}        the image file (only from inside the corpus root)
    GET /api/ground?id=&q=     {"id", "query", "box": [x1, y1, x2, y2], "score", "mask": COCO RLE,
                                "width", "height", "took_ms"}
    GET /docs                  this API as one self-contained HTML page (hrem.serve.docs; no CDN)
Errors: JSON {"error", "status"} with 4xx/5xx (hrem.serve.errors); 503 when the model pool is full, 504
when a model call times out, 501 for /api/ground without a grounding model and for image queries when
the backend has none (hrem.serve.backend). Every response carries the
security headers (hrem.serve.security); no body names a server directory (/healthz shows folder names only).

`build_app(backend, limits)` is the factory; `hrem.cli.serve.create_app(index_dir, grounding_run)` loads
the backend and calls it.
"""
from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.concurrency import run_in_threadpool

from hrem.serve.backend import Backend
from hrem.serve.catalog import Catalog
from hrem.serve.corpus import ImageRefused, corpus_root_from_manifest, resolve_image
from hrem.serve.docs import render_docs
from hrem.serve.errors import ApiError, install_error_handlers
from hrem.serve.filters import check_filter
from hrem.serve.limits import ModelPool, PoolSaturated, PoolTimeout, ServeLimits
from hrem.serve.middleware import BusyLimit, SecurityHeaders
from hrem.serve.uploads import check_format, decode_upload, read_upload
from hrem.utils.images import ImageTooLarge, ImageUnreadable

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
INT64_MAX = 2**63 - 1


class ServeState:
    """Everything loaded once at start-up and shared by the handlers."""

    def __init__(self, backend: Backend, limits: ServeLimits) -> None:
        self.backend = backend
        self.limits = limits
        self.catalog = Catalog(backend.emb_dir, limits.max_caption_rows)
        self.corpus_root = backend.corpus_root or corpus_root_from_manifest(backend.emb_dir)
        self.pool = ModelPool(limits.workers, limits.queue, limits.timeout_s)

    async def call_model(self, fn: Any, *args: Any, images: str = "an image of this request") -> Any:
        """`fn(*args)` in the model pool; a corpus image that cannot be decoded is a 422 naming `images`
        (never its path: the message goes to the client, the path to the server log)."""
        try:
            return await self.pool.run(fn, *args)
        except PoolSaturated as exc:
            raise ApiError(503, f"{exc}; retry shortly") from None
        except PoolTimeout as exc:
            raise ApiError(504, str(exc)) from None
        except ImageTooLarge as exc:
            log.warning("refused to decode %s: %s", images, exc)
            size = f"{exc.size[0]} x {exc.size[1]} pixels" if exc.size else "too many pixels"
            raise ApiError(422, f"{images} cannot be grounded: it is {size}, over the server's decoding budget "
                                f"of {exc.budget:,} pixels") from None
        except ImageUnreadable as exc:
            log.warning("could not decode %s: %s", images, exc)
            raise ApiError(422, f"{images} cannot be grounded: its file is not a readable image") from None

    async def image_path(self, image_id: int) -> Path:
        if self.corpus_root is None:
            raise ApiError(404, "this index has no image files to serve (no corpus root; see --corpus-root)")
        key = await run_in_threadpool(self.catalog.image_key, image_id)
        if key is None:
            raise ApiError(404, f"id: no image with id {image_id} in this index")
        try:
            return resolve_image(self.corpus_root, key)
        except ImageRefused as exc:
            log.warning("refused image id %d: %s", image_id, exc)
            raise ApiError(404, f"id: image {image_id} is not available") from None

    async def result_rows(self, hits: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Hits with the captions of each image and the URL the page loads it from."""
        captions = await run_in_threadpool(self.catalog.captions, [h["id"] for h in hits])
        return [{**hit, "captions": captions.get(int(hit["id"]), []), "image_url": f"/api/image/{hit['id']}"}
                for hit in hits]

    def search_upload(self, data: bytes, image_format: str, k: int, where: Any = None,
                      ) -> tuple[tuple[int, int], list[dict]]:
        """Decode an upload (on the model pool: decoding is the costly part) and search with it."""
        image = decode_upload(data, image_format, self.limits.max_upload_pixels)
        args = (image, k) if where is None else (image, k, where)
        return image.size, self.backend.image_search(*args)


def check_query(q: str | None, limits: ServeLimits) -> str:
    text = (q or "").strip()
    if not text:
        raise ApiError(422, "q: expected a non-empty query text, found none")
    if len(text) > limits.max_query_chars:
        raise ApiError(422, f"q: expected at most {limits.max_query_chars} characters, found {len(text)}")
    return text


def check_k(k: int | None, limits: ServeLimits) -> int:
    if k is None:
        return limits.default_k
    if not 1 <= k <= limits.max_k:
        raise ApiError(422, f"k: expected an integer in 1..{limits.max_k}, found {k}")
    return k


def check_id(image_id: int) -> int:
    if not -INT64_MAX <= image_id <= INT64_MAX:
        raise ApiError(422, f"id: expected a 64-bit integer, found {image_id}")
    return image_id


def _image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def add_search_routes(app: FastAPI, state: ServeState) -> None:
    limits = state.limits

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """Liveness and limits: status, model calls in flight, capacity, grounding, index size and model."""
        return {"status": "ok", "in_flight": state.pool.in_flight, "capacity": state.pool.capacity,
                "grounding": state.backend.ground is not None, "rerank": state.backend.rerank_search is not None,
                "max_k": limits.max_k,
                "max_query_chars": limits.max_query_chars, "image_search": state.backend.image_search is not None,
                "similar": state.backend.similar is not None, "max_upload_bytes": limits.max_upload_bytes,
                "max_upload_pixels": limits.max_upload_pixels, **state.backend.info}

    @app.get("/api/search")
    async def search(q: str | None = None, k: int | None = None, filter: str | None = None,
                     rerank: bool = False) -> dict[str, Any]:
        """Images best matching the text `q` (k results, default 20): id, score, key, captions, image_url.
        `filter` keeps only images whose metadata match a condition such as "split = 'test' and width >= 100"
        (docs/filters.md; 400 with the position of the mistake when it does not parse). `rerank=true` grounds
        the query in the top hits and re-orders them (each result then has retrieval_score and grounding)."""
        query, k = check_query(q, limits), check_k(k, limits)
        where = check_filter(filter, state.catalog.image_columns, limits.max_filter_chars)
        search_fn = state.backend.rerank_search if rerank else state.backend.search
        if search_fn is None:
            raise ApiError(501, "rerank is not available: start the server with a grounding model (--grounding)")
        # Unfiltered calls keep the two-argument search(query, k) of backends without filter support.
        args = (query, k) if where is None else (query, k, where)
        started = time.perf_counter()
        hits = await state.call_model(search_fn, *args, images="the image of one of the top hits")
        body = {"query": query, "k": k, "took_ms": _ms_since(started), "results": await state.result_rows(hits)}
        body = {**body, "rerank": True} if rerank else body
        return body if filter is None else {**body, "filter": filter}


def _ms_since(started: float) -> float:
    return round(1000 * (time.perf_counter() - started), 2)


def add_image_query_routes(app: FastAPI, state: ServeState) -> None:
    limits = state.limits

    @app.post("/api/search")
    async def search_by_image(request: Request, k: int | None = None, filter: str | None = None) -> dict[str, Any]:
        """Images most like the query image sent as the raw request body (PNG, JPEG or WebP, checked from its
        bytes; size and pixel limits in /healthz): the same JSON as GET /api/search, plus query_image."""
        k = check_k(k, limits)
        where = check_filter(filter, state.catalog.image_columns, limits.max_filter_chars)
        if state.backend.image_search is None:
            raise ApiError(501, "image queries are not available: this server's model reads no pixels "
                                "(precomputed region features) or was started without them")
        data = await read_upload(request, limits.max_upload_bytes)
        image_format = check_format(data)
        started = time.perf_counter()
        (width, height), hits = await state.call_model(state.search_upload, data, image_format, k, where)
        body = {"query": f"uploaded {image_format} image, {width} x {height}", "k": k,
                "query_image": {"format": image_format, "width": width, "height": height, "bytes": len(data)},
                "took_ms": _ms_since(started), "results": await state.result_rows(hits)}
        return body if filter is None else {**body, "filter": filter}

    @app.get("/api/similar")
    async def similar(id: int | None = None, k: int | None = None, filter: str | None = None) -> dict[str, Any]:
        """"More like this": images most like stored image `id` (itself left out): the same JSON as GET
        /api/search, plus similar_to."""
        if id is None:
            raise ApiError(422, "id: expected the id of an image, found none")
        image_id, k = check_id(id), check_k(k, limits)
        where = check_filter(filter, state.catalog.image_columns, limits.max_filter_chars)
        if state.backend.similar is None:
            raise ApiError(501, "more-like-this is not available on this server")
        if await run_in_threadpool(state.catalog.image_key, image_id) is None:
            raise ApiError(404, f"id: no image with id {image_id} in this index")
        started = time.perf_counter()
        args = (image_id, k) if where is None else (image_id, k, where)
        hits = await state.call_model(state.backend.similar, *args)
        body = {"query": f"more like image {image_id}", "similar_to": image_id, "k": k,
                "took_ms": _ms_since(started), "results": await state.result_rows(hits)}
        return body if filter is None else {**body, "filter": filter}


def add_image_routes(app: FastAPI, state: ServeState) -> None:
    @app.get("/api/image/{image_id}")
    async def image(image_id: int) -> FileResponse:
        """The image file of a result (only from inside the corpus root)."""
        path = await state.image_path(check_id(image_id))
        return FileResponse(path, headers={"Cache-Control": "max-age=3600"})

    @app.get("/api/ground")
    async def ground(id: int | None = None, q: str | None = None) -> dict[str, Any]:
        """Where the text `q` is in image `id`: box [x1, y1, x2, y2], score, mask (COCO RLE), width, height."""
        if id is None:
            raise ApiError(422, "id: expected the id of an image, found none")
        query = check_query(q, state.limits)
        if state.backend.ground is None:
            raise ApiError(501, "grounding is not available: start the server with --grounding RUN")
        path = await state.image_path(check_id(id))
        started = time.perf_counter()
        result = await state.call_model(state.backend.ground, path, query, images=f"image {id}")
        width, height = await run_in_threadpool(_image_size, path)
        return {"id": id, "query": query, **result, "width": width, "height": height,
                "took_ms": round(1000 * (time.perf_counter() - started), 2)}


def build_app(backend: Backend, limits: ServeLimits | None = None) -> FastAPI:
    """The FastAPI app over an already loaded backend (model + index are loaded once, by the caller)."""
    state = ServeState(backend, limits or ServeLimits())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        state.pool.shutdown()

    app = FastAPI(title="hrem", description="Image-text search with grounding", lifespan=lifespan,
                  docs_url=None, redoc_url=None)   # Swagger/ReDoc load from a CDN: /docs is our own page
    app.state.hrem = state
    install_error_handlers(app)
    app.add_middleware(BusyLimit, limit=state.limits.max_connections)
    app.add_middleware(SecurityHeaders)   # added last = outermost: also covers BusyLimit's 503
    add_search_routes(app, state)
    add_image_query_routes(app, state)
    add_image_routes(app, state)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(render_docs(app.openapi()))

    return app
