"""The MCN grounding card: every architectural choice of the REC + RES model, validated from JSON.

A card is data (hrem/cards/mcn-*.json); `hrem.grounding.build_mcn(card, device, dtype)` turns it into a
model. Field defaults follow the original Keras MCN (luogen1996/MCN, config/config.json) wherever the two
necessary replacements (a transformers ResNet for Darknet-53, a Hugging Face text encoder for GloVe + GRU)
leave the choice open. Stdlib only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from hrem.config.base import ConfigError, from_dict, load_dataclass, require
from hrem.config.grounding_options import CA2MCfg, SelfPacedCfg, STEPCfg, XTaskCfg

STAGE_NAMES = ("stem", "stage1", "stage2", "stage3", "stage4")


@dataclass(frozen=True)
class MCNBackboneCfg:
    """The visual backbone: a transformers ResNet giving stride 8/16/32 feature maps."""

    resnet: dict[str, Any] = field(default_factory=dict)  # ResNetConfig kwargs, used when `path` is None
    path: str | None = None  # local dir with pretrained AutoBackbone weights; None = random init
    # a detector run dir or shipped name ('shapes-detector') whose backbone starts a fresh training run
    # (hrem.train.backbone_init: MCN starts from COCO-pretrained DarkNet); None = no initialisation
    init: str | None = None
    out_features: tuple[str, str, str] = ("stage2", "stage3", "stage4")  # strides 8, 16, 32
    frozen_stages: int = 0  # 0 = train all, 1 = freeze the stem, k = stem + stage1..stage(k-1)
    pixel_mean: tuple[float, float, float] = (0.0, 0.0, 0.0)  # MCN feeds pixels / 255 only
    pixel_std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def validate(self) -> None:
        require(
            0 <= self.frozen_stages <= len(STAGE_NAMES),
            f"backbone.frozen_stages: expected 0..{len(STAGE_NAMES)}, found {self.frozen_stages}",
        )
        require(
            all(s > 0 for s in self.pixel_std), f"backbone.pixel_std: expected > 0, found {self.pixel_std}"
        )
        require(
            self.init is None or self.path is None,
            f"backbone: `init` ({self.init!r}) and `path` ({self.path!r}) both give initial weights; keep one",
        )
        require(
            self.path is not None or bool(self.resnet),
            "backbone: expected `path` (local weights) or a `resnet` config dict, found neither",
        )


@dataclass(frozen=True)
class MCNLanguageCfg:
    """The expression encoder: HF encoder (default) or word embedding + bi-GRU, then attention pooling."""

    kind: Literal["hf", "gru"] = "hf"
    path: str = "packaged:all-MiniLM-L6-v2"  # tokenizer for both kinds; weights too for kind "hf"
    pretrained: bool = True  # hf: load the weights; False = random init from config (tests)
    config_overrides: dict[str, Any] = field(default_factory=dict)  # hf, pretrained=False only
    max_tokens: int = 15  # word pieces kept, [CLS]/[SEP] not counted (K: 15; RefCOCOg 20)
    dim: int = 1024  # sentence vector f_q (K: bi-GRU 1024, merge = sum)
    freeze: bool = False  # hf: keep the text encoder fixed (eval mode, no gradients)
    # hf: SHA-256 of the encoder's weights file when a run stores a frozen pretrained encoder by reference
    # (hrem.checkpoint.save_run), as HREM cards' text.backbone_sha256
    backbone_sha256: str | None = None
    word_dim: int = 300  # gru: word embedding width (K: GloVe 300)
    dropout: float = 0.1  # K: GRU input dropout and attention dropout

    def validate(self) -> None:
        require(self.max_tokens >= 1, f"language.max_tokens: expected >= 1, found {self.max_tokens}")
        require(self.dim >= 2, f"language.dim: expected >= 2, found {self.dim}")
        require(0.0 <= self.dropout < 1.0, f"language.dropout: expected in [0, 1), found {self.dropout}")
        require(
            not (self.config_overrides and self.pretrained),
            "language.config_overrides change the architecture; set pretrained to false",
        )


@dataclass(frozen=True)
class MCNWidthsCfg:
    """Channel widths of the fusion, the collaborative neck, ASPP and GARAN (K: 1024/512/(512,256)/256)."""

    fusion: int = 1024  # fused C5 map F_m (K jemb_dim)
    neck: int = 512  # RES top-down and REC bottom-up maps, GARAN width
    skip: tuple[int, int] = (512, 256)  # 1x1 projections of the stride-16 and stride-8 backbone maps
    aspp: int = 256  # width of each ASPP branch
    aspp_dilations: tuple[int, int, int] = (6, 12, 18)
    garan_heads: int = 2  # K splits channels and f_q into 2 halves with shared projections

    def validate(self) -> None:
        for name in ("fusion", "neck", "aspp", "garan_heads"):
            require(getattr(self, name) >= 1, f"widths.{name}: expected >= 1, found {getattr(self, name)}")
        require(self.neck % 2 == 0, f"widths.neck: expected an even width, found {self.neck}")
        require(
            self.neck % self.garan_heads == 0,
            f"widths.neck: expected a multiple of garan_heads={self.garan_heads}, found {self.neck}",
        )


@dataclass(frozen=True)
class MCNMaskRefineCfg:
    """hrem option, not in MCN: an extra head that refines the stride-8 RES mask to stride 4.

    MCN predicts the mask at stride 8 (52 x 52 at 416 px, fine for COCO objects). ShapesRef objects are
    ~22 px wide at 128 px, about 3 cells at stride 8, and even the ground truth sampled on that grid and
    upsampled scores mIoU 68.4 on ShapesRef test (80.5 at stride 4; benchmarks/mask_stride_ceiling.py).
    With `enabled`, MCN's stride-8 mask and its loss stay as they are; a DeepLabv3+-style step reads the
    ASPP branches (1x1 to `width`), upsamples them x2, concatenates a 1x1 projection (`skip` channels) of
    the backbone stage `feature` (stride 4), applies a 3x3 conv and adds a 1x1 correction (zero at
    initialisation) to the upsampled stride-8 logits. It is trained with `weight` x BCE summed over the
    stride-4 map; with `detach` its inputs are detached, so MCN's own gradients are unchanged (a first
    version that replaced the stride-8 mask let the mask bypass the shared trunk and cost ~16 points of
    Acc@0.5 at 500 iterations). Inference uses the refined mask.
    """

    enabled: bool = False
    feature: str = "stage1"  # backbone stage at stride 4 (transformers ResNet: stage1)
    skip: int = 32
    width: int = 64
    weight: float = 0.1  # on the BCE summed over the stride-4 map (MCN: 0.1 on its stride-8 sum)
    detach: bool = True

    def validate(self) -> None:
        require(self.feature in STAGE_NAMES, f"mask_refine.feature: expected one of {STAGE_NAMES}, "
                f"found {self.feature!r}")
        require(self.skip >= 1 and self.width >= 1,
                f"mask_refine.skip / width: expected >= 1, found {self.skip} / {self.width}")
        require(self.weight >= 0, f"mask_refine.weight: expected >= 0, found {self.weight}")


@dataclass(frozen=True)
class MCNLossCfg:
    mask_weight: float = 0.1  # K seg_loss_weight, on the BCE summed over the stride-8 map
    cem_weight: float = 1.0
    ignore_iou: float = 0.5  # negatives whose predicted box has IoU >= this with the GT are ignored
    wh_sigma: float = 3.0  # smooth-L1 sigma of K's wh loss
    # the CA2M direct box head's L1 and GIoU weights (DETR / TransVG use 5 and 2; 1 and 1 is plain sum)
    box_l1_weight: float = 1.0
    box_giou_weight: float = 1.0


@dataclass(frozen=True)
class MCNInferenceCfg:
    asnls: bool = True  # K use_nls
    mask_threshold: float = 0.35  # K segment_thresh
    # ASNLS factors: inside = lamb_au * s + lamb_bu, outside = lamb_ad * s + lamb_bd (K callbacks/eval.py)
    asnls_lambdas: tuple[float, float, float, float] = (-1.0, 2.0, 1.0, 0.0)
    box_source: Literal["yolo", "direct"] = "yolo"  # direct = the CA2M [CLS] box head (ca2m.box_head)


@dataclass(frozen=True)
class MCNCard:
    name: str
    kind: Literal["mcn"]
    input_size: int  # letterboxed square side S, a multiple of 32
    anchors: tuple[tuple[float, float], ...]  # 3 x [w, h] in input pixels (k-means on training boxes)
    backbone: MCNBackboneCfg
    language: MCNLanguageCfg = field(default_factory=MCNLanguageCfg)
    widths: MCNWidthsCfg = field(default_factory=MCNWidthsCfg)
    losses: MCNLossCfg = field(default_factory=MCNLossCfg)
    inference: MCNInferenceCfg = field(default_factory=MCNInferenceCfg)
    mask_refine: MCNMaskRefineCfg = field(default_factory=MCNMaskRefineCfg)  # hrem option: + stride-4 mask
    # optional components of REFERENCE_EXTRA.md; the defaults are the MCN baseline
    res_head: Literal["mcn_aspp", "step"] = "mcn_aspp"
    step: STEPCfg = field(default_factory=STEPCfg)
    fusion: Literal["simple", "ca2m"] = "simple"
    ca2m: CA2MCfg = field(default_factory=CA2MCfg)
    xtask: XTaskCfg = field(default_factory=XTaskCfg)
    loss_weighting: Literal["fixed", "self_paced"] = "fixed"
    self_paced: SelfPacedCfg = field(default_factory=SelfPacedCfg)
    description: str = ""

    def validate(self) -> None:
        require(
            self.input_size >= 32 and self.input_size % 32 == 0,
            f"input_size: expected a positive multiple of 32, found {self.input_size}",
        )
        require(len(self.anchors) == 3, f"anchors: expected 3 [w, h] pairs, found {len(self.anchors)}")
        require(
            all(w > 0 and h > 0 for w, h in self.anchors), f"anchors: expected w, h > 0, found {self.anchors}"
        )
        heads = self.widths.garan_heads
        require(
            self.language.dim % heads == 0,
            f"language.dim: expected a multiple of widths.garan_heads={heads}, found {self.language.dim}",
        )
        self._validate_options()

    def _validate_options(self) -> None:
        require(
            not self.mask_refine.enabled or self.res_head == "mcn_aspp",
            f"mask_refine.enabled: refines the ASPP decoder's mask; res_head {self.res_head!r} predicts its "
            "own stride-8 mask (set mask_refine.enabled to false)",
        )
        require(
            not self.mask_refine.enabled or self.mask_refine.feature not in self.backbone.out_features,
            f"mask_refine.feature {self.mask_refine.feature!r}: expected a stride-4 stage not among "
            f"backbone.out_features {self.backbone.out_features}",
        )
        direct = self.fusion == "ca2m" and self.ca2m.box_head
        require(
            self.inference.box_source == "yolo" or direct,
            "inference.box_source: 'direct' needs fusion 'ca2m' with ca2m.box_head true, found "
            f"fusion {self.fusion!r}, ca2m.box_head {self.ca2m.box_head}",
        )
        require(
            self.loss_weighting == "fixed" or self.self_paced.apply_to == "yolo" or direct,
            f"self_paced.apply_to: {self.self_paced.apply_to!r} weights the direct box head's losses, which "
            "needs fusion 'ca2m' with ca2m.box_head true (or set self_paced.apply_to to 'yolo')",
        )

    @property
    def grid_size(self) -> int:
        return self.input_size // 32

    @property
    def mask_size(self) -> int:
        return self.input_size // 8


def load_mcn_card(path: str) -> MCNCard:
    """Read an MCN card JSON file; errors name the file and the field."""
    return load_dataclass(MCNCard, path)


def mcn_card_from_dict(data: dict, where: str = "card") -> MCNCard:
    if not isinstance(data, dict) or data.get("kind") != "mcn":
        raise ConfigError(
            f"{where}: expected kind 'mcn', found {data.get('kind') if isinstance(data, dict) else data!r}"
        )
    return from_dict(MCNCard, data, where)


__all__ = [
    "MCNBackboneCfg",
    "MCNCard",
    "MCNInferenceCfg",
    "MCNLanguageCfg",
    "MCNLossCfg",
    "MCNMaskRefineCfg",
    "MCNWidthsCfg",
    "load_mcn_card",
    "mcn_card_from_dict",
]
