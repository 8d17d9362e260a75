"""How much mask IoU a mask predicted at stride m can reach at all, on a grounding split.

The RES target of MCN is the letterboxed mask sampled at the centre of each stride-m cell; at inference the
stride-m map is upsampled bilinearly, mapped back to the original image and thresholded. Feeding the
*ground truth* through exactly that path gives the ceiling of any model predicting at that stride:

    python benchmarks/mask_stride_ceiling.py --data hrem-out/cache/shapesref-v2-s128-seed0-8000-1000-1000

ShapesRef test, 6,929 expressions at 128 px: stride 8 -> mIoU 68.4 (P@0.9 0.0), stride 4 -> 80.5 (P@0.9
5.2). The baseline row, stride 1, must give 100: a check that the path itself loses nothing.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch.nn.functional as F
from tqdm import tqdm

from hrem.data.grounding_dataset import GroundingEvalSet
from hrem.eval import mask_iou
from hrem.vision.letterbox import SampleLetterbox, probs_from_letterbox
from hrem.grounding.training.targets import mask_target
from hrem.pipeline.ground import read_grounding_split


def ceiling_ious(dataset: GroundingEvalSet, size: int, stride: int, threshold: float) -> np.ndarray:
    predicted, truth = [], []
    for item in tqdm(dataset, desc=f"stride {stride}", leave=False):
        target = mask_target(item.mask_letterbox[None], stride)                    # [1, 1, S/m, S/m]
        probs = F.interpolate(target, size=(size, size), mode="bilinear", align_corners=False)[0, 0]
        predicted.append((probs_from_letterbox(probs, item.meta) > threshold).numpy())
        truth.append(item.mask)
    return mask_iou(predicted, truth)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a ShapesRef folder or a RefCOCO-style refs JSON file")
    parser.add_argument("--split", default="test")
    parser.add_argument("--input-size", type=int, default=128, help="the card's input_size (letterbox side)")
    parser.add_argument("--strides", default="1,4,8", help="comma-separated mask strides")
    parser.add_argument("--threshold", type=float, default=0.35, help="the card's inference.mask_threshold")
    parser.add_argument("--limit", type=int, default=None, help="first N expressions only")
    args = parser.parse_args(argv)
    dataset = GroundingEvalSet(read_grounding_split(args.data, args.split), SampleLetterbox(args.input_size),
                               args.limit)
    print(f"{args.split}: {len(dataset)} expressions, input {args.input_size} px, threshold {args.threshold}")
    print("stride  mask grid  ceiling mIoU  ceiling P@0.9")
    for stride in (int(s) for s in args.strides.split(",")):
        ious = ceiling_ious(dataset, args.input_size, stride, args.threshold)
        grid = args.input_size // stride
        print(f"{stride:>6}  {grid:>3} x {grid:<3}  {100 * ious.mean():>12.1f}  {100 * (ious >= 0.9).mean():>13.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
