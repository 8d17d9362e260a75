"""`RegionsConfig`: everything `hrem regions` needs, as one frozen dataclass of plain values."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hrem.config.base import require


@dataclass(frozen=True)
class RegionsConfig:
    detector: str                       # hrem detector run dir, 'packaged:NAME', or a transformers detector dir
    data: str                           # Karpathy / ShapesRef folder, or a .parquet/.csv listing of images
    out: str                            # the precomp folder to write
    splits: tuple[str, ...] = ()        # () = every split the input has (a listing: "test")
    regions: int = 36                   # rows per image (BUTD's fixed-36 setting)
    geometry: bool = True               # append the 5 box-geometry columns
    input_size: int | None = None       # letterbox side for transformers detectors (None = their default)
    shard_size: int = 1000              # images per resumable shard
    batch_size: int = 32
    workers: int = 2                    # image-decoding worker processes (0 = in-process)
    device: str = "auto"
    threads: int = 0                    # torch intra-op threads (0 = torch default)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "fp32"   # autocast (auto: fp16 on CUDA)
    image_root: str | None = None       # root of relative image keys (default: the input folder)
    overwrite: bool = False             # replace a folder made with another detector / input / setting

    def validate(self) -> None:
        require(1 <= self.regions <= 1000, f"regions: expected 1..1000 rows per image, found {self.regions}")
        for name in ("shard_size", "batch_size"):
            require(getattr(self, name) > 0, f"{name}: expected a positive integer, found {getattr(self, name)}")
        require(self.workers >= 0 and self.threads >= 0,
                f"workers and threads: expected >= 0, found {self.workers} and {self.threads}")
