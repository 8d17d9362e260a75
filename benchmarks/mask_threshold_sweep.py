"""Mask threshold of a trained grounding model, chosen on dev: one forward per expression, then the mask at
every threshold, with and without ASNLS.

    python benchmarks/mask_threshold_sweep.py --model RUN [RUN ...] --thresholds 0.1 0.15 0.2 0.25 0.35 0.5

Per run it prints mask mIoU and oIoU on the selection split (default val) at each threshold × ASNLS on / off,
picks the threshold with the best selection-split mIoU (ASNLS as the card has it), and reports the test split
at the card's threshold and at the chosen one. The card's threshold (MCN's 0.35, `inference.mask_threshold`)
is what `hrem ground` / `evaluate-grounding` use; a chosen one is applied with
`--set inference.mask_threshold=T` at training time or by editing RUN/config.json. The box does not depend on
the threshold, so Acc@0.5 is printed once. Why: STEP's probabilities inside the referent average 0.45
(docs/results.md), so MCN's 0.35 may cut its masks apart.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

from hrem.data.cache import ensure_shapesref
from hrem.eval import GroundingAccumulator
from hrem.pipeline.ground import Grounder, eval_loader, read_grounding_split
from hrem.utils.device import set_threads


def with_threshold(model, threshold: float) -> None:
    """The model's card with inference.mask_threshold = threshold (the card is frozen; the model holds it)."""
    card = model.card
    model.card = dataclasses.replace(card, inference=dataclasses.replace(card.inference, mask_threshold=threshold))


@torch.no_grad()
def sweep(grounder: Grounder, refs, thresholds: list[float], batch_size: int, limit: int | None) -> dict:
    """{(threshold, asnls): GroundingAccumulator summary} from one forward pass over the split."""
    model, original = grounder.model.eval(), grounder.model.card
    loader = eval_loader(refs, original.input_size, grounder.tokenizer, batch_size, 0, limit)
    accumulators = {(t, a): GroundingAccumulator() for t in thresholds for a in (True, False)}
    try:
        for batch in loader:
            output = model(batch.pixels.to(grounder.device), batch.tokens.to(grounder.device))
            for (threshold, asnls), accumulator in accumulators.items():
                with_threshold(model, threshold)
                predictions = model.predict(output, batch.metas, asnls)
                accumulator.add(np.stack([p.box_xyxy for p in predictions]), batch.boxes_xyxy,
                                [p.mask for p in predictions], batch.masks)
    finally:
        model.card = original
    return {key: accumulator.summary() for key, accumulator in accumulators.items()}


def print_sweep(name: str, split: str, results: dict, thresholds: list[float], card_threshold: float) -> None:
    print(f"\n{name}, {split}: mask mIoU / oIoU (Acc@0.5 {results[(thresholds[0], True)]['acc@0.5']:.1f} "
          f"with ASNLS; * = the card's threshold)")
    print("| threshold | mIoU, ASNLS | oIoU, ASNLS | mIoU, no ASNLS | oIoU, no ASNLS |\n|---:|---:|---:|---:|---:|")
    for t in thresholds:
        on, off = results[(t, True)], results[(t, False)]
        mark = "*" if abs(t - card_threshold) < 1e-9 else ""
        print(f"| {t:g}{mark} | {on['miou']:.1f} | {on['oiou']:.1f} | {off['miou']:.1f} | {off['oiou']:.1f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", nargs="+", required=True, help="grounding run folders (or shipped names)")
    parser.add_argument("--data", default=None, help="ShapesRef folder (default: the cached demo)")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.5])
    parser.add_argument("--select-split", default="val")
    parser.add_argument("--test-split", default="test")
    parser.add_argument("--limit", type=int, default=None, help="first N expressions per split")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    data = Path(args.data) if args.data else ensure_shapesref()
    thresholds = sorted(set(args.thresholds))
    splits = {s: read_grounding_split(data, s) for s in (args.select_split, args.test_split)}
    for run in args.model:
        grounder = Grounder.load(run, batch_size=args.batch_size)
        card_t, card_asnls = grounder.card.inference.mask_threshold, grounder.card.inference.asnls
        grid = sorted(set(thresholds) | {card_t})
        dev = sweep(grounder, splits[args.select_split], grid, args.batch_size, args.limit)
        print_sweep(run, args.select_split, dev, grid, card_t)
        chosen = max(grid, key=lambda t: dev[(t, card_asnls)]["miou"])
        test = sweep(grounder, splits[args.test_split], sorted({card_t, chosen}), args.batch_size, args.limit)
        at_card, at_chosen = test[(card_t, card_asnls)], test[(chosen, card_asnls)]
        print(f"{run}, {args.test_split} (ASNLS {'on' if card_asnls else 'off'}): mask mIoU {at_card['miou']:.1f} "
              f"at the card's {card_t:g}, {at_chosen['miou']:.1f} at {chosen:g} chosen on {args.select_split} "
              f"({at_chosen['miou'] - at_card['miou']:+.1f}); oIoU {at_card['oiou']:.1f} -> {at_chosen['oiou']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
