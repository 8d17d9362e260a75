"""Grounding throughput against this machine's matmul peak, and what grounding adds to a top-10 search.

    python benchmarks/bench_ground.py [--threads N] [--repeats 2] [--skip-resnet50]

Measured in one run:
- fp32 matmul GFLOP/s (2048^3 torch.mm): the machine's dense peak, the baseline of every ratio below;
- images/s of `GroundingModel.ground` (forward + top box + ASNLS + mask back to the original size) at
  batch 1 and 8, for `mcn-resnet50` at 416 px and for the shipped demo grounding model (`mcn-demo`, 128 px;
  random weights of the card when the demo model is not installed: same cost), with GFLOPs per image
  (torch.utils.flop_counter, 2 x MAC, forward only) and the achieved GFLOP/s as a share of the peak;
- a top-10 text search over an embedded ShapesRef test split (a random `tiny` retrieval model: the search
  cost does not depend on its weights), plain and with `ground=True` (the demo grounding model on the 10
  retrieved images, one batch): milliseconds per query and the ratio.
Times are the best of `--repeats` after one warm-up. Nothing is asserted; the figures are printed.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from hrem.factory import create_model, load_card
from hrem.grounding import build_mcn_tokenizer, letterbox_image
from hrem.pipeline.ground import DEMO_GROUNDING_DIR, Grounder
from _timing import best_time, matmul_gflops  # noqa: E402  (benchmarks/_timing.py)

QUERY = "the small red circle left of the large blue square"


def grounding_model(name: str):
    if name == "demo" and (DEMO_GROUNDING_DIR / "model.safetensors").is_file():
        return Grounder.load(DEMO_GROUNDING_DIR).model, "demo grounding model (shipped)"
    card = load_card("mcn-demo" if name == "demo" else name)
    torch.manual_seed(0)
    return create_model(card).eval(), f"{card.name} (random weights)"


def model_rows(name: str, peak: float, repeats: int) -> list[str]:
    model, label = grounding_model(name)
    size = model.card.input_size
    tokenizer = build_mcn_tokenizer(model.card)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8))
    pixels, meta = letterbox_image(image, size)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.from_numpy(pixels)[None], tokenizer([QUERY]))
    gflops = counter.get_total_flops() / 1e9
    rows = [f"{label}: {size} px, {gflops:.2f} GFLOPs per image (forward)"]
    for batch in (1, 8):
        images = torch.from_numpy(np.stack([pixels] * batch))
        tokens = tokenizer([QUERY] * batch)
        metas = [meta] * batch
        seconds = best_time(lambda x=images, t=tokens, m=metas: model.ground(x, t, m), repeats)
        rate = batch / seconds
        rows.append(f"  batch {batch}: {rate:8.2f} images/s  {seconds * 1000 / batch:8.1f} ms/image  "
                    f"{rate * gflops:7.1f} GFLOP/s = {100 * rate * gflops / peak:5.1f}% of the matmul peak")
    return rows


def search_rows(repeats: int) -> list[str]:
    from hrem.checkpoint import save_run
    from hrem.data.cache import ensure_shapesref
    from hrem.index import build_index
    from hrem.pipeline.embed import run_embed
    from hrem.pipeline.embed.config import EmbedConfig
    from hrem.pipeline.search import Searcher

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = ensure_shapesref(root / "shapes", train=4, dev=4, test=200, size=128, workers=1)
        torch.manual_seed(0)
        card = load_card("tiny")
        save_run(root / "run", create_model(card), card)
        run_embed(EmbedConfig(data=str(data), model=str(root / "run"), out=str(root / "emb"), split="test",
                              workers=0, device="cpu"), show_progress=False)
        build_index(root / "emb", root / "index" / "images", modality="images")
        grounding = DEMO_GROUNDING_DIR if (DEMO_GROUNDING_DIR / "model.safetensors").is_file() else None
        if grounding is None:
            torch.manual_seed(0)
            demo_card = load_card("mcn-demo")
            save_run(root / "ground", create_model(demo_card), demo_card)
            grounding = root / "ground"
        searcher = Searcher.load(root / "index", grounding_model=grounding)
        plain = best_time(lambda: searcher.search_text([QUERY], k=10), repeats)
        grounded = best_time(lambda: searcher.search_text([QUERY], k=10, ground=True), repeats)
    return [(f"top-10 text search over 200 images: {plain * 1000:.1f} ms/query plain, {grounded * 1000:.1f} ms "
             f"with grounding (+{(grounded - plain) * 1000:.1f} ms, x{grounded / plain:.1f})")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-resnet50", action="store_true", help="only the demo card and the search")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    peak = matmul_gflops()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); fp32 matmul peak {peak:.1f} GFLOP/s")
    for name in (() if args.skip_resnet50 else ("mcn-resnet50",)) + ("demo",):
        print("\n".join(model_rows(name, peak, args.repeats)))
    print("\n".join(search_rows(args.repeats)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
