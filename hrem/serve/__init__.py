"""hrem.serve: the web page and the JSON API (FastAPI; the `serve` extra).

    from hrem.serve.app import build_app            # build_app(Backend(search, emb_dir, ground), ServeLimits())
    hrem serve --index IDX [--grounding RUN]        # hrem.cli.serve.create_app loads Searcher + Grounder

Modules: app (routes), backend (what the app needs from the models), limits (ServeLimits, the bounded
model pool), corpus (corpus root, safe image paths), catalog (image keys and captions from the store),
errors (JSON errors), static/ (the page: index.html, app.js, rle.js, style.css).
"""
