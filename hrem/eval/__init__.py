"""Retrieval and grounding metrics and reports (numpy + matplotlib only; never imports torch).

Retrieval: `evaluate_retrieval(img_emb, cap_emb, caption_image, protocols)` or `evaluate_retrieval_sims`
-> {protocol: summary}; the building blocks are `retrieval_ranks` (strict-greater ranks, blockwise),
`recall_summary` and `recall_curves`. Grounding: `GroundingAccumulator` / `grounding_summary`, `box_iou`,
`mask_iou`; COCO RLE in `rle_encode` / `rle_decode`. Reports: `write_report(out_dir, results, meta)`.
"""
from hrem.eval.grounding import PREC_THRESHOLDS, box_iou, mask_iou, xywh_to_xyxy
from hrem.eval.grounding_accumulator import GroundingAccumulator, grounding_summary
from hrem.eval.protocols import PROTOCOLS, evaluate_retrieval, evaluate_retrieval_sims
from hrem.eval.ranks import RetrievalRanks, retrieval_ranks, retrieval_ranks_from_sims
from hrem.eval.recall import recall_curve, recall_curves, recall_summary
from hrem.eval.report import render_markdown, write_report
from hrem.eval.rle import rle_area, rle_decode, rle_encode

__all__ = [
    "PREC_THRESHOLDS", "PROTOCOLS", "GroundingAccumulator", "RetrievalRanks", "box_iou", "evaluate_retrieval",
    "evaluate_retrieval_sims", "grounding_summary", "mask_iou", "recall_curve", "recall_curves",
    "recall_summary", "render_markdown", "retrieval_ranks", "retrieval_ranks_from_sims", "rle_area",
    "rle_decode", "rle_encode", "write_report", "xywh_to_xyxy",
]
