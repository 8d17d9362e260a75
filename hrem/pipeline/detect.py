"""Evaluating a region detector on a ShapesRef split: AP50 and attribute accuracy (hrem.eval.detection)."""
from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from hrem.data.detection_dataset import DetectionRecord, DetectionSet, collate_detection
from hrem.eval.detection import COMBINED_SCORE, ImageDetections, ImageObjects, detection_report
from hrem.utils.device import autocast
from hrem.vision.letterbox import box_to_letterbox, letterbox_image

log = logging.getLogger(__name__)


class DetectorEvaluator:
    """Callable: detector -> report dict (+ "ap50+attributes" = AP50 + joint attribute accuracy, the
    detector jobs' default selection metric)."""

    def __init__(self, records: Sequence[DetectionRecord], size: int, object_names: Sequence[str],
                 device: torch.device, batch_size: int = 64, workers: int = 0, precision: str = "fp32") -> None:
        self.records, self.object_names = list(records), list(object_names)
        self.dataset = DetectionSet(self.records, size, letterbox_image, box_to_letterbox, train=False)
        self.device, self.batch_size, self.workers, self.precision = device, batch_size, workers, precision

    def detections(self, model: torch.nn.Module) -> tuple[list[ImageDetections], list[ImageObjects]]:
        """Detections and objects of every image, both in letterbox pixels (the boxes the model sees)."""
        loader = DataLoader(self.dataset, batch_size=self.batch_size, shuffle=False, num_workers=self.workers,
                            collate_fn=collate_detection)
        found, objects = [], []
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode(), autocast(self.device, self.precision):
                for batch in loader:
                    for det in model.detect(batch.pixels.to(self.device)):
                        found.append(ImageDetections(det.boxes.float().cpu().numpy(), det.scores.float().cpu().numpy(),
                                                     {k: v.cpu().numpy() for k, v in det.labels.items()}))
                    objects += [ImageObjects(b.numpy(), {k: v.numpy() for k, v in lab.items()})
                                for b, lab in zip(batch.boxes, batch.labels)]
        finally:
            model.train(was_training)
        return found, objects

    def __call__(self, model: torch.nn.Module) -> dict:
        detections, objects = self.detections(model)
        report = detection_report(detections, objects, self.object_names)
        report[COMBINED_SCORE] = report["ap50"] + report["attribute_accuracy"]["all"]
        return report


def flat_scores(report: dict) -> dict[str, float]:
    """The report's numbers as one flat dict (metrics.jsonl lines)."""
    out = {k: float(v) for k, v in report.items() if isinstance(v, (int, float))}
    out.update({f"acc_{k}": float(v) for k, v in report["attribute_accuracy"].items()})
    return {k: round(v, 3) if isinstance(v, float) and np.isfinite(v) else v for k, v in out.items()}
