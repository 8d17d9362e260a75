"""ShapesDetector: transformers ResNet -> TinyFPN -> anchor-free boxes (box_head) + BUTD-style region head.

    det = build_detector(card)                          # hrem.factory.create_model(card, weights) loads it
    regions = det.detect_regions(pixels, 36)            # hrem.vision.regions contract: RegionSet per image
    found = det.detect(pixels)                          # evaluation: NMS'd boxes, scores, predicted labels

Inputs are letterboxed RGB in [0, 1] at `input_size` (mean/std are applied inside the backbone).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from hrem.config.detector import DetectorCard
from hrem.detection.box_head import BoxHead, assign_cells, box_losses, cell_centres
from hrem.detection.neck import TinyFPN
from hrem.detection.region_head import RegionHead, region_losses, sample_training_boxes
from hrem.vision.backbone import VisualBackbone
from hrem.vision.boxes import nms
from hrem.vision.regions import RegionSet, fill_after_nms

FINE_STAGE = "stage1"   # stride 4: the region head also pools it (shape detail of 20-px objects)


@dataclass(frozen=True)
class DetectorOutput:
    fine: Tensor          # [B, c2, S/4, S/4]
    p3: Tensor            # [B, width, S/8, S/8]
    logits: Tensor        # [B, G] objectness
    boxes: Tensor         # [B, G, 4] xyxy input pixels, clipped to the input square


@dataclass(frozen=True)
class Detections:
    boxes: Tensor                    # [K, 4]
    scores: Tensor                   # [K]
    labels: dict[str, Tensor]        # "object" (shape index; never background) and attributes, [K] each


class ShapesDetector(nn.Module):
    def __init__(self, card: DetectorCard) -> None:
        super().__init__()
        if card.stride != 8:
            raise ValueError(f"stride: this detector predicts on P3 (stride 8), found {card.stride}")
        self.card = card
        self.input_size = card.input_size
        self.feature_dim = card.region_head.feature_dim
        self.backbone = VisualBackbone(card.backbone, fine_feature=FINE_STAGE)
        self.neck = TinyFPN(self.backbone.channels, card.box_head.width)
        self.box_head = BoxHead(card.box_head, card.stride)
        self.region_head = RegionHead(card.region_head, self.backbone.fine_channels, card.box_head.width,
                                      len(card.objects), {k: len(v) for k, v in card.attributes.items()},
                                      card.input_size)

    def forward(self, pixels: Tensor) -> DetectorOutput:
        if pixels.dim() != 4 or tuple(pixels.shape[1:]) != (3, self.input_size, self.input_size):
            raise ValueError(f"pixels: expected [B, 3, {self.input_size}, {self.input_size}] letterboxed RGB in "
                             f"[0, 1], found {tuple(pixels.shape)}")
        fine, c3, c4, c5 = self.backbone(pixels)
        p3 = self.neck(c3, c4, c5)
        logits, boxes = self.box_head(p3)
        return DetectorOutput(fine, p3, logits, boxes.clamp(0, self.input_size))

    # -- training ---------------------------------------------------------------------------------
    def losses(self, pixels: Tensor, gt_boxes: list[Tensor], gt_labels: list[dict[str, Tensor]],
               generator: torch.Generator) -> dict[str, Tensor]:
        """Box-head and region-head loss terms; "loss" is the weighted total. gt_* on the CPU."""
        out = self(pixels)
        device = pixels.device
        centres = cell_centres(out.p3.shape[-2], out.p3.shape[-1], self.card.stride, device, out.boxes.dtype)
        targets = assign_cells([b.to(device) for b in gt_boxes], centres, self.card.stride,
                               self.card.box_head.centre_radius)
        terms = box_losses(out.logits, out.boxes, targets, self.card.losses)
        samples = sample_training_boxes(gt_boxes, gt_labels, self.card.region_head, len(self.card.objects),
                                        self.input_size, generator)
        boxes = [b.to(device) for b in samples.boxes]
        logits = self.region_head.classify(self.region_head.features(out.fine, out.p3, boxes), torch.cat(boxes))
        terms.update(region_losses(logits, samples.labels))
        cfg = self.card.losses
        region = sum(v for k, v in terms.items() if k.startswith("region_"))
        terms["loss"] = terms["objectness"] + cfg.box_weight * terms["giou"] + cfg.region_weight * region
        return terms

    # -- inference --------------------------------------------------------------------------------
    def _select(self, out: DetectorOutput, iou: float, count: int | None) -> list[Tensor]:
        """Per image: NMS survivors (best first); with `count`, filled to `count` by BUTD's rule."""
        chosen = []
        for boxes, logits in zip(out.boxes, out.logits):
            scores = torch.sigmoid(logits.float())
            keep = nms(boxes.float(), scores, iou)
            chosen.append(fill_after_nms(scores, keep, count) if count is not None else keep)
        return chosen

    def _describe(self, out: DetectorOutput, chosen: list[Tensor]):
        boxes = [b[i] for b, i in zip(out.boxes, chosen)]
        scores = [torch.sigmoid(l[i].float()) for l, i in zip(out.logits, chosen)]
        f = self.region_head.features(out.fine, out.p3, boxes)
        logits = self.region_head.classify(f, torch.cat(boxes))
        sizes = [len(i) for i in chosen]
        return boxes, scores, f.split(sizes), {k: v.split(sizes) for k, v in logits.items()}

    @torch.no_grad()
    def detect_regions(self, pixels: Tensor, count: int) -> list[RegionSet]:
        out = self(pixels)
        boxes, scores, feats, logits = self._describe(out, self._select(out, self.card.box_head.regions_nms_iou, count))
        return [RegionSet(b.float(), s, f.float(), {k: v[i].argmax(-1) for k, v in logits.items()})
                for i, (b, s, f) in enumerate(zip(boxes, scores, feats))]

    @torch.no_grad()
    def detect(self, pixels: Tensor, max_detections: int = 100) -> list[Detections]:
        """Boxes after NMS (box_head.nms_iou), at most `max_detections`, with predicted labels (the object
        label is the best non-background class)."""
        out = self(pixels)
        chosen = [i[:max_detections] for i in self._select(out, self.card.box_head.nms_iou, None)]
        boxes, scores, _, logits = self._describe(out, chosen)
        found = []
        for i, (b, s) in enumerate(zip(boxes, scores)):
            labels = {k: v[i].argmax(-1) for k, v in logits.items() if k != "object"}
            labels["object"] = logits["object"][i][:, :-1].argmax(-1)
            found.append(Detections(b.float(), s, labels))
        return found


def build_detector(card: DetectorCard, device: torch.device | str = "cpu",
                   dtype: torch.dtype | None = None) -> ShapesDetector:
    model = ShapesDetector(card)
    return model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)
