"""Why does STEP (`res_head: step`) not learn? Train a STEP card for a few hundred steps and print, per
ConvGRU step t, what the head sees and produces, plus the gradient each STEP part receives.

    python benchmarks/step_diagnose.py --iters 300 --every 50 [--set step.heatmap=\"shifted\" ...]

Per step t (averaged over the batch, on the stride-8 ConvGRU grid, GT = the RES target):
- Q in / out: mean heatmap Q_t inside / outside the referent (the text-pixel contrast STEP relies on);
- P in / out: mean probability P_t inside / outside;
- w@GT: the share of the pixel weights omega = softmax(P_{t-1}/tau) on the referent (its area share is
  printed as `area`: w@GT == area means the re-weighting does nothing);
Then the gradient norm of each STEP part and of the backbone, and the training loss terms.
The ShapesRef cache is the training job's (generated on first use). Prints figures only; nothing is saved.
"""
from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import DataLoader

from hrem.cli.options import add_set_argument
from hrem.checkpoint.run import load_run
from hrem.data.grounding_dataset import GroundingCollate, GroundingTrainSet
from hrem.factory import create_model, load_card
from hrem.grounding import GroundingCriterion, GroundingTask, build_targets
from hrem.grounding.build import build_mcn_tokenizer
from hrem.train.backbone_init import init_backbone_from_detector
from hrem.train.grounding_run import with_kmeans_anchors
from hrem.vision.letterbox import SampleLetterbox
from hrem.jobs.common import dataset_or_demo
from hrem.pipeline.ground import read_grounding_split
from hrem.utils.device import set_threads

PARTS = ("context", "pixel_attention", "word_attention", "pixel_embed", "sentence_embed", "gru", "mask_out")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--card", default="mcn-demo-step")
    add_set_argument(p, "step.heatmap=shifted")
    p.add_argument("--task", default="joint", choices=["joint", "res"])
    p.add_argument("--run", default=None, help="start from a trained run's weights and card (with --iters 1: "
                                               "the statistics of the trained model)")
    p.add_argument("--iters", type=int, default=300)
    p.add_argument("--every", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def step_stats(step_out, mask: torch.Tensor, temperature: float, initial: float) -> list[dict]:
    """Per-step statistics of one STEPOutput against the stride-8 GT mask [B, 1, h, w]."""
    inside = mask.bool()
    rows, prev = [], torch.full_like(mask, initial)
    for q, p in zip(step_out.heatmaps, step_out.probs):
        weights = torch.softmax(prev.flatten(1) / temperature, dim=-1).view_as(prev)
        rows.append({
            "Q_in": q[inside].mean().item(), "Q_out": q[~inside].mean().item(),
            "P_in": p[inside].mean().item(), "P_out": p[~inside].mean().item(),
            "w@GT": (weights * mask).sum(dim=(1, 2, 3)).mean().item(),
        })
        prev = p.detach()
    return rows


def find_step_head(model):
    from hrem.grounding.options.step import STEPHead
    heads = [m for m in model.modules() if isinstance(m, STEPHead)]
    if len(heads) != 1:
        raise SystemExit(f"card: expected one STEP head (res_head: step), found {len(heads)}")
    return heads[0]


def report(iteration: int, terms: dict, stats: list[dict], norms: dict, area: float) -> None:
    loss = ", ".join(f"{k} {v.item():.3f}" for k, v in terms.items() if k in ("loss", "mask", "conf", "cem"))
    print(f"\niter {iteration}: {loss}; referent area share {area:.3f}")
    print("  t   Q_in   Q_out   P_in   P_out   w@GT")
    for t, row in enumerate(stats, 1):
        print(f"  {t}  {row['Q_in']:.3f}  {row['Q_out']:.3f}  {row['P_in']:.3f}  {row['P_out']:.3f}  {row['w@GT']:.3f}")
    print("  grad norms: " + ", ".join(f"{k} {v:.2e}" for k, v in norms.items()))


def main(argv=None) -> int:
    args = parse_args(argv)
    set_threads(args.threads)
    torch.manual_seed(args.seed)
    card = load_card(args.card, args.overrides or {}) if args.run is None else load_run(args.run)[1]
    data = dataset_or_demo(None)
    refs = read_grounding_split(data, "train", None, None)
    dataset = GroundingTrainSet(refs, SampleLetterbox(card.input_size), card.input_size)
    if args.run is None:  # a trained run keeps its own anchors
        card = with_kmeans_anchors(card, dataset.letterbox_boxes_wh(), args.seed)
    collate = GroundingCollate(build_mcn_tokenizer(card))
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, collate_fn=collate, drop_last=True)
    model = (create_model(card, device=torch.device("cpu")) if args.run is None else load_run(args.run)[0]).train()
    if card.backbone.init and args.run is None:
        init_backbone_from_detector(model, card.backbone.init)
    head = find_step_head(model)
    captured = {}
    head.register_forward_hook(lambda _m, _i, out: captured.__setitem__("out", out))
    for name, module in [(f"phi{i}", m) for i, m in enumerate(head.pixel_embed)] + [("psi", head.sentence_embed)]:
        module.register_forward_hook(lambda _m, _i, out, name=name: captured.setdefault("pre", {}).__setitem__(name, out))
    criterion = GroundingCriterion.for_model(model, GroundingTask(args.task))
    params = [p for p in model.parameters() if p.requires_grad] + list(criterion.parameters())
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    iteration, start = 0, time.perf_counter()
    while iteration < args.iters:
        for batch in loader:
            targets = build_targets(batch.boxes_letterbox, model.anchors, card.input_size, batch.masks_letterbox)
            terms = criterion(model(batch.pixels, batch.tokens), targets)
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            iteration += 1
            if iteration % args.every == 0 or iteration == 1:
                stats = step_stats(captured["out"], targets.mask, card.step.pixel_temperature, card.step.initial_mask)
                report(iteration, terms, stats, grad_norms_of(head, model), targets.mask.mean().item())
                print("  tanh saturation (share |tanh| > 0.99; mean |pre-activation|): " + ", ".join(
                    f"{k} {(v.detach().tanh().abs() > 0.99).float().mean().item():.2f}; {v.detach().abs().mean().item():.2f}"
                    for k, v in captured["pre"].items()))
            optimizer.step()
            if iteration >= args.iters:
                break
    print(f"\n{iteration} iterations in {time.perf_counter() - start:.0f} s")
    return 0


def grad_norms_of(head, model) -> dict[str, float]:
    out = {}
    for name in PARTS:
        grads = [p.grad.norm() for p in getattr(head, name).parameters() if p.grad is not None]
        out[name] = torch.stack(grads).norm().item() if grads else 0.0
    backbone = [p.grad.norm() for n, p in model.named_parameters() if n.startswith("backbone") and p.grad is not None]
    out["backbone"] = torch.stack(backbone).norm().item() if backbone else 0.0
    return out


if __name__ == "__main__":
    raise SystemExit(main())
