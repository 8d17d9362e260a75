"""The MCN grounding model: one forward gives the REC box predictions and the RES mask logits.

images [B, 3, S, S] (letterboxed, [0, 1]) + tokens
  -> backbone C3/C4/C5 (strides 8/16/32), language f_q
  -> simple fusion at stride 32 (F_m)
  -> RES: top-down to stride 8, GARAN, ASPP -> mask logits [B, 1, S/8, S/8]
  -> REC: bottom-up from the RES post-GARAN features to stride 32, GARAN, YOLO conv -> [B, g, g, 3, 5]
Training adds CEM between the two GARANs' attended maps (`compute_losses`); inference takes the top box,
applies ASNLS to the mask and maps both back to the original image (`predict`).
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
from hrem.grounding.backbone import VisualBackbone
from hrem.grounding.cem import ConsistencyEnergy, cem_loss
from hrem.grounding.fusion import SimpleFusion
from hrem.grounding.garan import GARAN
from hrem.grounding.heads import ASPPDecoder, YoloHead
from hrem.grounding.letterbox import LetterboxMeta, box_from_letterbox, probs_from_letterbox
from hrem.grounding.losses import mask_loss, yolo_losses
from hrem.grounding.neck import BottomUpPath, TopDownPath
from hrem.grounding.targets import GroundingTargets
from hrem.grounding.yolo import decode_boxes, select_top_box


@dataclass(frozen=True)
class GroundingOutput:
    raw: torch.Tensor  # [B, g, g, A, 5] (tx, ty, tw, th, objectness logit), g = S / 32
    boxes_xywh: torch.Tensor  # [B, g, g, A, 4] decoded centre x, y, w, h in input pixels
    objectness: torch.Tensor  # [B, g, g, A] logits
    mask_logits: torch.Tensor  # [B, 1, S/8, S/8]
    res_attended: torch.Tensor  # [B, neck, S/8, S/8] RES GARAN attended map F_s (CEM input)
    rec_attended: torch.Tensor  # [B, neck, S/32, S/32] REC GARAN attended map F_c (CEM input)
    res_collect: torch.Tensor  # [B, heads, (S/8)^2] RES collect attention (for inspection)
    rec_collect: torch.Tensor  # [B, heads, (S/32)^2]
    sentence: torch.Tensor  # [B, D] f_q


@dataclass(frozen=True)
class GroundingPrediction:
    box_xyxy: np.ndarray  # [4] float64, original image pixels, clipped to the image
    score: float  # sigma(objectness) of the chosen box
    mask: np.ndarray  # bool [H, W] at the original size
    box_letterbox: tuple[int, int, int, int]  # the rounded input-pixel box ASNLS used (inclusive)


class GroundingModel(nn.Module):
    def __init__(self, card: MCNCard, backbone: VisualBackbone, language: nn.Module) -> None:
        super().__init__()
        self.card = card
        w, text_dim = card.widths, card.language.dim
        c3, c4, c5 = backbone.channels
        self.backbone = backbone
        self.language = language
        self.fusion = SimpleFusion(c5, text_dim, w.fusion)
        self.top_down = TopDownPath(w.fusion, c4, c3, w.skip, w.neck)
        self.res_garan = GARAN(w.neck, text_dim, w.garan_heads)
        self.mask_head = ASPPDecoder(w.neck, w.aspp, w.aspp_dilations)
        self.bottom_up = BottomUpPath(w.fusion, w.neck)
        self.rec_garan = GARAN(w.neck, text_dim, w.garan_heads)
        self.box_head = YoloHead(w.neck, len(card.anchors))
        self.cem = ConsistencyEnergy(w.neck)  # training only, but its weights live in the model (as in K)
        self.register_buffer("anchors", torch.tensor(card.anchors, dtype=torch.float32), persistent=False)

    def forward(self, images: torch.Tensor, tokens: TokenBatch) -> GroundingOutput:
        size = self.card.input_size
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, size, size):
            raise ValueError(
                f"images: expected [B, 3, {size}, {size}] letterboxed input for card "
                f"'{self.card.name}', found {tuple(images.shape)}"
            )
        sentence = self.language(tokens).sentence
        c3, c4, c5 = self.backbone(images)
        fused = self.fusion(c5, sentence)
        mid, down = self.top_down(fused, c4, c3)
        res = self.res_garan(down, sentence)
        rec = self.rec_garan(self.bottom_up(res.features, mid, fused), sentence)
        raw = self.box_head(rec.features)
        return GroundingOutput(
            raw=raw,
            boxes_xywh=decode_boxes(raw, self.anchors),
            objectness=raw[..., 4],
            mask_logits=self.mask_head(res.features),
            res_attended=res.attended,
            rec_attended=rec.attended,
            res_collect=res.collect,
            rec_collect=rec.collect,
            sentence=sentence,
        )

    def compute_losses(self, output: GroundingOutput, targets: GroundingTargets) -> dict[str, torch.Tensor]:
        """{"loss", "xy", "wh", "conf", "mask", "cem", "energy"}; every term averaged over the batch."""
        cfg = self.card.losses
        terms = yolo_losses(output.raw, output.boxes_xywh, targets.yolo, cfg.ignore_iou, cfg.wh_sigma)
        zero = output.raw.new_zeros(())
        terms["mask"] = zero if targets.mask is None else mask_loss(output.mask_logits, targets.mask)
        energy = self.cem(output.res_attended, output.rec_attended)
        terms["cem"] = cem_loss(energy)
        terms["loss"] = (
            terms["xy"]
            + terms["wh"]
            + terms["conf"]
            + cfg.mask_weight * terms["mask"]
            + cfg.cem_weight * terms["cem"]
        )
        terms["energy"] = energy.detach().mean()
        return terms

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
        boxes, scores = select_top_box(output.boxes_xywh, output.objectness)
        probs = F.interpolate(
            torch.sigmoid(output.mask_logits.float()), size=(size, size), mode="bilinear", align_corners=False
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
