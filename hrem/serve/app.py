"""The HTTP API and the page (FastAPI). Handlers are thin: validate, call the backend through the pool, shape JSON.

    GET /                      the search page (hrem/serve/static/)
    GET /healthz               {"status": "ok", "in_flight", "capacity", "grounding", ...backend info}
    GET /api/search?q=&k=      {"query", "k", "took_ms", "results": [{"id", "score", "key", "captions",
                                "image_url", ...metadata}]}
    GET /api/image/{id}        the image file (only from inside the corpus root)
    GET /api/ground?id=&q=     {"id", "query", "box": [x1, y1, x2, y2], "score", "mask": COCO RLE,
                                "width", "height", "took_ms"}
    GET /docs                  this API as one self-contained HTML page (hrem.serve.docs; no CDN)
Errors: JSON {"error", "status"} with 4xx/5xx (hrem.serve.errors); 503 when the model pool is full, 504
when a model call times out, 501 for /api/ground without a grounding model. Every response carries the
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

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.concurrency import run_in_threadpool

from hrem.serve.backend import Backend
from hrem.serve.catalog import Catalog
from hrem.serve.corpus import ImageRefused, corpus_root_from_manifest, resolve_image
from hrem.serve.docs import render_docs
from hrem.serve.errors import ApiError, install_error_handlers
from hrem.serve.limits import ModelPool, PoolSaturated, PoolTimeout, ServeLimits
from hrem.serve.middleware import BusyLimit, SecurityHeaders

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

    async def call_model(self, fn: Any, *args: Any) -> Any:
        try:
            return await self.pool.run(fn, *args)
        except PoolSaturated as exc:
            raise ApiError(503, f"{exc}; retry shortly") from None
        except PoolTimeout as exc:
            raise ApiError(504, str(exc)) from None

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
                "grounding": state.backend.ground is not None, "max_k": limits.max_k,
                "max_query_chars": limits.max_query_chars, **state.backend.info}

    @app.get("/api/search")
    async def search(q: str | None = None, k: int | None = None) -> dict[str, Any]:
        """Images best matching the text `q` (k results, default 20): id, score, key, captions, image_url."""
        query, k = check_query(q, limits), check_k(k, limits)
        started = time.perf_counter()
        hits = await state.call_model(state.backend.search, query, k)
        captions = await run_in_threadpool(state.catalog.captions, [h["id"] for h in hits])
        results = [{**hit, "captions": captions.get(int(hit["id"]), []), "image_url": f"/api/image/{hit['id']}"}
                   for hit in hits]
        return {"query": query, "k": k, "took_ms": round(1000 * (time.perf_counter() - started), 2),
                "results": results}


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
        result = await state.call_model(state.backend.ground, path, query)
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
    add_image_routes(app, state)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(render_docs(app.openapi()))

    return app
