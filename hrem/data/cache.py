"""`ensure_shapesref`: generate the ShapesRef demo dataset once and reuse it while its parameters match."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from hrem.data.shapes.generate import FORMAT, SPLITS, VERSION, ShapesRefConfig, generate_shapesref, metadata

log = logging.getLogger(__name__)

DEFAULT_CACHE_ROOT = Path("hrem-out") / "cache"
MATCHED_KEYS = ("format", "version", "seed", "size", "splits")


def default_shapesref_dir(config: ShapesRefConfig, root: str | Path = DEFAULT_CACHE_ROOT,
                          splits: tuple[str, ...] = SPLITS) -> Path:
    """hrem-out/cache/shapesref-<params>, e.g. shapesref-v2-s128-seed0-8000-1000-1000 (+ -only-test); the
    caption version is part of the name, so a version-1 folder is never mistaken for version 2."""
    name = f"shapesref-v{config.caption_version}-s{config.size}-seed{config.seed}-{config.train}-{config.dev}-{config.test}"
    if set(splits) != set(SPLITS):
        name += "-only-" + "-".join(s for s in SPLITS if s in splits)
    return Path(root) / name


def _matches(folder: Path, config: ShapesRefConfig, splits: tuple[str, ...] = SPLITS) -> bool:
    """The folder holds these parameters and at least the wanted splits."""
    meta_path = folder / "shapesref.json"
    try:
        found = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    wanted = metadata(config)
    if not isinstance(found, dict) or not all(found.get(k) == wanted[k] for k in MATCHED_KEYS):
        return False
    return set(splits) <= set(found.get("generated_splits", SPLITS))


def _is_replaceable(folder: Path) -> bool:
    """Only an earlier ShapesRef folder (or an empty one) may be regenerated over: never a user's data."""
    if not any(folder.iterdir()):
        return True
    try:
        return json.loads((folder / "shapesref.json").read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def ensure_shapesref(cache_dir: str | Path | None = None, *, train: int = 8000, dev: int = 1000, test: int = 1000,
                     size: int = 128, seed: int = 0, workers: int | None = None,
                     splits: tuple[str, ...] = SPLITS, caption_version: int = VERSION) -> Path:
    """The ShapesRef folder for these parameters: `cache_dir` (default: default_shapesref_dir) when its
    shapesref.json matches them, else (re)generated there atomically.

    `splits` (on-disk names) asks for only some splits, e.g. ("test",) for the embedded demo: the full
    dataset's folder is reused when it exists, else only those splits are drawn (same imgids and pixels).
    """
    config = ShapesRefConfig(train=train, dev=dev, test=test, size=size, seed=seed, caption_version=caption_version)
    config.validate()
    candidates = [Path(cache_dir)] if cache_dir is not None else [default_shapesref_dir(config),
                                                                   default_shapesref_dir(config, splits=splits)]
    for candidate in candidates:
        if candidate.is_dir() and _matches(candidate, config, splits):
            log.info("ShapesRef: reusing %s", candidate)
            return candidate
    folder = candidates[-1]
    if folder.exists() and not (folder.is_dir() and _is_replaceable(folder)):
        raise ValueError(f"{folder}: exists and is not a ShapesRef folder (no shapesref.json with format "
                              f"{FORMAT!r}); refusing to overwrite it, choose another cache directory")
    log.info("ShapesRef: generating splits %s (%dpx, seed %d) into %s", list(splits), size, seed, folder)
    try:
        generate_shapesref(folder, config, workers=workers, overwrite=folder.exists(), splits=splits)
    except OSError:
        # Another process may have finished the same folder first; its result is as good as ours.
        if folder.is_dir() and _matches(folder, config, splits):
            return folder
        raise
    return folder
