"""`EmbedConfig`: everything the embed job needs, as one frozen dataclass (built by `hrem embed`).

The same config is shipped to every Ray actor, which rebuilds its inputs and model from it, so it holds
only paths and plain values (picklable, JSON-able).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hrem.config.base import require

MODALITIES = ("images", "captions")


@dataclass(frozen=True)
class EmbedConfig:
    data: str                                   # ShapesRef/Karpathy folder, *_precomp folder or .parquet/.csv listing
    model: str                                  # run (checkpoint) directory or shipped name ("demo")
    out: str                                    # embeddings directory
    split: str = "test"                         # split of a folder input (ignored for listings)
    modalities: tuple[str, ...] = ()            # which modalities to embed; () = all the input has
    image_shard_size: int = 10_000
    caption_shard_size: int = 50_000
    batch_size: int = 128
    workers: int = 2                            # image-decoding worker processes per shard (0 = in-process)
    dtype: Literal["float32", "float16"] = "float32"   # stored embedding dtype
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "fp32"  # encoders' autocast (auto: fp16 on CUDA)
    device: str = "auto"
    engine: Literal["local", "ray"] = "local"
    ray_address: str | None = None              # join an existing cluster; None = start a local one
    ray_actors: int = 0                         # 0 = one per GPU, else 1 (CPU)
    threads: int = 0                            # torch intra-op threads per encoder (0 = torch default)
    image_root: str | None = None               # root for relative image paths (default: the input folder)
    overwrite: bool = False                     # replace an embeddings dir made from another input/model

    def validate(self) -> None:
        unknown = sorted(set(self.modalities) - set(MODALITIES))
        require(not unknown, f"modalities: expected a subset of {list(MODALITIES)}, found {list(self.modalities)}")
        for name in ("image_shard_size", "caption_shard_size", "batch_size"):
            require(getattr(self, name) > 0, f"{name}: expected a positive integer, found {getattr(self, name)}")
        require(self.workers >= 0, f"workers: expected >= 0, found {self.workers}")
        require(self.ray_actors >= 0, f"ray_actors: expected >= 0, found {self.ray_actors}")
        require(self.threads >= 0, f"threads: expected >= 0, found {self.threads}")

    def shard_size(self, modality: str) -> int:
        return self.image_shard_size if modality == "images" else self.caption_shard_size
