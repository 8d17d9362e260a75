"""Region detection throughput against this machine's matmul peak: the shipped ShapesRef detector (or its
card with random weights when it is not installed; same cost) and, optionally, a DETR-ResNet-50-sized
random transformers config.

    python benchmarks/bench_detector.py [--threads 1] [--batch 32] [--repeats 3] [--detr]

Measured in one run, all with `--threads` intra-op threads:
- fp32 and bf16 2048^3 matmul GFLOP/s (the machine's dense peaks; bf16 pays only with AVX512-BF16 / AMX);
- `detect_regions(pixels, 36)` images/s at batch `--batch` in fp32 and under bf16 autocast, GFLOPs per
  image (torch.utils.flop_counter, forward, 2 x MAC) and the share of the fp32 peak; on the confident rows
  (fp32 score > 0.5, the objects) the smallest cosine of bf16 vs fp32 region features and whether the boxes
  agree (random-noise pixels: the shipped detector finds few objects in them; a ShapesRef image is used
  when the demo cache exists);
- with `--detr`: a random DETR-ResNet-50-sized config (transformers DetrConfig defaults, 100 queries) at
  512 px through hrem.vision.hf_detector, images/s at batch 2.
Times are the best of `--repeats` after one warm-up. Nothing is asserted; the figures are printed.
"""
from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from hrem.factory import create_model, load_card
from hrem.utils.paths import ASSETS_DIR
from _timing import best_time, matmul_gflops  # noqa: E402  (benchmarks/_timing.py)

SHIPPED = ASSETS_DIR / "shapes-detector"


def detector():
    if (SHIPPED / "model.safetensors").is_file():
        from hrem.factory import load_region_detector

        return load_region_detector(SHIPPED), "shipped shapes-detector"
    torch.manual_seed(0)
    return create_model(load_card("shapes-detector")).eval(), "shapes-detector card (random weights)"


def sample_pixels(batch: int, size: int) -> torch.Tensor:
    """ShapesRef test images when the demo cache is there (real objects), else random noise."""
    from hrem.data.cache import default_shapesref_dir
    from hrem.data.shapes import ShapesRefConfig
    from hrem.vision.letterbox import letterbox_image
    from PIL import Image

    images = sorted((default_shapesref_dir(ShapesRefConfig()) / "images").glob("009*.png"))[:batch]
    if len(images) < batch:
        return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    return torch.stack([torch.from_numpy(letterbox_image(Image.open(p), size)[0]) for p in images])


def gflops_per_image(model, pixels) -> float:
    with FlopCounterMode(display=False) as counter:
        model.detect_regions(pixels[:1], 36)
    return counter.get_total_flops() / 1e9


def compare_confident(out32, out16) -> tuple[float, int]:
    """Each confident fp32 region (score > 0.5: the objects) against the bf16 region of highest IoU (the
    order of near-equal scores may differ): min feature cosine, and in how many images all such boxes
    are within 1 px."""
    from hrem.vision.boxes import box_iou

    cosines, same = [], 0
    for a, b in zip(out32, out16):
        keep = a.scores > 0.5
        if not keep.any():
            continue
        match = box_iou(a.boxes[keep], b.boxes.float()).argmax(dim=1)
        cosines.append(float(torch.nn.functional.cosine_similarity(a.features[keep], b.features[match].float()).min()))
        same += bool(torch.allclose(a.boxes[keep], b.boxes[match].float(), atol=1.0))
    return min(cosines or [float("nan")]), same


def run(model, pixels, precision: str, repeats: int):
    def call():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            return model.detect_regions(pixels, 36)
    seconds = best_time(call, repeats)
    return pixels.shape[0] / seconds, call()


def detr_rate(batch: int, repeats: int) -> float:
    import transformers as t

    from hrem.vision.hf_detector import HFRegionDetector

    torch.manual_seed(0)
    config = t.DetrConfig(backbone_config=t.ResNetConfig(out_features=["stage4"]))   # ResNet-50, 100 queries
    model = HFRegionDetector(t.DetrForObjectDetection(config).eval(), input_size=512)
    pixels = torch.rand(batch, 3, 512, 512)
    return batch / best_time(lambda: model.detect_regions(pixels, 36), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--detr", action="store_true", help="also time a DETR-ResNet-50-sized random model")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    peak, peak_bf16 = matmul_gflops(), matmul_gflops(torch.bfloat16)
    print(f"threads {args.threads}; matmul peak fp32 {peak:.1f} GFLOP/s, bf16 {peak_bf16:.1f} GFLOP/s "
          f"({peak_bf16 / peak:.2f}x)")
    model, what = detector()
    pixels = sample_pixels(args.batch, model.input_size)
    gflops = gflops_per_image(model, pixels)
    rate32, out32 = run(model, pixels, "fp32", args.repeats)
    rate16, out16 = run(model, pixels, "bf16", args.repeats)
    cos, same_boxes = compare_confident(out32, out16)
    print(f"{what}: {gflops:.3f} GFLOPs per image (forward + 36 RoIs)")
    print(f"  fp32: {rate32:.1f} images/s at batch {args.batch} ({100 * rate32 * gflops / peak:.1f}% of the fp32 peak)")
    print(f"  bf16 autocast: {rate16:.1f} images/s ({rate16 / rate32:.2f}x fp32); on the rows with fp32 score > 0.5: "
          f"min cosine of region features vs fp32 {cos:.4f}, boxes within 1 px in {same_boxes}/{args.batch} images")
    if args.detr:
        print(f"DETR-ResNet-50-sized random config at 512 px: {detr_rate(2, args.repeats):.2f} images/s at batch 2")


if __name__ == "__main__":
    main()
