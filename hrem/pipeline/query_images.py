"""Query images -> what the model's image side reads, for `Searcher.search_image` and `hrem search --image`.

Grid and detected_regions cards read pixels. A path goes through the card's own preprocessor, which
decodes it with `hrem.utils.images.load_image_file` (pixel budget checked from the header, then decode);
a PIL image (e.g. an upload the server already decoded under its budget) or a uint8 array goes straight
to the preprocessor. A detected_regions card carries its region detector, so raw images work as they do
in `hrem embed`.

Regions cards (HREM's precomputed SCAN/BUTD features) read [R, F] region rows, as `hrem embed` does: a
float array or a `.npy` file of that shape. An image file is refused, as the embed job refuses image files
for such a card: turning pixels into the corpus' rows needs the very detector and settings that made the
features, which the card does not record. Run `hrem regions` on the query images (same detector as the
corpus) and pass the rows, or use a detected_regions card, which embeds raw images itself.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hrem.checkpoint.loaded import LoadedModel
from hrem.pipeline.embed.inputs import check_features


def query_inputs(loaded: LoadedModel, images: Sequence[Any]) -> list[Any]:
    """One model input per query image: a [3, S, S] tensor, a (pixels, content) pair or [R, F] rows."""
    if isinstance(images, (str, Path)) or len(images) == 0:
        raise ValueError("images: expected a non-empty list of images (paths, PIL images or arrays)")
    if loaded.preprocess is not None:
        return [loaded.preprocess(image) for image in images]
    return [region_rows(loaded, image, position) for position, image in enumerate(images)]


def region_rows(loaded: LoadedModel, item: Any, position: int) -> torch.Tensor:
    """[R, F] float32 rows of one query for a regions card, from an array or a .npy file."""
    where = f"images[{position}]"
    if isinstance(item, (str, Path)):
        path = Path(item)
        if path.suffix.lower() != ".npy":
            raise ValueError(f"{path}: model {loaded.run_dir} (card '{loaded.card.name}') reads precomputed "
                             f"region features [R, {loaded.feature_dim}], not image files; pass a .npy file of "
                             f"region rows made with the corpus' detector (`hrem regions`), or search with a "
                             f"detected_regions model, which embeds raw images itself")
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such region-feature file")
        item, where = np.load(path, allow_pickle=False), str(path)
    if not isinstance(item, (np.ndarray, torch.Tensor)):
        raise TypeError(f"{where}: model {loaded.run_dir} (card '{loaded.card.name}') reads region features "
                        f"[R, {loaded.feature_dim}]; found a {type(item).__name__}")
    array = np.asarray(item, dtype=np.float32)
    reason = check_features(array, loaded.feature_dim, where)
    if reason:
        raise ValueError(reason)
    return torch.from_numpy(array)


__all__ = ["query_inputs", "region_rows"]
