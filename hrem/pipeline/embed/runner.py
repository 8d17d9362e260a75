"""The shard task: read one shard of input, encode it, write `<modality>/part-NNNNN.parquet` atomically.

`ShardRunner.run(task)` is the one function both engines execute (in-process for `local`, inside Ray
actors for `ray`), so the same input gives byte-identical shard files either way: batches are formed the
same way (input order for images, length-sorted for captions, results restored to input order), and the
shard writer's bytes depend only on the table. The runner never touches the manifest or
failures.parquet; the driver records each `ShardResult` (one writer, no races).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader

from hrem.checkpoint.loaded import LoadedModel, load_model
from hrem.data.batch import ImageBatch
from hrem.data.sources import FEATURE_FILES, FEATURE_ROWS, IMAGE_FILES, Source, SourceSlice, open_sources
from hrem.pipeline.embed.config import EmbedConfig
from hrem.pipeline.embed.inputs import (
    DecodeDataset,
    LoadImage,
    check_caption,
    check_features,
    collate_decoded,
)
from hrem.pipeline.embed.plan import ShardTask
from hrem.pipeline.encode import EncodeOptions, caption_batches, encode_caption_batch, encode_image_batch
from hrem.store import Failure, ShardRecord, build_table, write_shard
from hrem.utils.device import resolve_device, resolve_precision
from hrem.utils.timing import StageTimer

log = logging.getLogger(__name__)
NON_FINITE_REASON = "non-finite embedding (NaN/inf in the model output)"
Progress = Callable[[int], None]


@dataclass(frozen=True)
class ShardResult:
    task: ShardTask
    record: ShardRecord
    failures: list[Failure]
    stats: dict = field(default_factory=dict)      # {"failures", "truncated", "non_finite"}: counts (deterministic)


@dataclass
class _Encoded:
    vectors: np.ndarray                  # [n, D] float32; rows of failed items are unset
    ok: np.ndarray                       # [n] bool
    reasons: dict[int, str]              # position -> reason
    truncated: int = 0
    non_finite: int = 0                  # items whose embedding had NaN/inf (a model fault, not an input's)


class ShardRunner:
    """Holds the model, tokenizer and sources once; `run(task)` embeds one shard."""

    def __init__(self, cfg: EmbedConfig, loaded: LoadedModel | None = None,
                 sources: dict[str, Source] | None = None) -> None:
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.options = EncodeOptions(self.device, cfg.batch_size, cfg.workers,
                                     resolve_precision(cfg.precision, self.device))
        self.loaded = loaded or load_model(cfg.model, self.device)
        self.sources = sources or open_embed_sources(cfg)
        _check_compatible(self.loaded, self.sources)

    def run(self, task: ShardTask, progress: Progress | None = None) -> ShardResult:
        timer = StageTimer()
        with timer("read"):
            items = self.sources[task.modality].read(task.start, task.stop)
        if task.modality == "captions":
            encoded = self._encode_captions(items, timer, progress)
        else:
            encoded = self._encode_images(items, self.sources[task.modality].kind, timer, progress)
        keep = np.flatnonzero(encoded.ok)
        table = build_table(items.ids[keep], [items.keys[i] for i in keep], encoded.vectors[keep],
                            image_ids=None if items.image_ids is None else items.image_ids[keep],
                            metadata=None if items.metadata is None else items.metadata.take(keep),
                            dtype=self.cfg.dtype)
        record = write_shard(self.cfg.out, task.modality, task.index, table, timings=timer.as_dict())
        failures = [Failure(items.start + pos, items.keys[pos], reason)
                    for pos, reason in sorted(encoded.reasons.items())]
        return ShardResult(task, record, failures, {"failures": len(failures), "truncated": encoded.truncated,
                                                    "non_finite": encoded.non_finite})

    # -- images -------------------------------------------------------------------------------------
    def _encode_images(self, items: SourceSlice, kind: str, timer: StageTimer,
                       progress: Progress | None) -> _Encoded:
        out = _Encoded(np.zeros((len(items.ids), self.loaded.dim), np.float32), np.zeros(len(items.ids), bool), {})
        batches = self._feature_batches(items) if kind == FEATURE_ROWS else self._decoded_batches(items)
        while True:
            with timer("read"):
                batch = next(batches, None)
            if batch is None:
                return out
            positions, images, failures = batch
            out.reasons.update(failures)
            if positions:
                with timer("encode"):
                    vectors = encode_image_batch(self.loaded.model, images, self.options)
                self._store(out, positions, vectors)
            if progress:
                progress(len(positions) + len(failures))

    def _decoded_batches(self, items: SourceSlice):
        dataset = DecodeDataset(items.payload, LoadImage(self.loaded.preprocess, self.loaded.feature_dim),
                                items.problems)
        loader = DataLoader(dataset, batch_size=self.cfg.batch_size, shuffle=False, num_workers=self.cfg.workers,
                            collate_fn=collate_decoded)
        for decoded in loader:
            yield decoded.positions, decoded.images, dict(decoded.failures)

    def _feature_batches(self, items: SourceSlice):
        for start in range(0, len(items.ids), self.cfg.batch_size):
            block = np.asarray(items.payload[start:start + self.cfg.batch_size], dtype=np.float32)
            positions, failures = [], {}
            for offset, features in enumerate(block):
                reason = check_features(features, self.loaded.feature_dim, items.keys[start + offset])
                if reason:
                    failures[start + offset] = reason
                else:
                    positions.append(start + offset)
            rows = block[[p - start for p in positions]]
            yield positions, ImageBatch.from_regions(torch.from_numpy(rows)), failures

    # -- captions -----------------------------------------------------------------------------------
    def _encode_captions(self, items: SourceSlice, timer: StageTimer, progress: Progress | None) -> _Encoded:
        out = _Encoded(np.zeros((len(items.ids), self.loaded.dim), np.float32), np.zeros(len(items.ids), bool), {})
        texts: dict[int, str] = {}
        for pos, raw in enumerate(items.payload):
            text, reason = check_caption(raw)
            if reason:
                out.reasons[pos] = reason
            else:
                texts[pos] = text
        positions = list(texts)
        tokenizer = self.loaded.tokenizer
        with timer("encode"):
            good = [texts[p] for p in positions]
            counts = tokenizer.token_counts(good) if positions else []
            out.truncated = int(sum(c >= tokenizer.max_length for c in counts))
            for batch, tokens in caption_batches(tokenizer, good, self.cfg.batch_size, counts):
                chosen = [positions[i] for i in batch]
                self._store(out, chosen, encode_caption_batch(self.loaded.model, tokens, self.options))
                if progress:
                    progress(len(chosen))
        if progress and out.reasons:
            progress(len(out.reasons))
        return out

    # -- shared -------------------------------------------------------------------------------------
    @staticmethod
    def _store(out: _Encoded, positions: list[int], vectors: np.ndarray) -> None:
        finite = np.isfinite(vectors).all(axis=1)
        for pos, vector, good in zip(positions, vectors, finite):
            if good:
                out.vectors[pos] = vector
                out.ok[pos] = True
            else:
                out.reasons[pos] = NON_FINITE_REASON
                out.non_finite += 1


def open_embed_sources(cfg: EmbedConfig) -> dict[str, Source]:
    return open_sources(cfg.data, cfg.split, cfg.image_root, cfg.modalities)


def _check_compatible(loaded: LoadedModel, sources: dict[str, Source]) -> None:
    images = sources.get("images")
    if images is None:
        return
    accepted = {"grid": (IMAGE_FILES,), "regions": (FEATURE_ROWS, FEATURE_FILES),
                "detected_regions": (IMAGE_FILES, FEATURE_ROWS, FEATURE_FILES)}[loaded.image_kind]
    if images.kind not in accepted:
        reads = "image files" if loaded.image_kind == "grid" else f"region features (feature_dim {loaded.feature_dim})"
        found = "image files" if images.kind == IMAGE_FILES else "region features"
        raise ValueError(f"model {loaded.run_dir} (card '{loaded.card.name}') reads {reads}, but the input gives "
                         f"{found} ({images.describe})")
    shape = images.describe.get("features_shape")
    if shape and loaded.feature_dim is not None and shape[-1] != loaded.feature_dim:
        raise ValueError(f"{images.describe.get('folder')}: {images.describe.get('split')}_ims.npy has features "
                         f"of shape {shape}; the model expects feature_dim {loaded.feature_dim}")
