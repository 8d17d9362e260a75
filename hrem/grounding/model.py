"""The MCN grounding model: one forward gives the REC box predictions and the RES mask logits.

images [B, 3, S, S] (letterboxed, [0, 1]) + tokens
  -> backbone C3/C4/C5 (strides 8/16/32), language f_q
  -> simple fusion at stride 32 (F_m)                      [fusion: ca2m -> multi-grained CA2M]
  -> RES: top-down to stride 8, GARAN, ASPP -> mask logits [B, 1, S/8, S/8]   [res_head: step -> STEP]
     [mask_refine (hrem option): + a head refining the mask to S/4 with the stride-4 backbone map]
  -> REC: bottom-up from the RES post-GARAN features to stride 32, GARAN, YOLO conv -> [B, g, g, 3, 5]
     [ca2m.box_head: + a direct box from the fused [CLS] token]
Training adds CEM between the two branches' attended maps (`compute_losses`); inference takes the top box,
applies ASNLS to the mask and maps both back to the original image (`predict`). The bracketed options are
those of REFERENCE_EXTRA.md; the defaults are the MCN baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from hrem.config.grounding import MCNCard
from hrem.data.tokenize import TokenBatch
from hrem.grounding.asnls import asnls as apply_asnls
from hrem.grounding.asnls import round_box
from hrem.vision.backbone import VisualBackbone
from hrem.grounding.box_regression import DirectBoxHead, cxcywh_to_xyxy, giou_loss, l1_box_loss
from hrem.grounding.cem import ConsistencyEnergy, cem_loss
from hrem.grounding.fusion import SimpleFusion
from hrem.grounding.fusion_ca2m import CA2MFusion, FusionOutput
from hrem.grounding.garan import GARAN
from hrem.grounding.heads import ASPPDecoder, MaskRefiner, YoloHead
from hrem.grounding.language import LanguageOutput
from hrem.grounding.layers import ConvBNLeaky
from hrem.grounding.losses import mask_loss_per_sample, yolo_losses_per_sample
from hrem.grounding.neck import BottomUpPath, TopDownPath
from hrem.grounding.step import STEPHead
from hrem.grounding.targets import GroundingTargets
from hrem.grounding.yolo import decode_boxes, select_top_box, xywh_to_xyxy
from hrem.vision.letterbox import LetterboxMeta, box_from_letterbox, probs_from_letterbox


@dataclass(frozen=True)
class GroundingOutput:
    raw: torch.Tensor  # [B, g, g, A, 5] (tx, ty, tw, th, objectness logit), g = S / 32
    boxes_xywh: torch.Tensor  # [B, g, g, A, 4] decoded centre x, y, w, h in input pixels
    objectness: torch.Tensor  # [B, g, g, A] logits
    mask_logits: torch.Tensor  # [B, 1, S/8, S/8]
    res_attended: torch.Tensor  # [B, neck, S/8, S/8] RES attended map F_s (CEM input)
    rec_attended: torch.Tensor  # [B, neck, S/32, S/32] REC GARAN attended map F_c (CEM input)
    res_collect: torch.Tensor | None  # [B, heads, (S/8)^2] RES collect attention (None with STEP)
    rec_collect: torch.Tensor  # [B, heads, (S/32)^2]
    sentence: torch.Tensor  # [B, D] f_q
    direct_box: torch.Tensor | None = None  # [B, 4] normalised (cx, cy, w, h) of the CA2M box head
    fine_mask_logits: torch.Tensor | None = None  # [B, 1, S/4, S/4] with mask_refine

    @property
    def output_mask_logits(self) -> torch.Tensor:
        """The mask inference uses: the refined stride-4 mask when the card has one, else MCN's stride 8."""
        return self.mask_logits if self.fine_mask_logits is None else self.fine_mask_logits


@dataclass(frozen=True)
class GroundingPrediction:
    box_xyxy: np.ndarray  # [4] float64, original image pixels, clipped to the image
    score: float  # sigma(objectness) of the chosen box
    mask: np.ndarray  # bool [H, W] at the original size
    box_letterbox: tuple[int, int, int, int]  # the rounded input-pixel box ASNLS used (inclusive)


