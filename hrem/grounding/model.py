"""The MCN grounding model: one forward gives the REC box predictions and the RES mask logits.

images [B, 3, S, S] (letterboxed, [0, 1]) + tokens
  -> backbone C3/C4/C5 (strides 8/16/32), language f_q
  -> simple fusion at stride 32 (F_m)                      [fusion: ca2m -> multi-grained CA2M]
  -> RES: top-down to stride 8, GARAN, ASPP -> mask logits [B, 1, S/8, S/8]   [res_head: step -> STEP]
     [mask_refine (hrem option): + a head refining the mask to S/4 with the stride-4 backbone map]
  -> REC: bottom-up from the RES post-GARAN features to stride 32, GARAN, YOLO conv -> [B, g, g, 3, 5]
     [ca2m.box_head: + a direct box from the fused [CLS] token]
The model returns outputs only: hrem.grounding.criterion turns them into the training loss (with CEM
between the two branches' attended maps); inference takes the top box, applies ASNLS to the mask and maps
both back to the original image (`predict`). The bracketed options are those of REFERENCE_EXTRA.md (the
defaults are the MCN baseline); hrem.grounding.parts chooses them from the card, once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from hrem.config.grounding import MCNCard
from hrem.data.tokenize import TokenBatch
from hrem.grounding.asnls import asnls as apply_asnls
from hrem.grounding.asnls import round_box
from hrem.grounding.res_head import ResInputs
from hrem.grounding.yolo import decode_boxes, select_top_box, xywh_to_xyxy
from hrem.vision.letterbox import LetterboxMeta, box_from_letterbox, probs_from_letterbox

if TYPE_CHECKING:  # the builder's bundle, for the annotation only: the model never imports the options
    from hrem.grounding.parts import GroundingParts


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
    step_mask_logits: tuple[torch.Tensor, ...] | None = None  # STEP's P_1..P_T logits (step.supervise "all")

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


class GroundingModel(nn.Module):
    """Wires the parts of hrem.grounding.parts.build_parts (build it with hrem.grounding.build_mcn)."""

    def __init__(self, card: MCNCard, parts: GroundingParts) -> None:
        super().__init__()
        self.card = card
        self.backbone = parts.backbone
        self.language = parts.language
        self.fusion = parts.fusion
        self.top_down = parts.top_down
        self.res_head = parts.res_head  # a plain object: its modules are registered right below
        for name, module in parts.res_head.parts().items():
            # On the model itself, not under the head: checkpoint keys stay MCN's (res_garan.*, step.*).
            self.add_module(name, module)
        self.bottom_up = parts.bottom_up
        self.rec_garan = parts.rec_garan
        self.box_head = parts.box_head
        self.direct_box = parts.direct_box
        self.cem = parts.cem  # read by the criterion only
        self.register_buffer("anchors", torch.tensor(card.anchors, dtype=torch.float32), persistent=False)

    def lr_multipliers(self) -> dict[str, float]:
        """{parameter-name prefix: lr multiplier} for the parts the card trains at their own lr."""
        mult = self.card.ca2m.lr_mult
        if self.card.fusion != "ca2m" or mult == 1.0:
            return {}
        return {"fusion.": mult, "direct_box.": mult}

    def shared_layer(self) -> torch.Tensor:
        """The last weight both tasks depend on (GradNorm's W), as the RES head decides."""
        return self.res_head.shared_layer(self.backbone, self.fusion)

    def forward(self, images: torch.Tensor, tokens: TokenBatch) -> GroundingOutput:
        self._check_images(images)
        language = self.language(tokens)
        *fine, c3, c4, c5 = self.backbone(images)
        self._check_fine(fine, c3)
        fusion = self.fusion(c3, c4, c5, language)
        sentence = language.sentence if fusion.sentence is None else fusion.sentence
        mid = self.top_down.mid(fusion.fused, c4)
        res = self.res_head(ResInputs(fusion.fused, mid, c3, c4, c5, language, sentence,
                                      fine[0] if fine else None, self.top_down))
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
            step_mask_logits=res.step_mask_logits,
        )

    def _check_images(self, images: torch.Tensor) -> None:
        size = self.card.input_size
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, size, size):
            raise ValueError(
                f"images: expected [B, 3, {size}, {size}] letterboxed input for card "
                f"'{self.card.name}', found {tuple(images.shape)}"
            )

    def _check_fine(self, fine: list[torch.Tensor], c3: torch.Tensor) -> None:
        if fine and tuple(fine[0].shape[-2:]) != (2 * c3.shape[-2], 2 * c3.shape[-1]):
            raise ValueError(f"mask_refine.feature {self.card.mask_refine.feature!r}: expected a stride-4 map "
                             f"of {2 * c3.shape[-2]}x{2 * c3.shape[-1]}, found {tuple(fine[0].shape[-2:])}")

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
