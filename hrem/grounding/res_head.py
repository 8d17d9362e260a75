"""The RES head interface and MCN's head (GARAN + ASPP, optionally with hrem's stride-4 refiner).

A RES head reads the neck (and, per head, the backbone maps) and gives the mask branch: the stride-8 mask
logits, the attended map F_s for CEM and the features the REC bottom-up path consumes. The card's
`res_head` picks one once, in hrem.grounding.parts: "mcn_aspp" here, "step" in
hrem.grounding.options.step_res_head.

A head is a plain object over nn.Modules: GroundingModel registers those modules on itself under the names
`parts()` gives (res_garan, mask_head, mask_refiner; step, step_proj), the names checkpoints were saved
with before this interface existed, so their keys stay the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from hrem.grounding.fusion import Fusion
from hrem.grounding.garan import GARAN
from hrem.grounding.heads import ASPPDecoder
from hrem.grounding.language import LanguageOutput
from hrem.grounding.neck import TopDownPath


@dataclass(frozen=True)
class ResInputs:
    """What a RES head may read of one forward."""

    fused: torch.Tensor  # [B, fusion, S/32, S/32] F_m
    mid: torch.Tensor  # [B, neck, S/16, S/16] F_mid
    c3: torch.Tensor  # backbone maps at strides 8, 16, 32
    c4: torch.Tensor
    c5: torch.Tensor
    language: LanguageOutput
    sentence: torch.Tensor  # [B, D] the f_q the GARANs read (CA2M may replace the language's)
    fine: torch.Tensor | None  # [B, c, S/4, S/4] the stride-4 backbone map with mask_refine, else None
    top_down: TopDownPath

    def down(self) -> torch.Tensor:
        """F_down [B, neck, S/8, S/8], the top-down path's last step. Only heads that read it run it: STEP on
        the backbone maps does not, and that step's BatchNorm statistics must then stay as they are."""
        return self.top_down.down(self.mid, self.c3)


@dataclass(frozen=True)
class ResBranch:
    features: torch.Tensor  # [B, neck, S/8, S/8] what the REC bottom-up path consumes
    attended: torch.Tensor  # [B, neck, S/8, S/8] F_s for CEM
    mask_logits: torch.Tensor  # [B, 1, S/8, S/8]
    collect: torch.Tensor | None = None
    sentence: torch.Tensor | None = None  # STEP's s_T when it replaces f_q on the REC side
    fine_mask_logits: torch.Tensor | None = None  # [B, 1, S/4, S/4] (mask_refine)
    step_mask_logits: tuple[torch.Tensor, ...] | None = None  # STEP's P_1..P_T logits (step.supervise "all")


class ResHead(Protocol):
    def parts(self) -> dict[str, nn.Module | None]:
        """The head's modules by the name the model registers each under (None: an option left out)."""
        ...

    def __call__(self, inputs: ResInputs) -> ResBranch: ...

    def shared_layer(self, backbone: nn.Module, fusion: Fusion) -> torch.Tensor:
        """The last weight both tasks depend on with this head (GradNorm's W)."""
        ...


class AsppResHead:
    """MCN's head: GARAN on F_down, ASPP -> mask logits; with a refiner (mask_refine) also the stride-4 mask."""

    def __init__(self, garan: GARAN, decoder: ASPPDecoder, refiner: nn.Module | None = None) -> None:
        self.garan, self.decoder, self.refiner = garan, decoder, refiner

    def parts(self) -> dict[str, nn.Module | None]:
        return {"res_garan": self.garan, "mask_head": self.decoder, "mask_refiner": self.refiner}

    def __call__(self, inputs: ResInputs) -> ResBranch:
        res = self.garan(inputs.down(), inputs.sentence)
        if self.refiner is None:
            return ResBranch(res.features, res.attended, self.decoder(res.features), res.collect)
        merged = self.decoder.merged(res.features)
        mask = self.decoder.out(merged)
        return ResBranch(res.features, res.attended, mask, res.collect,
                         fine_mask_logits=self.refiner(merged, mask, inputs.fine))

    def shared_layer(self, backbone: nn.Module, fusion: Fusion) -> torch.Tensor:
        return fusion.last_weight  # the head reads only the fused trunk
