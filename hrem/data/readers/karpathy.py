"""Karpathy-style caption JSON (`dataset_coco.json`, `dataset_flickr30k.json`, ShapesRef's
`dataset_shapesref.json`) plus the folder of raw images."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hrem.data.readers.common import check_files_exist, load_json_file, pick_split
from hrem.data.splits import karpathy_splits

REQUIRED_KEYS = ("filename", "split", "sentences")


@dataclass(frozen=True)
class ImageCaptionSplit:
    root: Path                  # image_paths are relative to it
    image_paths: list[str]      # [N]
    image_ids: np.ndarray       # int64 [N], the JSON's imgid
    captions: list[str]         # [M]
    caption_image: np.ndarray   # int64 [M], row of the caption's image in image_paths
    caption_ids: np.ndarray     # int64 [M], the JSON's sentid


def _images_of(data: object, source: Path) -> list[dict]:
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{source}: expected an object with an 'images' list, found {found}")
    for index, image in enumerate(data["images"]):
        if not isinstance(image, dict):
            raise ValueError(f"{source}: images[{index}]: expected an object, found {type(image).__name__}")
        missing = [k for k in REQUIRED_KEYS if k not in image]
        if missing:
            raise ValueError(f"{source}: images[{index}]: missing key(s) {missing}; found keys {sorted(image)}")
    return data["images"]


def _sentences(image: dict, index: int, source: Path, per_image: int | None) -> list[tuple[str, int]]:
    sentences = image["sentences"]
    if not isinstance(sentences, list) or (per_image is not None and len(sentences) < per_image):
        found = len(sentences) if isinstance(sentences, list) else type(sentences).__name__
        raise ValueError(f"{source}: images[{index}] ({image['filename']}): expected at least {per_image} "
                         f"sentences, found {found}")
    chosen = sentences if per_image is None else sentences[:per_image]
    out = []
    for k, sentence in enumerate(chosen):
        if not isinstance(sentence, dict) or not isinstance(sentence.get("raw"), str) or not sentence["raw"].strip():
            raise ValueError(f"{source}: images[{index}].sentences[{k}]: expected an object with a non-empty "
                             f"'raw' string, found {sentence!r}")
        out.append((sentence["raw"].strip(), int(sentence.get("sentid", -1))))
    return out


def read_karpathy(json_path: str | Path, image_root: str | Path, split: str, captions_per_image: int | None = 5,
                  check_images: bool = True) -> ImageCaptionSplit:
    """One split: image paths (filepath/filename, relative to image_root) and their captions, the first
    `captions_per_image` of each image (None = all; some COCO images have 6 or 7)."""
    json_path, root = Path(json_path), Path(image_root)
    images = _images_of(load_json_file(json_path), json_path)
    wanted = karpathy_splits(split)
    pick_split(split, (img["split"] for img in images), json_path, wanted)
    rows = [(i, img) for i, img in enumerate(images) if img["split"] in wanted]
    paths, image_ids, captions, caption_image, caption_ids = [], [], [], [], []
    for row, (index, image) in enumerate(rows):
        paths.append(str(Path(image.get("filepath") or "") / image["filename"]))
        image_ids.append(int(image.get("imgid", image.get("cocoid", index))))
        for text, sentid in _sentences(image, index, json_path, captions_per_image):
            captions.append(text)
            caption_image.append(row)
            caption_ids.append(sentid)
    if check_images:
        check_files_exist((root / p for p in paths), json_path, f"images of split {split!r} under {root}")
    return ImageCaptionSplit(root, paths, np.array(image_ids, dtype=np.int64), captions,
                             np.array(caption_image, dtype=np.int64), np.array(caption_ids, dtype=np.int64))
