"""Card sections of the optional grounding components of REFERENCE_EXTRA.md (all off in the MCN baseline).

- `res_head: "step"` + `step`: STEP's see-through-text RES head (ConvGRU over text-guided heatmaps);
- `xtask`: cross-task consistency between the REC box and the RES mask (transfer nets, loss balancing);
- `fusion: "ca2m"` + `ca2m`: multi-grained CA2M cross-attention fusion (optionally a direct box head);
- `loss_weighting: "self_paced"` + `self_paced`: the trainable Gaussian self-paced sample weighting.
Every detail the sources leave open ([assumption] in the reference) is a field here. Stdlib only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hrem.config.base import require


@dataclass(frozen=True)
class STEPCfg:
    """STEP (Chen et al., ICCV 2019) as MCN's RES head; defaults are the paper's widths (blog notes)."""

    folds: int = 1  # K: T = K x (number of levels) ConvGRU steps (paper main results: K = 5)
    # the three maps STEP reads: "backbone" = C3/C4/C5 (the reference's plug-in, as STEP reads DeepLab's
    # maps), "neck" = MCN's language-fused F_down / F_mid / F_m (strides 8/16/32) [hrem option]
    visual_source: Literal["backbone", "neck"] = "backbone"
    level_order: Literal["coarse_to_fine", "fine_to_coarse"] = "coarse_to_fine"  # [assumption]
    context_dilation: int = 3  # 3x3 atrous context conv per level, rate 3
    context_width: int = 0  # output width of the context conv; 0 = keep the level's width [assumption]
    attention_dim: int = 400  # W_a / W_b word-attention projections
    embed_dim: int = 1000  # phi / psi co-embedding
    gru_hidden: int = 32  # ConvGRU state width f
    gru_kernel: int = 3
    gru_inputs: Literal["heatmap", "heatmap_and_mask"] = "heatmap"  # x_t = Q_t or [Q_t, P_{t-1}] [assumption]
    initial_mask: float = 0.5  # P_0, uniform [assumption]
    heatmap: Literal["clipped", "shifted"] = "clipped"  # Q = max(0, cos) (paper) or (cos + 1) / 2 [hrem option]
    pixel_temperature: float = 1.0  # omega = softmax(P / tau); tau = 1 is the paper [derived: weak at 1]
    sentence_to_rec: bool = False  # feed the mask-attended s_T to the REC GARAN instead of f_q
    # L2-normalise each visual map per pixel before the coordinate features, as Hu et al. 2016 and the RRN
    # code STEP builds on do [RRN convention]; without it MCN's unnormalised maps saturate the tanh of phi
    normalize_visual: bool = False
    # the BCE on P_T only (the paper) or averaged over every P_t (deep supervision) [hrem option]
    supervise: Literal["last", "all"] = "last"

    def validate(self) -> None:
        for name in ("folds", "attention_dim", "embed_dim", "gru_hidden", "context_dilation"):
            value = getattr(self, name)
            require(value >= 1, f"step.{name}: expected >= 1, found {value}")
        require(self.context_width >= 0, f"step.context_width: expected >= 0, found {self.context_width}")
        require(self.gru_kernel % 2 == 1, f"step.gru_kernel: expected an odd size, found {self.gru_kernel}")
        require(0.0 < self.initial_mask < 1.0, f"step.initial_mask: expected in (0, 1), found {self.initial_mask}")
        require(self.pixel_temperature > 0, f"step.pixel_temperature: expected > 0, found {self.pixel_temperature}")


@dataclass(frozen=True)
class XTaskCfg:
    """Cross-task consistency (xtask_mt, Nakano et al.) between REC and RES."""

    enabled: bool = False
    mode: Literal["consistency", "alignment"] = "consistency"  # target: detached other head | ground truth
    lambda1: float = 0.01  # RES side: (1 - l1) L_res + l1 L_{mask->box}
    lambda2: float = 0.01  # REC side: (1 - l2) L_rec + l2 L_{box->mask}
    tt_width: int = 64  # first U-Net width of the transfer nets (64, 128, 256)
    tt_bn: bool = False
    box_sharpness: float = 10.0  # k of the soft box raster, per stride-8 cell [assumption]
    # how the REC and RES sides are combined; applies with or without the transfer losses (xtask's best
    # results use "uncertainty"; "none" keeps MCN's fixed weights)
    balance: Literal["none", "uncertainty", "gradnorm"] = "none"
    gradnorm_alpha: float = 0.16
    gradnorm_lr: float = 1e-3  # the task weights' own Adam; xtask uses the network lr (MCN's is 1e-3)

    def validate(self) -> None:
        for name in ("lambda1", "lambda2"):
            value = getattr(self, name)
            require(0.0 <= value <= 1.0, f"xtask.{name}: expected in [0, 1], found {value}")
        require(self.tt_width >= 1, f"xtask.tt_width: expected >= 1, found {self.tt_width}")
        require(self.box_sharpness > 0, f"xtask.box_sharpness: expected > 0, found {self.box_sharpness}")
        require(self.gradnorm_alpha >= 0, f"xtask.gradnorm_alpha: expected >= 0, found {self.gradnorm_alpha}")
        require(self.gradnorm_lr > 0, f"xtask.gradnorm_lr: expected > 0, found {self.gradnorm_lr}")


@dataclass(frozen=True)
class CA2MCfg:
    """Multi-grained CA2M fusion (Miao et al., arXiv 2204.09957) in place of MCN's simple fusion."""

    text_layers: tuple[int, ...] = (2, 4, 6)  # hf: hidden-state indices (1 = first layer); gru: ignored
    group_width: int = 256  # C0
    group_layers: int = 2
    fusion_width: int = 768  # C1 (= len(text_layers) x group_width in the paper)
    fusion_layers: int = 3
    heads: int = 8
    ffn_mult: int = 4  # d_ff = ffn_mult x width [assumption]
    dropout: float = 0.0
    box_head: bool = False  # a direct [CLS] box regression head (L1 + GIoU), as the paper's REC output
    sentence_to_garan: bool = False  # feed the fused [CLS] token (projected) to both GARANs instead of f_q
    # what enters CA2M at the [CLS] position of every text level: the encoder's own first token ("token",
    # the paper, with BERT) or the mean of the level's real tokens ("mean", hrem option): the packaged
    # MiniLM is trained for mean pooling and its [CLS] states at layers 2 / 4 are the same for every sentence
    # (cosine 1.000 over ShapesRef expressions), so without self-attention the box token never sees the text
    cls_token: Literal["token", "mean"] = "token"
    # lr of the CA2M fusion and the direct box head = the run's lr x this [hrem option]: at MCN's 1e-3 the
    # post-LN layers collapse the [CLS] token to one vector for every input (benchmarks/ca2m_diagnose.py);
    # TransVG trains its transformer and box head at 1e-4
    lr_mult: float = 1.0

    def validate(self) -> None:
        require(len(self.text_layers) >= 1, "ca2m.text_layers: expected at least one layer index")
        require(all(i >= 1 for i in self.text_layers), f"ca2m.text_layers: expected indices >= 1, found "
                f"{self.text_layers}")
        for name in ("group_width", "group_layers", "fusion_width", "fusion_layers", "heads", "ffn_mult"):
            value = getattr(self, name)
            require(value >= 1, f"ca2m.{name}: expected >= 1, found {value}")
        for name in ("group_width", "fusion_width"):
            value = getattr(self, name)
            require(value % self.heads == 0, f"ca2m.{name}: expected a multiple of heads={self.heads}, found {value}")
        require(0.0 <= self.dropout < 1.0, f"ca2m.dropout: expected in [0, 1), found {self.dropout}")
        require(self.lr_mult > 0, f"ca2m.lr_mult: expected > 0, found {self.lr_mult}")
        require(self.cls_token in ("token", "mean"),
                f"ca2m.cls_token: expected 'token' or 'mean', found {self.cls_token!r}")


@dataclass(frozen=True)
class SelfPacedCfg:
    """The self-paced weighting d = exp(-(L - mu)^2 / sigma^2), L_total = sum d L - lambda sum d."""

    lam: float = 0.75  # lambda, the self-paced "age"
    sigma_init: float = 2.5
    sigma_lr: float = 5e-5
    mu: float = 0.0
    detach: bool = True  # weights from detached losses (the only stable choice, REFERENCE_EXTRA 3.1)
    apply_to: Literal["direct", "yolo", "both"] = "direct"  # which per-sample REC losses are weighted

    def validate(self) -> None:
        require(self.lam >= 0, f"self_paced.lam: expected >= 0, found {self.lam}")
        require(self.sigma_init > 0, f"self_paced.sigma_init: expected > 0, found {self.sigma_init}")
        require(self.sigma_lr > 0, f"self_paced.sigma_lr: expected > 0, found {self.sigma_lr}")


__all__ = ["CA2MCfg", "STEPCfg", "SelfPacedCfg", "XTaskCfg"]
