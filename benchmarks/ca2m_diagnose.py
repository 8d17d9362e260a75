"""Why does the CA2M direct box head (`ca2m.box_head`, `inference.box_source: direct`) not learn? Train a
CA2M card for a few hundred steps and print how the [CLS] box head's predictions relate to the targets.

    python benchmarks/ca2m_diagnose.py --iters 300 --every 50 [--fusion-lr 1e-4] [--warmup 100] [--set ...]

Per report (on the current training batch): the direct head's L1 / GIoU loss, its Acc@0.5, the spread (std
over the batch) of predicted and target cx / cy / w / h (a head that predicts the mean box has a spread near
0) and the correlation of predicted with target centres; gradient norms of the box head, the CA2M fusion
and the backbone. `--fusion-lr` trains the CA2M fusion and the box head at their own lr (TransVG trains its
transformer at 1e-4), `--warmup` ramps every lr linearly over that many steps (post-LN transformers need
it). Prints figures only; nothing is saved.
"""
from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import DataLoader

from hrem.checkpoint.run import load_run
from hrem.cli.options import add_set_argument
from hrem.data.grounding_dataset import GroundingCollate, GroundingTrainSet
from hrem.factory import create_model, load_card
from hrem.grounding import GroundingCriterion, GroundingTask, build_targets
from hrem.grounding.build import build_mcn_tokenizer
from hrem.jobs.common import dataset_or_demo
from hrem.pipeline.ground import read_grounding_split
from hrem.train.backbone_init import init_backbone_from_detector
from hrem.train.grounding_run import with_kmeans_anchors
from hrem.utils.device import set_threads
from hrem.vision.boxes import box_iou, cxcywh_to_xyxy
from hrem.vision.letterbox import SampleLetterbox

FUSION_PREFIXES = ("fusion.", "direct_box.")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--card", default="mcn-demo-ca2m")
    add_set_argument(p, "ca2m.cls_token=mean")
    p.add_argument("--run", default=None, help="start from a trained run's weights and card")
    p.add_argument("--iters", type=int, default=300)
    p.add_argument("--every", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--fusion-lr", type=float, default=None, help="lr of the CA2M fusion and box head")
    p.add_argument("--warmup", type=int, default=0, help="linear lr warm-up steps")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def optimizer_for(model, criterion, args) -> torch.optim.AdamW:
    fusion, rest = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (fusion if name.startswith(FUSION_PREFIXES) else rest).append(param)
    groups = [{"params": rest + list(criterion.parameters()), "lr": args.lr, "base_lr": args.lr},
              {"params": fusion, "lr": args.fusion_lr or args.lr, "base_lr": args.fusion_lr or args.lr}]
    return torch.optim.AdamW(groups, weight_decay=0.0)


def box_report(pred: torch.Tensor, gt: torch.Tensor) -> str:
    """pred, gt [B, 4] normalised cx, cy, w, h."""
    iou = box_iou(cxcywh_to_xyxy(pred), cxcywh_to_xyxy(gt)).diagonal()
    corr = [torch.corrcoef(torch.stack([pred[:, k], gt[:, k]]))[0, 1].item() for k in (0, 1)]
    spread = " ".join(f"{n} {p:.3f}/{g:.3f}" for n, p, g in zip("xywh", pred.std(0).tolist(), gt.std(0).tolist()))
    return (f"Acc@0.5 {100 * (iou >= 0.5).float().mean().item():.1f}, mean IoU {iou.mean().item():.3f}; "
            f"std pred/gt {spread}; corr(cx) {corr[0]:.2f}, corr(cy) {corr[1]:.2f}")


def head_report(seen: dict) -> str:
    """Live units of the box MLP's ReLUs (active on at least one sample) and the [CLS] spread over the batch."""
    cls = seen["cls"]
    live = ", ".join(f"{k} live {(v > 0).any(0).float().mean().item():.2f}" for k, v in seen.items() if k != "cls")
    return f"box MLP {live}; [CLS] std over batch / mean |x| {(cls.std(0).mean() / cls.abs().mean()).item():.3f}"


def grad_norm(model, prefixes: tuple[str, ...]) -> float:
    grads = [p.grad.norm() for n, p in model.named_parameters() if n.startswith(prefixes) and p.grad is not None]
    return torch.stack(grads).norm().item() if grads else 0.0


def main(argv=None) -> int:
    args = parse_args(argv)
    set_threads(args.threads)
    torch.manual_seed(args.seed)
    card = load_card(args.card, args.overrides or {}) if args.run is None else load_run(args.run)[1]
    refs = read_grounding_split(dataset_or_demo(None), "train", None, None)
    dataset = GroundingTrainSet(refs, SampleLetterbox(card.input_size), card.input_size)
    if args.run is None:  # a trained run keeps its own anchors
        card = with_kmeans_anchors(card, dataset.letterbox_boxes_wh(), args.seed)
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, drop_last=True,
                        collate_fn=GroundingCollate(build_mcn_tokenizer(card)))
    model = (create_model(card, device=torch.device("cpu")) if args.run is None else load_run(args.run)[0]).train()
    if card.backbone.init and args.run is None:
        init_backbone_from_detector(model, card.backbone.init)
    criterion = GroundingCriterion.for_model(model, GroundingTask("joint"))
    seen = {}
    relus = [m for m in model.direct_box.mlp if isinstance(m, torch.nn.ReLU)]
    for index, relu in enumerate(relus):
        relu.register_forward_hook(lambda _m, _i, out, index=index: seen.__setitem__(f"relu{index}", out.detach()))
    model.direct_box.register_forward_hook(lambda _m, inputs, _o: seen.__setitem__("cls", inputs[0].detach()))
    optimizer = optimizer_for(model, criterion, args)
    iteration, start = 0, time.perf_counter()
    while iteration < args.iters:
        for batch in loader:
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * min(1.0, (iteration + 1) / max(args.warmup, 1))
            targets = build_targets(batch.boxes_letterbox, model.anchors, card.input_size, batch.masks_letterbox,
                                    fine_mask=card.mask_refine.enabled)
            output = model(batch.pixels, batch.tokens)
            terms = criterion(output, targets)
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            iteration += 1
            if iteration % args.every == 0 or iteration == 1:
                gt = targets.yolo.boxes_xywh / card.input_size
                print(f"iter {iteration}: L1 {terms['box_l1'].item():.3f} GIoU {terms['box_giou'].item():.3f} "
                      f"conf {terms['conf'].item():.2f}; {box_report(output.direct_box.detach(), gt)}; grad "
                      f"box {grad_norm(model, ('direct_box.',)):.2e} fusion {grad_norm(model, ('fusion.',)):.2e} "
                      f"backbone {grad_norm(model, ('backbone.',)):.2e}", flush=True)
                print("    " + head_report(seen), flush=True)
            torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], 10.0)
            optimizer.step()
            if iteration >= args.iters:
                break
    print(f"{iteration} iterations in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
