"""hrem.serve: the web page and the JSON API (FastAPI; the `serve` extra).

    from hrem.serve.app import build_app            # build_app(Backend(search, emb_dir, ground), ServeLimits())
    hrem serve --index IDX [--grounding RUN]        # hrem.cli.serve.create_app loads Searcher + Grounder

Modules: app (routes), backend (what the app needs from the models), limits (ServeLimits, the bounded
model pool), corpus (corpus root, safe image paths), catalog (image keys and captions from the store),
errors (JSON errors), server (the uvicorn server the CLI runs), connections (read deadline, stalled readers,
connection cap), middleware (security headers, busy limit), security (the headers), docs (/docs page),
static/ (the page: index.html, app.js, rle.js, style.css).
"""
