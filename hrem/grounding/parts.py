"""The parts of a GroundingModel from its card: where the card's variants are chosen, once.

`build_parts` picks the fusion (`fusion`), the RES head (`res_head`, with `mask_refine`) and the direct box
head (`ca2m.box_head`); GroundingModel only wires what it is given. The parts are built in MCN's order
(fusion, top-down path, RES head, bottom-up path, REC GARAN, YOLO head, direct box head, CEM): the order in
which they draw their initial weights from the random generator, so a seed keeps giving the same model.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from hrem.config.grounding import MCNCard
from hrem.grounding.cem import ConsistencyEnergy
from hrem.grounding.fusion import Fusion, SimpleFusion
from hrem.grounding.garan import GARAN
from hrem.grounding.heads import ASPPDecoder, YoloHead
from hrem.grounding.layers import ConvBNLeaky
from hrem.grounding.neck import BottomUpPath, TopDownPath
from hrem.grounding.options.box_regression import DirectBoxHead
from hrem.grounding.options.ca2m_fusion import CA2MFusion
from hrem.grounding.options.mask_refine import MaskRefiner
from hrem.grounding.options.step import STEPHead
from hrem.grounding.options.step_res_head import StepResHead
from hrem.grounding.res_head import AsppResHead, ResHead
from hrem.vision.backbone import VisualBackbone


@dataclass(frozen=True)
class GroundingParts:
    backbone: VisualBackbone
    language: nn.Module
    fusion: Fusion
    top_down: TopDownPath
    res_head: ResHead
    bottom_up: BottomUpPath
    rec_garan: GARAN
    box_head: YoloHead
    direct_box: DirectBoxHead | None
    cem: ConsistencyEnergy  # training only, but its weights live in the model (as in K)


def build_parts(card: MCNCard, backbone: VisualBackbone, language: nn.Module) -> GroundingParts:
    w = card.widths
    c3, c4, _ = backbone.channels
    # Keyword arguments are evaluated left to right: this is the construction order of the module docstring.
    return GroundingParts(
        backbone=backbone,
        language=language,
        fusion=FUSIONS[card.fusion](card, backbone.channels, language),
        top_down=TopDownPath(w.fusion, c4, c3, w.skip, w.neck),
        res_head=RES_HEADS[card.res_head](card, backbone),
        bottom_up=BottomUpPath(w.fusion, w.neck),
        rec_garan=GARAN(w.neck, card.language.dim, w.garan_heads),
        box_head=YoloHead(w.neck, len(card.anchors)),
        direct_box=build_direct_box(card),
        cem=ConsistencyEnergy(w.neck),
    )


def _simple_fusion(card: MCNCard, channels: tuple[int, int, int], language: nn.Module) -> Fusion:
    return SimpleFusion(channels[2], card.language.dim, card.widths.fusion)


def _ca2m_fusion(card: MCNCard, channels: tuple[int, int, int], language: nn.Module) -> Fusion:
    return CA2MFusion(channels, language.level_widths, card.ca2m, card.widths.fusion,
                      card.language.dim, card.language.max_tokens + 2)


def _aspp_head(card: MCNCard, backbone: VisualBackbone) -> ResHead:
    w = card.widths
    garan = GARAN(w.neck, card.language.dim, w.garan_heads)
    decoder = ASPPDecoder(w.neck, w.aspp, w.aspp_dilations)
    return AsppResHead(garan, decoder, build_mask_refiner(card, decoder, backbone.fine_channels))


def _step_head(card: MCNCard, backbone: VisualBackbone) -> ResHead:
    w, cfg = card.widths, card.step
    levels = (w.neck, w.neck, w.fusion) if cfg.visual_source == "neck" else backbone.channels
    step = STEPHead(levels, card.language.dim, cfg)
    return StepResHead(step, ConvBNLeaky(cfg.gru_hidden, w.neck, 1), cfg)  # h_T -> F_s (CEM, REC input)


FUSIONS = {"simple": _simple_fusion, "ca2m": _ca2m_fusion}
RES_HEADS = {"mcn_aspp": _aspp_head, "step": _step_head}


def build_mask_refiner(card: MCNCard, aspp: ASPPDecoder, fine_channels: int | None) -> MaskRefiner | None:
    """hrem's stride-4 refinement head when the card enables mask_refine, else None."""
    refine = card.mask_refine
    if not refine.enabled:
        return None
    if fine_channels is None:
        raise ValueError("mask_refine.enabled: the visual backbone was built without the stride-4 map "
                         f"{refine.feature!r} (build the model with hrem.grounding.build_mcn)")
    return MaskRefiner(aspp.merged_channels, fine_channels, refine.skip, refine.width, refine.detach)


def build_direct_box(card: MCNCard) -> DirectBoxHead | None:
    """CA2M's direct [CLS] box head when the card has one, else None."""
    if card.fusion == "ca2m" and card.ca2m.box_head:
        return DirectBoxHead(card.ca2m.fusion_width, card.ca2m.fusion_width)
    return None