@dataclass(frozen=True)
class ResBranch:
    features: torch.Tensor  # [B, neck, S/8, S/8] what the REC bottom-up path consumes
    attended: torch.Tensor  # [B, neck, S/8, S/8] F_s for CEM
    mask_logits: torch.Tensor  # [B, 1, S/8, S/8]
    collect: torch.Tensor | None = None
    sentence: torch.Tensor | None = None  # STEP's s_T when it replaces f_q on the REC side
    fine_mask_logits: torch.Tensor | None = None  # [B, 1, S/4, S/4] (mask_refine)


def build_mask_refiner(card: MCNCard, aspp: ASPPDecoder, fine_channels: int | None) -> MaskRefiner | None:
    """hrem's stride-4 refinement head when the card enables mask_refine, else None."""
    refine = card.mask_refine
    if not refine.enabled:
        return None
    if fine_channels is None:
        raise ValueError("mask_refine.enabled: the visual backbone was built without the stride-4 map "
                         f"{refine.feature!r} (build the model with hrem.grounding.build_mcn)")
    return MaskRefiner(aspp.merged_channels, fine_channels, refine.skip, refine.width, refine.detach)


def build_fusion(card: MCNCard, channels: tuple[int, int, int], language: nn.Module) -> nn.Module:
    if card.fusion == "ca2m":
        return CA2MFusion(channels, language.level_widths, card.ca2m, card.widths.fusion,
                          card.language.dim, card.language.max_tokens + 2)
    return SimpleFusion(channels[2], card.language.dim, card.widths.fusion)


