"""The HREM retrieval model card: every architectural and training choice, validated from JSON.

A card is data, not code: `hrem/cards/<name>.json` is read by `hrem.factory.load_card` into `HREMCard`
and `hrem.factory.create_model` builds the model from it. The paper's ablation is expressed with three
fields: `head.pooling` ("mean" baseline | "hrem" | "gpo"), `head.fragment_relation` (the 1-layer
Transformer over regions / words, used at inference) and `instance_relation.enabled` (the batch graph of
the training criterion, never used at inference). Stdlib only (no torch).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from hrem.config.base import ConfigError, require

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class VisionBackboneCard:
    """A `transformers` vision backbone for grid features: built from `config` (a ResNetConfig dict,
    random init, trained from scratch) or loaded from `path` (a local directory, never downloaded)."""
    config: dict[str, Any] | None = None
    path: str | None = None
    out_feature: str = "stage4"    # which stage's feature map becomes the grid tokens
    freeze: bool = False

    def validate(self) -> None:
        require((self.config is None) != (self.path is None),
                f"image.backbone: expected exactly one of 'config' or 'path', found "
                f"config={'set' if self.config is not None else None}, path={self.path!r}")


@dataclass(frozen=True)
class DetectorRefCard:
    """The region detector of a `detected_regions` image side: an hrem detector run directory (or a
    packaged one, e.g. 'packaged:shapes-detector') or a local `transformers` object-detection directory.
    Its weights are copied into the model (frozen), so a run directory is self-contained."""
    path: str
    regions: int = 36                       # rows per image (BUTD's fixed-36 setting)
    geometry: bool = True                   # append the 5 box-geometry columns (hrem.vision.region_rows)
    input_size: int | None = None           # letterbox side for transformers detectors (None = their default)

    def validate(self) -> None:
        require(1 <= self.regions <= 1000, f"image.detector.regions: expected 1..1000, found {self.regions}")
        require(self.input_size is None or 32 <= self.input_size <= 4096,
                f"image.detector.input_size: expected 32..4096 pixels or null, found {self.input_size}")


@dataclass(frozen=True)
class ImageCard:
    kind: Literal["regions", "grid", "detected_regions"]
    feature_dim: int | None = None          # regions: F of the [B, N, F] features (2048 for BUTD)
    mlp_hidden: int | None = None           # hidden width of the FC+MLP head; None = embed_size // 2
    image_size: int | None = None           # grid: square input side in pixels
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    backbone: VisionBackboneCard | None = None
    detector: DetectorRefCard | None = None  # detected_regions: the detector that makes the regions

    def validate(self) -> None:
        if self.kind in ("regions", "detected_regions"):
            require(self.feature_dim is not None and self.feature_dim > 0,
                    f"image.feature_dim: expected a positive int for region features, found {self.feature_dim!r}")
            require(self.backbone is None, "image.backbone: region cards take region features, found a backbone")
            require((self.detector is not None) == (self.kind == "detected_regions"),
                    f"image.detector: expected a detector exactly for kind 'detected_regions', found kind "
                    f"{self.kind!r} with detector {'set' if self.detector else None}")
        else:
            require(self.backbone is not None, "image.backbone: grid cards need a backbone, found none")
            require(self.image_size is not None and self.image_size >= 32,
                    f"image.image_size: expected an int >= 32 for grid cards, found {self.image_size!r}")
        require(all(s > 0 for s in self.std), f"image.std: expected positive values, found {self.std}")


@dataclass(frozen=True)
class TextCard:
    """Any Hugging Face encoder from a local directory. `backbone` is 'packaged:all-MiniLM-L6-v2' or a path;
    hub names such as 'bert-base-uncased' must be overridden with a local directory (no downloads)."""
    backbone: str = "packaged:all-MiniLM-L6-v2"
    pretrained: bool = True                 # False: random init from config.json + config_overrides
    config_overrides: dict[str, Any] = field(default_factory=dict)
    freeze: bool = False                    # keep the backbone fixed (eval mode, no gradients)
    max_length: int | None = None          # None: no truncation beyond the backbone's limit (as HREM)
    # Set by save_run when the (frozen, pretrained) backbone is not stored in model.safetensors: the
    # SHA-256 of the backbone's weights file, checked when the model is loaded again.
    backbone_sha256: str | None = None

    def validate(self) -> None:
        require(not (self.config_overrides and self.pretrained),
                "text.config_overrides change the architecture, so they need text.pretrained = false")
        require(self.backbone_sha256 is None or self.pretrained,
                "text.backbone_sha256 refers to pretrained weights, but text.pretrained is false")


@dataclass(frozen=True)
class HeadCard:
    """Pooling of the projected fragments into one embedding (REFERENCE_HREM.md §1.1-§1.3, §1.6)."""
    pooling: Literal["hrem", "gpo", "mean"] = "hrem"
    fragment_relation: bool = True          # the 1-layer Transformer `aggr` over regions / words
    residual_weight: float = 0.8            # hrem pooling: r * maxk + (1 - r) * avg
    maxk: int = 2
    heads: int = 16
    ff_dim: int | None = None               # None = embed_size (as the reference)
    dropout: float = 0.1
    gpo_pe_dim: int = 32
    gpo_hidden: int = 32
    normalize: bool = True                  # L2-normalise the final embeddings

    def validate(self) -> None:
        require(0.0 <= self.residual_weight <= 1.0,
                f"head.residual_weight: expected a value in [0, 1], found {self.residual_weight}")
        require(self.maxk >= 1, f"head.maxk: expected >= 1, found {self.maxk}")
        require(0.0 <= self.dropout < 1.0, f"head.dropout: expected a value in [0, 1), found {self.dropout}")


@dataclass(frozen=True)
class InstanceRelationCard:
    """The batch graph of the training criterion (REFERENCE_HREM.md §1.4); never used at inference."""
    enabled: bool = True
    mask_weight: float = 1.0                # scale of the additive attention bias (not a loss weight)
    threshold: float = 0.5                  # share of each row kept as connected
    topk: int = 10                          # word / region scores fed to the relevance MLPs
    sigma: float = 1.0
    temperature: float = 1.0
    reg_weight: float = 10.0
    heads: int = 16
    layers: int = 1
    ff_dim: int | None = None               # None = embed_size
    dropout: float = 0.1
    cross_loss: bool = True                 # the two cross terms of the GNN loss
    norm_input: bool = True
    # GEMM dtype of the word-region scores (hrem, not the paper: the reference computes them in fp32):
    # "auto" = bf16 on CPUs with AVX512-BF16 / AMX (scores within ~1e-2, 99.6 % of connections equal), else fp32
    score_dtype: Literal["fp32", "bf16", "auto"] = "fp32"

    def validate(self) -> None:
        if self.enabled:
            require(self.mask_weight > 0.0,
                    "instance_relation.mask_weight: expected a positive value (0 * -inf gives NaN attention), "
                    "found 0; disable the relation with instance_relation.enabled = false instead")
        require(0.0 < self.threshold <= 1.0,
                f"instance_relation.threshold: expected a value in (0, 1], found {self.threshold}")
        require(self.topk >= 1, f"instance_relation.topk: expected >= 1, found {self.topk}")
        require(self.sigma > 0 and self.temperature > 0,
                "instance_relation.sigma and .temperature must be positive")
        require(self.layers >= 1, f"instance_relation.layers: expected >= 1, found {self.layers}")


@dataclass(frozen=True)
class LossCard:
    base: Literal["trip", "vse"] = "trip"   # loss on the encoder embeddings
    gnn: Literal["trip", "vse"] = "trip"    # loss on the relation-enhanced embeddings
    margin: float = 0.2
    cutoff: float = 1.7                     # triplet: distances >= cutoff are never sampled (1.9 for coco)
    sampling_dim: int = 512                 # triplet: n of the distance-weighted sampling density
    min_distance: float = 0.5               # triplet: distances are clamped to at least this
    max_violation: bool = True              # vse: hardest negative only (VSE++) instead of the sum

    def validate(self) -> None:
        require(self.margin >= 0, f"loss.margin: expected >= 0, found {self.margin}")
        require(0 < self.cutoff <= 2.0, f"loss.cutoff: expected a value in (0, 2], found {self.cutoff}")
        require(self.sampling_dim > 3, f"loss.sampling_dim: expected > 3, found {self.sampling_dim}")


@dataclass(frozen=True)
class TrainCard:
    """Training hyper-parameters read by hrem.train (the paper's defaults, REFERENCE_HREM.md §3)."""
    lr: float = 5e-4
    lr_backbone_mult: float = 0.1           # text backbone (BERT) learning rate factor
    graph_lr_factor: float = 1.0            # criterion (instance relation) learning rate factor
    weight_decay: float = 1e-4
    epochs: int = 30
    decay_epochs: tuple[int, ...] = (15, 25)
    decay_rate: float = 0.1
    batch_size: int = 128
    grad_clip: float = 2.0
    warmup_iters: int = 8000                # iterations with the base loss only, before the batch graph
    text_aug_p: float = 0.2
    region_drop_p: float = 0.2

    def validate(self) -> None:
        require(self.lr > 0 and self.batch_size > 0 and self.epochs > 0,
                f"train: expected positive lr, batch_size and epochs, found {self.lr}, {self.batch_size}, "
                f"{self.epochs}")
        require(self.warmup_iters >= 0, f"train.warmup_iters: expected >= 0, found {self.warmup_iters}")


@dataclass(frozen=True)
class HREMCard:
    name: str
    kind: Literal["hrem"]
    embed_size: int
    image: ImageCard
    text: TextCard = field(default_factory=TextCard)
    head: HeadCard = field(default_factory=HeadCard)
    instance_relation: InstanceRelationCard = field(default_factory=InstanceRelationCard)
    loss: LossCard = field(default_factory=LossCard)
    train: TrainCard = field(default_factory=TrainCard)
    description: str = ""

    def validate(self) -> None:
        require(self.embed_size > 0, f"embed_size: expected a positive int, found {self.embed_size}")
        heads_fields = (("head.heads", self.head.heads), ("instance_relation.heads", self.instance_relation.heads))
        for where, heads in heads_fields:
            if self.embed_size % heads:
                raise ConfigError(f"{where}: embed_size {self.embed_size} must be divisible by the number of "
                                  f"heads, found {heads}")


__all__ = ["HREMCard", "ImageCard", "TextCard", "HeadCard", "InstanceRelationCard", "LossCard", "TrainCard",
           "VisionBackboneCard", "DetectorRefCard", "IMAGENET_MEAN", "IMAGENET_STD"]
