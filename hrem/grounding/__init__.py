"""MCN-style grounding: REC box + RES mask with GARAN, CEM and ASNLS (see docs/grounding.md).

model = build_mcn(card, device="cpu")            # card: hrem.config.grounding.MCNCard
tokenizer = build_mcn_tokenizer(card)
image, meta = letterbox_image(pil_image, card.input_size)
predictions = model.ground(torch.from_numpy(image)[None], tokenizer(["the red circle"]), [meta])
criterion = GroundingCriterion.for_model(model, GroundingTask())  # training: output + targets -> losses

The optional components live in options/, what only training needs in training/.
"""

from hrem.grounding.anchors import kmeans_anchors, mean_best_iou
from hrem.grounding.asnls import asnls, hard_nls
from hrem.grounding.build import build_mcn, build_mcn_tokenizer, count_parameters
from hrem.grounding.criterion import GroundingCriterion, GroundingTask
from hrem.grounding.model import GroundingModel, GroundingOutput, GroundingPrediction
from hrem.grounding.training.targets import GroundingTargets, build_targets, mask_target
from hrem.vision.letterbox import (
    LetterboxMeta,
    box_from_letterbox,
    box_to_letterbox,
    letterbox_image,
    letterbox_meta,
    mask_from_letterbox,
    mask_to_letterbox,
    probs_from_letterbox,
)

__all__ = [
    "GroundingCriterion",
    "GroundingModel",
    "GroundingOutput",
    "GroundingPrediction",
    "GroundingTargets",
    "GroundingTask",
    "LetterboxMeta",
    "asnls",
    "box_from_letterbox",
    "box_to_letterbox",
    "build_mcn",
    "build_mcn_tokenizer",
    "build_targets",
    "count_parameters",
    "hard_nls",
    "kmeans_anchors",
    "letterbox_image",
    "letterbox_meta",
    "mask_from_letterbox",
    "mask_target",
    "mask_to_letterbox",
    "mean_best_iou",
    "probs_from_letterbox",
]