class GroundingModel(nn.Module):
    def __init__(self, card: MCNCard, backbone: VisualBackbone, language: nn.Module) -> None:
        super().__init__()
        self.card = card
        w, text_dim = card.widths, card.language.dim
        c3, c4, c5 = backbone.channels
        self.backbone = backbone
        self.language = language
        self.fusion = build_fusion(card, backbone.channels, language)
        self.top_down = TopDownPath(w.fusion, c4, c3, w.skip, w.neck)
        if card.res_head == "step":
            neck_maps = card.step.visual_source == "neck"
            self.step = STEPHead((w.neck, w.neck, w.fusion) if neck_maps else (c3, c4, c5), text_dim, card.step)
            self.step_proj = ConvBNLeaky(card.step.gru_hidden, w.neck, 1)  # h_T -> F_s (CEM, REC input)
        else:
            self.res_garan = GARAN(w.neck, text_dim, w.garan_heads)
            self.mask_head = ASPPDecoder(w.neck, w.aspp, w.aspp_dilations)
            self.mask_refiner = build_mask_refiner(card, self.mask_head, backbone.fine_channels)
        self.bottom_up = BottomUpPath(w.fusion, w.neck)
        self.rec_garan = GARAN(w.neck, text_dim, w.garan_heads)
        self.box_head = YoloHead(w.neck, len(card.anchors))
        self.direct_box = None
        if card.fusion == "ca2m" and card.ca2m.box_head:
            self.direct_box = DirectBoxHead(card.ca2m.fusion_width, card.ca2m.fusion_width)
        self.cem = ConsistencyEnergy(w.neck)  # training only, but its weights live in the model (as in K)
        self.register_buffer("anchors", torch.tensor(card.anchors, dtype=torch.float32), persistent=False)

    def shared_layer(self) -> torch.Tensor:
        """The last weight both tasks depend on (GradNorm's W): the fused trunk's last conv, or with STEP
        (whose RES head may read the backbone maps, not F_m) the backbone's last conv."""
        if self.card.res_head == "step":
            return [m for m in self.backbone.modules() if isinstance(m, nn.Conv2d)][-1].weight
        return self.fusion.last_weight

    def _fuse(self, c3, c4, c5, language: LanguageOutput) -> FusionOutput:
        if self.card.fusion == "ca2m":
            return self.fusion(c3, c4, c5, language)
        return FusionOutput(self.fusion(c5, language.sentence))

    def _res_branch(self, fused, mid, c3, c4, c5, language: LanguageOutput, sentence: torch.Tensor,
                    fine: torch.Tensor | None) -> ResBranch:
        if self.card.res_head == "step":
            grid = tuple(c3.shape[-2:])
            if self.card.step.visual_source == "neck":
                levels = (self.top_down.down(mid, c3), mid, fused)
            else:
                levels = (c3, c4, c5)
            out = self.step(levels, language.tokens, language.mask, grid)
            features = self.step_proj(out.hidden)
            rec_sentence = out.sentence if self.card.step.sentence_to_rec else None
            return ResBranch(features, features, out.logits, None, rec_sentence)
        res = self.res_garan(self.top_down.down(mid, c3), sentence)
        if self.mask_refiner is None:
            return ResBranch(res.features, res.attended, self.mask_head(res.features), res.collect)
        merged = self.mask_head.merged(res.features)
        mask = self.mask_head.out(merged)
        return ResBranch(res.features, res.attended, mask, res.collect,
                         fine_mask_logits=self.mask_refiner(merged, mask, fine))

    def forward(self, images: torch.Tensor, tokens: TokenBatch) -> GroundingOutput:
        size = self.card.input_size
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, size, size):
            raise ValueError(
                f"images: expected [B, 3, {size}, {size}] letterboxed input for card "
                f"'{self.card.name}', found {tuple(images.shape)}"
            )
        language = self.language(tokens)
        *fine, c3, c4, c5 = self.backbone(images)
        if fine and tuple(fine[0].shape[-2:]) != (2 * c3.shape[-2], 2 * c3.shape[-1]):
            raise ValueError(f"mask_refine.feature {self.card.mask_refine.feature!r}: expected a stride-4 map "
                             f"of {2 * c3.shape[-2]}x{2 * c3.shape[-1]}, found {tuple(fine[0].shape[-2:])}")
        fusion = self._fuse(c3, c4, c5, language)
        sentence = language.sentence if fusion.sentence is None else fusion.sentence
        mid = self.top_down.mid(fusion.fused, c4)
        res = self._res_branch(fusion.fused, mid, c3, c4, c5, language, sentence, fine[0] if fine else None)
        rec_sentence = sentence if res.sentence is None else res.sentence
        rec = self.rec_garan(self.bottom_up(res.features, mid, fusion.fused), rec_sentence)
        raw = self.box_head(rec.features)
        direct = None if self.direct_box is None else self.direct_box(fusion.cls)
        return GroundingOutput(
            raw=raw,
            boxes_xywh=decode_boxes(raw, self.anchors),
            objectness=raw[..., 4],
            mask_logits=res.mask_logits,
            res_attended=res.attended,
            rec_attended=rec.attended,
            res_collect=res.collect,
            rec_collect=rec.collect,
            sentence=language.sentence,
            direct_box=direct,
            fine_mask_logits=res.fine_mask_logits,
        )

    def per_sample_losses(self, output: GroundingOutput, targets: GroundingTargets) -> dict[str, torch.Tensor]:
        """Per-sample [B] terms: "xy", "wh", "conf", "mask" (0 without a mask target), with mask_refine
        "mask_fine" (stride 4, when the targets have it) and, with the direct box head, "box_l1" and
        "box_giou" on normalised coordinates (0 for samples without a box)."""
        cfg = self.card.losses
        terms = yolo_losses_per_sample(output.raw, output.boxes_xywh, targets.yolo, cfg.ignore_iou, cfg.wh_sigma)
        batch = output.raw.shape[0]
        no_mask = output.raw.new_zeros(batch)
        terms["mask"] = no_mask if targets.mask is None else mask_loss_per_sample(output.mask_logits, targets.mask)
        if output.fine_mask_logits is not None and targets.fine_mask is not None:
            terms["mask_fine"] = mask_loss_per_sample(output.fine_mask_logits, targets.fine_mask)
        if output.direct_box is not None:
            valid = targets.yolo.valid.to(output.direct_box.dtype)
            gt = targets.yolo.boxes_xywh.to(output.direct_box.dtype) / self.card.input_size
            terms["box_l1"] = valid * l1_box_loss(output.direct_box, gt)
            terms["box_giou"] = valid * giou_loss(cxcywh_to_xyxy(output.direct_box), cxcywh_to_xyxy(gt))
        return terms

    def cem_term(self, output: GroundingOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """(L_cem, mean energy detached) between the RES and REC attended maps."""
        energy = self.cem(output.res_attended, output.rec_attended)
        return cem_loss(energy), energy.detach().mean()

    def compute_losses(self, output: GroundingOutput, targets: GroundingTargets) -> dict[str, torch.Tensor]:
        """{"loss", "xy", "wh", "conf", "mask", "cem", "energy"} (+ "box_l1", "box_giou" with the direct box
        head, + "mask_fine" with mask_refine); every term averaged over the batch; "loss" uses MCN's fixed weights."""
        cfg = self.card.losses
        terms = {name: values.mean() for name, values in self.per_sample_losses(output, targets).items()}
        terms["cem"], energy = self.cem_term(output)
        direct = terms.get("box_l1", 0.0) + terms.get("box_giou", 0.0)
        refine = self.card.mask_refine.weight * terms.get("mask_fine", 0.0)
        terms["loss"] = (
            terms["xy"] + terms["wh"] + terms["conf"] + cfg.mask_weight * terms["mask"]
            + cfg.cem_weight * terms["cem"] + direct + refine
        )
        terms["energy"] = energy
        return terms

    def top_boxes(self, output: GroundingOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """(xyxy input pixels [B, 4], score [B]) of the card's box source; the score is the top YOLO
        objectness either way (the direct head has no confidence of its own)."""
        boxes, scores = select_top_box(output.boxes_xywh, output.objectness)
        if self.card.inference.box_source == "direct":
            boxes = xywh_to_xyxy(output.direct_box * self.card.input_size)
        return boxes, scores

    @torch.no_grad()
    def predict(
        self, output: GroundingOutput, metas: list[LetterboxMeta], asnls: bool | None = None
    ) -> list[GroundingPrediction]:
        """Top box + mask per sample in original image coordinates (K's evaluation path).

        sigma(mask logits) -> bilinear to S x S -> ASNLS with the top box (if on) -> crop the padding ->
        bilinear to H x W -> > mask_threshold.
        """
        if len(metas) != output.raw.shape[0]:
            raise ValueError(
                f"metas: expected one LetterboxMeta per sample ({output.raw.shape[0]}), found {len(metas)}"
            )
        cfg, size = self.card.inference, self.card.input_size
        use_asnls = cfg.asnls if asnls is None else asnls
        boxes, scores = self.top_boxes(output)
        probs = F.interpolate(
            torch.sigmoid(output.output_mask_logits.float()), size=(size, size), mode="bilinear",
            align_corners=False,
        )[:, 0]
        predictions = []
        for prob, box, score, meta in zip(probs, boxes.float().cpu(), scores.float().cpu(), metas):
            box_int = round_box(box, size)
            if use_asnls:
                prob = apply_asnls(prob, box_int, float(score), cfg.asnls_lambdas)
            mask = (probs_from_letterbox(prob, meta) > cfg.mask_threshold).cpu().numpy()
            box_orig = box_from_letterbox(box.clamp(0, size).numpy(), meta)
            predictions.append(GroundingPrediction(box_orig, float(score), mask, box_int))
        return predictions

    @torch.no_grad()
    def ground(
        self, images: torch.Tensor, tokens: TokenBatch, metas: list[LetterboxMeta], asnls: bool | None = None
    ) -> list[GroundingPrediction]:
        """forward + predict in eval mode: what the `ground` stage calls per batch."""
        was_training = self.training
        self.eval()
        try:
            return self.predict(self.forward(images, tokens), metas, asnls)
        finally:
            self.train(was_training)
