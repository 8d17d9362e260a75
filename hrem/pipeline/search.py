"""`Searcher`: text or image queries -> the model that made the index -> FAISS -> ids, scores, metadata.

    searcher = Searcher.load("hrem-out/demo/index")              # model dir from the embeddings manifest
    hits = searcher.search_text(["a red circle left of a blue square"], k=5)
    hits[0][0].id, hits[0][0].score, hits[0][0].key, hits[0][0].metadata
    hits = searcher.search_text(["two green triangles"], k=5, filter="split = 'test' and width >= 100")
    hits = searcher.search_image(["img.png"], k=5)                # image -> captions (captions index)
    hits = searcher.search_image(["img.png"], k=5, target="images")   # image -> images (images index)
    hits = searcher.search_similar([42], k=5)                     # "more like this": stored image 42

Index layout accepted by `load`: an index directory (`index.json` + `index.faiss`, built by `hrem index`
over one modality), or a folder holding `images/` and/or `captions/` index directories (what the demo
writes). Text queries search the images index; image queries search the captions index (image -> text)
or the images index (image -> image). Query images go through hrem.pipeline.query_images (pixel budget,
the card's own preprocessing; region rows for precomputed-feature cards).

A `filter` (every search_* method) is filter-language text such as "split = 'test' and width >= 100"
(hrem.store.where, docs/filters.md: parsed and checked against the searched index's metadata columns,
never run as code), a pyarrow expression, or an array of allowed ids.

Loading validates, with errors naming the files: each index against its index.json and the embeddings
manifest (hrem.index.load_index: model fingerprint, dim, file size); every shard recorded in index.json
is still in the manifest with the same checksum (else the index is stale); the query model's fingerprint
and dim equal those recorded at embed time.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hrem.checkpoint.loaded import LoadedModel, load_model
from hrem.data.collate import collate_images
from hrem.index import VectorSearcher
from hrem.index.info import INDEX_JSON, read_info
from hrem.pipeline.encode import EncodeOptions, encode_captions, encode_image_batch
from hrem.pipeline.query_images import query_inputs
from hrem.pipeline.rerank import RerankOptions, rerank_hits
from hrem.pipeline.search_eval import index_dirs
from hrem.store import EMBEDDING, embeddings_to_numpy, load_manifest, read_metadata

log = logging.getLogger(__name__)

IMAGE_TARGETS = ("images", "captions")   # what an image query searches: image -> image, image -> text


@dataclass(frozen=True)
class SearchHit:
    id: int
    score: float
    key: str
    metadata: dict[str, Any] = field(default_factory=dict)   # image_id (captions) + pass-through columns
    grounding: Any = None   # hrem.pipeline.ground.Grounding (box, score, mask) with search_text(ground=True)
    retrieval_score: float | None = None   # with rerank: the embedding score; `score` is then the combined one

    def as_dict(self) -> dict[str, Any]:
        out = {"id": self.id, "score": self.score, "key": self.key, **self.metadata}
        if self.retrieval_score is not None:
            out["retrieval_score"] = self.retrieval_score
        if self.grounding is not None:
            out["grounding"] = self.grounding.as_dict()   # {"box": [x1, y1, x2, y2], "score", "mask_rle"}
        return out


def check_index_current(searcher: VectorSearcher, where: Path) -> None:
    """Every shard in index.json must still be in the manifest with the same checksum."""
    manifest = load_manifest(searcher.emb_dir)
    for shard in searcher.info.shards:
        record = manifest.shard(searcher.modality, shard.name)
        if record is None or record.sha256 != shard.sha256:
            found = "missing" if record is None else f"sha256 {record.sha256}"
            raise ValueError(f"{where / INDEX_JSON}: shard {searcher.modality}/{shard.name} was indexed with "
                             f"sha256 {shard.sha256}, the embeddings manifest has {found}; the index is stale, "
                             f"rebuild it with `hrem index`")
    if manifest.rows(searcher.modality) != searcher.info.ntotal:
        log.warning("%s: the index holds %d of the %d embedded %s; `hrem index --append` adds the rest", where,
                    searcher.info.ntotal, manifest.rows(searcher.modality), searcher.modality)


class Searcher:
    def __init__(self, model: LoadedModel, indices: dict[str, VectorSearcher], device: torch.device,
                 grounding_model: str | Path | None = None, image_root: str | Path | None = None) -> None:
        self.model = model
        self.indices = indices
        self.device = device
        self.options = EncodeOptions(torch.device(device))
        self.grounding_model = grounding_model   # grounding run dir; None = the shipped demo grounding model
        self.image_root = Path(image_root) if image_root else None   # None = the folder the embeddings came from
        self._grounder = None                     # loaded by grounder(), on first use

    @classmethod
    def load(cls, index_dir: str | Path, model_dir: str | Path | None = None,
             device: torch.device | str = "cpu", mmap: bool = False,
             grounding_model: str | Path | None = None, image_root: str | Path | None = None) -> Searcher:
        indices = {}
        for modality, path in index_dirs(index_dir).items():
            # checks index.json, the index file's size, and the manifest's model fingerprint and dim
            searcher = VectorSearcher(path, emb_dir=read_info(path).embeddings.path, mmap=mmap)
            check_index_current(searcher, path)
            indices[modality] = searcher
        fingerprints = {s.info.embeddings.model_fingerprint for s in indices.values()}
        if len(fingerprints) != 1:
            raise ValueError(f"{index_dir}: the indices were built from different models: {sorted(fingerprints)}")
        first = next(iter(indices.values()))
        model_dir = Path(model_dir) if model_dir else _recorded_model_dir(first)
        model = load_model(model_dir, torch.device(device))
        expected = first.info.embeddings.model_fingerprint
        if model.fingerprint != expected:
            raise ValueError(f"{model_dir}: model fingerprint {model.fingerprint} differs from the one that made "
                             f"the index ({expected}, {first.emb_dir}/manifest.json); queries would land in "
                             f"another embedding space -- use the same model or re-embed")
        if model.dim != first.dim:
            raise ValueError(f"{model_dir}: embedding dim {model.dim}, the index has dim {first.dim}")
        return cls(model, indices, torch.device(device), grounding_model, image_root)

    # -- encoding -----------------------------------------------------------------------------------
    def encode_text(self, queries: Sequence[str]) -> np.ndarray:
        if isinstance(queries, str) or not queries:
            raise ValueError("queries: expected a non-empty list of strings")
        empty = [i for i, q in enumerate(queries) if not str(q).strip()]
        if empty:
            raise ValueError(f"queries: empty query text at position(s) {empty}")
        return encode_captions(self.model.model, [str(q) for q in queries], self.model.tokenizer, self.options)

    def encode_images(self, images: Sequence[Any]) -> np.ndarray:
        """Paths / PIL images / uint8 arrays (pixel cards) or [R, F] rows / .npy files (regions cards)."""
        inputs = query_inputs(self.model, images)
        size = self.options.batch_size
        return np.concatenate([encode_image_batch(self.model.model, collate_images(inputs[i:i + size]), self.options)
                               for i in range(0, len(inputs), size)])

    # -- search -------------------------------------------------------------------------------------
    def search_text(self, queries: Sequence[str], k: int = 10, filter: Any = None, ground: bool = False,
                    visualize: str | Path | None = None, rerank: RerankOptions | None = None) -> list[list[SearchHit]]:
        """Images for each text query. `ground=True` grounds the query in every retrieved image (hit.grounding:
        box, score, mask); `visualize=DIR` also writes overlay PNGs there. `rerank=RerankOptions(depth, weight)`
        grounds the top `depth` hits and re-orders them by retrieval + weight x grounding score
        (hrem.pipeline.rerank; the hits are then grounded)."""
        depth = max(k, rerank.depth) if rerank else k
        hits = self.search_vectors(self.encode_text(queries), "images", depth, filter)
        if not (ground or visualize or rerank):
            return hits
        hits = self.ground_hits(queries, hits)
        if rerank:
            hits = rerank_hits(hits, rerank, k)
        if visualize:
            self.write_overlays(queries, hits, visualize)
        return hits

    def ground_hits(self, queries: Sequence[str], hits: list[list[SearchHit]],
                    visualize: str | Path | None = None) -> list[list[SearchHit]]:
        """The hits with hit.grounding filled: each query grounded in each of its hits' images."""
        from hrem.pipeline.ground import ground_results

        keys = [[hit.key for hit in row] for row in hits]
        found = ground_results(self.grounder(), queries, keys, self._image_root())
        grounded = [[dataclasses.replace(h, grounding=g) for h, g in zip(row, gs)] for row, gs in zip(hits, found)]
        if visualize:
            self.write_overlays(queries, grounded, visualize)
        return grounded

    def grounder(self):
        """The grounding model (hrem.pipeline.ground.Grounder), loaded on first use and then shared."""
        from hrem.pipeline.ground import Grounder

        if self._grounder is None:
            self._grounder = Grounder.load(self.grounding_model, device=self.device)
        return self._grounder

    def write_overlays(self, queries: Sequence[str], hits: list[list[SearchHit]], out_dir: str | Path) -> None:
        from hrem.pipeline.ground import write_result_overlays

        keys = [[hit.key for hit in row] for row in hits]
        found = [[hit.grounding for hit in row] for row in hits]
        written = write_result_overlays(out_dir, queries, keys, found, self._image_root())
        log.info("wrote %d overlay(s) to %s", len(written), out_dir)

    def _image_root(self) -> Path:
        from hrem.pipeline.ground import search_image_root

        return self.image_root or search_image_root(self.indices["images"].emb_dir)

    def search_image(self, images: Sequence[Any], k: int = 10, filter: Any = None,
                     target: str = "captions") -> list[list[SearchHit]]:
        """Captions (target="captions", image -> text) or images (target="images", image -> image) for each
        image query; the filter is over the target's metadata columns."""
        if target not in IMAGE_TARGETS:
            raise ValueError(f"target: expected one of {IMAGE_TARGETS}, found {target!r}")
        return self.search_vectors(self.encode_images(images), target, k, filter)

    def search_similar(self, image_ids: Sequence[int], k: int = 10, filter: Any = None) -> list[list[SearchHit]]:
        """"More like this": images nearest to stored images, by their embeddings in the Parquet store (no
        image file or model call needed); each query image itself is left out of its own results."""
        ids = [int(i) for i in image_ids]
        hits = self.search_vectors(self.stored_vectors("images", ids), "images", k + 1, filter)
        return [[h for h in row if h.id != own][:k] for own, row in zip(ids, hits)]

    def stored_vectors(self, modality: str, ids: Sequence[int]) -> np.ndarray:
        """[len(ids), D] embeddings of stored items, in the order given (KeyError naming unknown ids)."""
        if modality not in self.indices:
            raise ValueError(f"no {modality} index loaded (have {sorted(self.indices)})")
        table = read_metadata(self.indices[modality].emb_dir, modality, ids, [EMBEDDING])
        return embeddings_to_numpy(table.column(EMBEDDING), f"{modality} embeddings")

    def search_vectors(self, vectors: np.ndarray, modality: str, k: int = 10,
                       filter: Any = None) -> list[list[SearchHit]]:
        if modality not in self.indices:
            raise ValueError(f"no {modality} index loaded (have {sorted(self.indices)}); build one with "
                             f"`hrem index --modality {modality}`")
        index = self.indices[modality]
        results = index.search_lists(vectors, k, filter)
        all_ids = np.concatenate([ids for _, ids in results]) if results else np.zeros(0, np.int64)
        rows = index.metadata(all_ids).to_pylist() if all_ids.size else []
        hits, offset = [], 0
        for scores, ids in results:
            chunk = rows[offset:offset + len(ids)]
            offset += len(ids)
            hits.append([_hit(row, float(score)) for row, score in zip(chunk, scores)])
        return hits


def _hit(row: dict[str, Any], score: float) -> SearchHit:
    row = dict(row)
    return SearchHit(int(row.pop("id")), score, str(row.pop("key")), row)


def _recorded_model_dir(searcher: VectorSearcher) -> Path:
    manifest = load_manifest(searcher.emb_dir)
    recorded = manifest.extra.get("model_dir")
    if not recorded or not Path(recorded).is_dir():
        raise FileNotFoundError(f"{searcher.emb_dir}/manifest.json: no usable model directory recorded "
                                f"(found {recorded!r}); pass the run directory with --model")
    return Path(recorded)
