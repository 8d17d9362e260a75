"""Training throughput on region features: mean pooling, + fragment relation, full HREM, and the reference
HREM code on the same configuration; plus the word-region score block alone (fast path vs plain).

    python benchmarks/bench_train.py --data data/shapesref_precomp [--reference DIR] [--threads 1] [--steps 6]

Configuration (the `demo` card): batch 128 captions of precomp region rows (36 x 261 from the shipped
ShapesRef detector, region drop 0.2), 256-d joint space, 4 heads, top-10 scores, MiniLM text backbone.
Two text settings are timed: the card's (MiniLM frozen, states cached per caption: what the demo trains
with) and MiniLM trained at lr x 0.1 (what the reference code does: it always fine-tunes its BERT; it is
run with the packaged MiniLM in place of its hard-coded bert-base-uncased).

- pairs/s of a full optimizer step (forward, criterion, backward, AdamW) after warm-up, for the three
  ablation variants (graph path on, i.e. after the card's warm-up iterations), fp32, and full HREM also
  under bf16 autocast when the CPU has native bf16;
- `--reference DIR`: a checkout of CrossmodalGroup/HREM (fetched from the public repository into a
  temporary folder; never part of the package): its `VSEModel.train_emb` on the same batches, with
  `.cuda()` made a no-op, MiniLM for BERT, `Linear(768, D)` resized to MiniLM's 384, warm-up 0;
- the score block alone: hrem's fast path (fp32 and bf16 GEMM) vs the plain implementation, and the
  fp32 2048^3 matmul peak measured in the same run;
- full HREM with `--group-images` batches (128 // 5 = 25 images with all their captions: 125 captions per
  step, each image encoded once); its pairs/s counts those 125 captions.
Times are the median of `--steps` steps after 3 warm-up steps (with the frozen text, its cache first holds
every timed caption, as with `--text-cache`); nothing is asserted.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from _timing import best_time, matmul_gflops  # noqa: E402  (benchmarks/_timing.py)

VARIANTS = {"mean pooling": {"head.pooling": "mean", "head.fragment_relation": False,
                             "instance_relation.enabled": False},
            "+ fragment relation": {"instance_relation.enabled": False},
            "full HREM": {}}


def batches(data: str, count: int, batch: int = 128, grouped: bool = False):
    """`count` training batches of the demo card: `batch` sampled captions, or with `grouped` the
    `--group-images` batches (batch // 5 images, each with all its captions, each image encoded once)."""
    from hrem.data.collate import GroupedTrainCollate, TrainCollate
    from hrem.data.datasets import CaptionDataset, ImageGroupDataset, ImageLoader, open_retrieval_split
    from hrem.factory import create_tokenizer, load_card

    split = open_retrieval_split(data, "train")
    tokenizer = create_tokenizer(load_card("demo"))
    if grouped:
        dataset = ImageGroupDataset(split, ImageLoader(split, None), batch, 0.2)
        collate, size = GroupedTrainCollate(tokenizer), dataset.items_per_batch
    else:
        dataset, collate, size = CaptionDataset(split, ImageLoader(split, None), 0.2), TrainCollate(tokenizer), batch
    g = torch.Generator().manual_seed(0)
    return [collate([dataset[int(i)] for i in torch.randperm(len(dataset), generator=g)[:size]]) for _ in range(count)]


def time_steps(step, data, steps: int) -> float:
    getattr(step, "prime", lambda batches: None)(data)
    for b in data[:3]:
        step(b)
    times = []
    for b in data[3:3 + steps]:
        start = time.perf_counter()
        step(b)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def hrem_step(overrides: dict, frozen_text: bool, precision: str):
    from hrem.factory import create_criterion, create_model, load_card
    from hrem.train.config import TrainConfig
    from hrem.train.optim import build_optimizer

    card = load_card("demo", overrides={**overrides, "text.freeze": frozen_text, "train.warmup_iters": 0})
    torch.manual_seed(0)
    model, criterion = create_model(card).train(), create_criterion(card).train()
    if frozen_text:
        model.txt_enc.enable_feature_cache(100_000)
    optimizer = build_optimizer(model, criterion, TrainConfig())
    params = [p for p in list(model.parameters()) + list(criterion.parameters()) if p.requires_grad]

    def step(b):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            outputs = model.forward_train(b.images, b.texts, b.image_index)
            loss = criterion(outputs, b.image_rows, 10_000)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 2.0)
        optimizer.step()

    @torch.no_grad()
    def prime(batches):
        """Fill the frozen-text cache with every timed caption first: a run with --text-cache has every
        training caption cached from its first step (without this, each timed step would run MiniLM)."""
        for b in batches:
            model.txt_enc(b.texts.input_ids, b.texts.attention_mask)
    if frozen_text:
        step.prime = prime
    return step


