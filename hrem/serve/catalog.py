"""Metadata the page shows next to a hit: the image key by id, and a few captions of each image; and the
images' metadata columns a search filter may use.

Both come from the embeddings directory through `hrem.store` (no model, no FAISS). Captions are grouped by
`image_id` once at start-up when the captions modality has at most `max_caption_rows` rows; a larger
corpus looks them up per request with a Parquet filter instead of holding them all in memory.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import pyarrow.compute as pc

from hrem.store import count_rows, load_manifest, metadata_schema, read_metadata, select_ids

log = logging.getLogger(__name__)

CAPTIONS_PER_IMAGE = 3


class Catalog:
    def __init__(self, emb_dir: str | Path, max_caption_rows: int = 2_000_000) -> None:
        self.emb_dir = Path(emb_dir)
        self.manifest = load_manifest(self.emb_dir)
        self.caption_rows = count_rows(self.emb_dir, "captions", self.manifest)
        self.image_columns = metadata_schema(self.emb_dir, "images", self.manifest)   # what a filter may use
        self._captions: dict[int, list[str]] | None = None
        if 0 < self.caption_rows <= max_caption_rows:
            self._captions = self._group_captions(None)
            log.info("%s: %d captions of %d images preloaded", self.emb_dir, self.caption_rows, len(self._captions))

    def image_key(self, image_id: int) -> str | None:
        """The key (path relative to the corpus root) of an embedded image, None if the id is unknown."""
        try:
            table = read_metadata(self.emb_dir, "images", [image_id], ["key"], self.manifest)
        except KeyError:
            return None
        return str(table.column("key")[0].as_py())

    def captions(self, image_ids: Iterable[int]) -> dict[int, list[str]]:
        wanted = [int(i) for i in image_ids]
        if not wanted or self.caption_rows == 0:
            return {}
        if self._captions is not None:
            return {i: self._captions[i] for i in wanted if i in self._captions}
        return self._group_captions(wanted)

    def _group_captions(self, image_ids: list[int] | None) -> dict[int, list[str]]:
        expression = pc.field("image_id").isin(image_ids) if image_ids is not None else pc.field("id") == pc.field("id")
        ids = select_ids(self.emb_dir, "captions", expression, self.manifest)
        table = read_metadata(self.emb_dir, "captions", ids, ["key", "image_id"], self.manifest)
        grouped: dict[int, list[str]] = {}
        for key, image_id in zip(table.column("key").to_pylist(), table.column("image_id").to_pylist()):
            texts = grouped.setdefault(int(image_id), [])
            if len(texts) < CAPTIONS_PER_IMAGE:
                texts.append(str(key))
        return grouped
