"""`ensure_shapesref`: generate the ShapesRef demo dataset once and reuse it while its parameters match."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from hrem.data.shapes.generate import FORMAT, VERSION, ShapesRefConfig, generate_shapesref, metadata

log = logging.getLogger(__name__)

DEFAULT_CACHE_ROOT = Path("hrem-out") / "cache"
MATCHED_KEYS = ("format", "version", "seed", "size", "splits")


def default_shapesref_dir(config: ShapesRefConfig, root: str | Path = DEFAULT_CACHE_ROOT) -> Path:
    """hrem-out/cache/shapesref-<params>, e.g. shapesref-v1-s128-seed0-8000-1000-1000."""
    name = f"shapesref-v{VERSION}-s{config.size}-seed{config.seed}-{config.train}-{config.dev}-{config.test}"
    return Path(root) / name


def _matches(folder: Path, config: ShapesRefConfig) -> bool:
    meta_path = folder / "shapesref.json"
    try:
        found = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    wanted = metadata(config)
    return isinstance(found, dict) and all(found.get(k) == wanted[k] for k in MATCHED_KEYS)


def _is_replaceable(folder: Path) -> bool:
    """Only an earlier ShapesRef folder (or an empty one) may be regenerated over: never a user's data."""
    if not any(folder.iterdir()):
        return True
    try:
        return json.loads((folder / "shapesref.json").read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def ensure_shapesref(cache_dir: str | Path | None = None, *, train: int = 8000, dev: int = 1000, test: int = 1000,
                     size: int = 128, seed: int = 0, workers: int | None = None) -> Path:
    """The ShapesRef folder for these parameters: `cache_dir` (default: default_shapesref_dir) when its
    shapesref.json matches them, else (re)generated there atomically."""
    config = ShapesRefConfig(train=train, dev=dev, test=test, size=size, seed=seed)
    config.validate()
    folder = Path(cache_dir) if cache_dir is not None else default_shapesref_dir(config)
    if folder.is_dir() and _matches(folder, config):
        log.info("ShapesRef: reusing %s", folder)
        return folder
    if folder.exists() and not (folder.is_dir() and _is_replaceable(folder)):
        raise ValueError(f"{folder}: exists and is not a ShapesRef folder (no shapesref.json with format "
                              f"{FORMAT!r}); refusing to overwrite it, choose another cache directory")
    log.info("ShapesRef: generating %d images (%dpx, seed %d) into %s", config.total, size, seed, folder)
    try:
        generate_shapesref(folder, config, workers=workers, overwrite=folder.exists())
    except OSError:
        # Another process may have finished the same folder first; its result is as good as ours.
        if folder.is_dir() and _matches(folder, config):
            return folder
        raise
    return folder