def reference_step(repo: Path):
    """The reference's VSEModel.train_emb on CPU with MiniLM (see the module docstring for the patches)."""
    import transformers

    from hrem.utils.paths import packaged_minilm_dir

    sys.path.insert(0, str(repo))
    torch.Tensor.cuda = lambda self, *a, **k: self                                  # the code calls .cuda()
    original = transformers.BertModel.from_pretrained
    transformers.BertModel.from_pretrained = classmethod(lambda cls, *a, **k: original(str(packaged_minilm_dir())))
    import arguments                                                                 # noqa: E402 (the reference)
    from lib import vse

    opt = arguments.get_argument_parser().parse_args([])
    import graph_lib

    extra = graph_lib.extra_parameters(arguments.get_argument_parser()).parse_args([])
    for key, value in {**vars(extra), "embed_size": 256, "img_dim": 261, "nhead": 4, "topk": 10, "warmup": 0,
                       "batch_size": 128, "dataset": "f30k", "mask_weight": 1.0}.items():
        setattr(opt, key, value)
    model = vse.VSEModel(opt)
    model.txt_enc.linear = torch.nn.Linear(384, 256)                                 # 768 is hard-coded
    model.params = list(model.txt_enc.parameters()) + list(model.img_enc.parameters()) + list(model.criterion.parameters())
    model.optimizer.param_groups[0]["params"] = [p for p in model.txt_enc.parameters()
                                                 if all(p is not q for q in model.txt_enc.bert.parameters())]
    model.logger = SimpleNamespace(update=lambda *a, **k: None)
    model.train_start()

    def step(b):
        ids = b.texts.input_ids * b.texts.attention_mask
        lengths = b.texts.attention_mask.sum(1)
        model.train_emb(b.images.regions, ids, lengths, b.images.lengths, b.image_rows)
    return step


def score_block(data) -> dict[str, float]:
    import torch.nn.functional as F

    from hrem.relation.graph import word_region_scores, word_region_scores_reference

    b = data[0]
    g = torch.Generator().manual_seed(0)
    img = torch.randn(128, b.images.regions.shape[1], 256, generator=g)
    cap = torch.randn(128, b.texts.input_ids.shape[1], 256, generator=g)
    args = (F.normalize(img, dim=-1), b.images.lengths[:, None] > torch.arange(img.shape[1])[None],
            cap, b.texts.attention_mask.bool(), 10)
    return {"plain": best_time(lambda: word_region_scores_reference(*args)),
            "fast fp32": best_time(lambda: word_region_scores(*args)),
            "fast bf16": best_time(lambda: word_region_scores(*args, torch.bfloat16))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a precomp folder made by `hrem regions`")
    parser.add_argument("--reference", type=Path, default=None, help="checkout of CrossmodalGroup/HREM")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from hrem.utils.device import cpu_has_fast_bf16

    print(f"threads {args.threads}; fp32 matmul peak {matmul_gflops():.1f} GFLOP/s; native bf16: {cpu_has_fast_bf16()}")
    data = batches(args.data, 3 + args.steps)
    grouped = batches(args.data, 3 + args.steps, grouped=True)
    shape = f"{tuple(data[0].images.regions.shape)} regions, {tuple(data[0].texts.input_ids.shape)} tokens"
    print(f"batch: {shape}")
    rows = []
    for frozen in (True, False):
        text = "MiniLM frozen + cached" if frozen else "MiniLM trained (x0.1 lr)"
        for name, overrides in VARIANTS.items():
            rows.append((text, name, "fp32", time_steps(hrem_step(overrides, frozen, "fp32"), data, args.steps)))
        if cpu_has_fast_bf16():
            rows.append((text, "full HREM", "bf16", time_steps(hrem_step({}, frozen, "bf16"), data, args.steps)))
        rows.append((text, f"full HREM, --group-images ({grouped[0].images.regions.shape[0]} images)", "fp32",
                     time_steps(hrem_step({}, frozen, "fp32"), grouped, args.steps)))
    if args.reference:
        rows.append(("MiniLM trained (x0.1 lr)", "reference HREM code", "fp32",
                     time_steps(reference_step(args.reference), data, args.steps)))
    print("| text backbone | model | precision | s/step | pairs/s | vs mean pooling (same text) |")
    print("|---|---|---|---|---|---|")
    for text, name, precision, seconds in rows:
        base = next(s for t, n, p, s in rows if t == text and n == "mean pooling")
        pairs = grouped[0].texts.input_ids.shape[0] if "group" in name else 128
        print(f"| {text} | {name} | {precision} | {seconds:.3f} | {pairs / seconds:.0f} | {seconds / base:.2f}x |")
    ours = next((s for t, n, p, s in rows if n == "full HREM" and p == "fp32" and t.startswith("MiniLM trained")), None)
    ref = next((s for t, n, p, s in rows if n == "reference HREM code"), None)
    if ours and ref:
        print(f"hrem full HREM vs the reference code (same config, fp32): {ref / ours:.2f}x the pairs/s")
    scores = score_block(data)
    print("score block alone: " + ", ".join(f"{k} {1000 * v:.0f} ms" for k, v in scores.items())
          + f" (fast fp32 {scores['plain'] / scores['fast fp32']:.2f}x, bf16 {scores['plain'] / scores['fast bf16']:.2f}x)")


if __name__ == "__main__":
    main()
