"""Blockwise R@K (hrem.eval) against the reference's per-query argsort evaluation, same run, same data.

    python benchmarks/bench_eval.py                 # 5000 images x 25000 captions, D = 1024 (COCO 5K size)
    python benchmarks/bench_eval.py --images 1000   # F30K size

Data: random L2-normalised float32 image embeddings and 5 captions per image (image + Gaussian noise,
normalised), so scores are continuous random values and ties have probability ~0: the argsort position
and the strict-greater count then agree exactly, and the check below asserts that every rank and every
metric is identical.

The baseline re-implements VSE∞/HREM `lib/evaluation.py` (`evalrank` → `i2t` / `t2i`): float64 embeddings,
one float64 `np.matmul` similarity matrix, then per-query `np.argsort` loops and `np.where(inds == …)`.

Lines printed:
The reference runs once (it takes seconds); the blockwise code runs `--repeat` times and the median is shown.
* `sims`: both sides rank the same float64 matrix (the headline comparison, identical ranks required).
* `embeddings`: end to end from float32 embeddings; hrem computes float32 matmuls block by block, the
  reference builds the float64 matrix first. Ranks may differ where two scores are closer than float32
  rounding (~1e-7); the count of such differences is printed, not asserted.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from hrem.eval import recall_summary, retrieval_ranks, retrieval_ranks_from_sims
from hrem.eval.ranks import RetrievalRanks


def reference_i2t(sims: np.ndarray) -> np.ndarray:
    """VSE∞ `i2t`: for each image, argsort all captions, best position of its 5 captions."""
    npts = sims.shape[0]
    ranks = np.zeros(npts)
    top1 = np.zeros(npts)
    for index in range(npts):
        inds = np.argsort(sims[index])[::-1]
        rank = 1e20
        for i in range(5 * index, 5 * index + 5):
            tmp = np.where(inds == i)[0][0]
            if tmp < rank:
                rank = tmp
        ranks[index] = rank
        top1[index] = inds[0]
    return ranks


def reference_t2i(sims: np.ndarray) -> np.ndarray:
    """VSE∞ `t2i`: for each caption, argsort all images, position of image j // 5."""
    npts = sims.shape[0]
    ranks = np.zeros(5 * npts)
    top1 = np.zeros(5 * npts)
    sims = sims.T
    for index in range(npts):
        for i in range(5):
            inds = np.argsort(sims[5 * index + i])[::-1]
            ranks[5 * index + i] = np.where(inds == index)[0][0]
            top1[5 * index + i] = inds[0]
    return ranks


def reference_metrics(ranks: np.ndarray) -> tuple[float, ...]:
    r1 = 100.0 * len(np.where(ranks < 1)[0]) / len(ranks)
    r5 = 100.0 * len(np.where(ranks < 5)[0]) / len(ranks)
    r10 = 100.0 * len(np.where(ranks < 10)[0]) / len(ranks)
    return r1, r5, r10, float(np.floor(np.median(ranks)) + 1), float(ranks.mean() + 1)


def make_data(n_images: int, dim: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    img = rng.standard_normal((n_images, dim), dtype=np.float32)
    cap = np.repeat(img, 5, axis=0) + noise * rng.standard_normal((5 * n_images, dim), dtype=np.float32)
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    cap /= np.linalg.norm(cap, axis=1, keepdims=True)
    return img, cap, np.repeat(np.arange(n_images, dtype=np.int64), 5)


def timed(fn, *args, repeat: int = 1):
    """(result, median wall time over `repeat` runs): the machine may be shared, the median damps spikes."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn(*args)
        times.append(time.perf_counter() - start)
    return out, float(np.median(times))


def run_reference(sims64: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    i2t, t2i = reference_i2t(sims64), reference_t2i(sims64)
    metrics = {}
    for name, ranks in (("i2t", i2t), ("t2i", t2i)):
        values = reference_metrics(ranks)
        metrics.update({f"{name}_{key}": v for key, v in zip(("r1", "r5", "r10", "medr", "meanr"), values)})
    metrics["rsum"] = sum(metrics[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10))
    return i2t, t2i, metrics


def run_blockwise_sims(sims: np.ndarray, mapping: np.ndarray) -> tuple[RetrievalRanks, dict]:
    ranks = retrieval_ranks_from_sims(sims, mapping)
    return ranks, recall_summary(ranks)


def run_blockwise_embeddings(img: np.ndarray, cap: np.ndarray,
                             mapping: np.ndarray) -> tuple[RetrievalRanks, dict]:
    ranks = retrieval_ranks(img, cap, mapping)
    return ranks, recall_summary(ranks)


def same_metrics(ours: dict, ref: dict) -> bool:
    return all(ours[key] == ref[key] for key in ref)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--images", type=int, default=5000, help="images (captions = 5x)")
    parser.add_argument("--dim", type=int, default=1024, help="embedding dimension")
    parser.add_argument("--noise", type=float, default=9.0, 
                        help="caption noise std per dimension (sets recall)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of the (fast) blockwise code; median shown")
    args = parser.parse_args(argv)

    img, cap, mapping = make_data(args.images, args.dim, args.noise, args.seed)
    print(f"data: {args.images} images x {5 * args.images} captions, D={args.dim}, continuous random scores")
    img64, cap64 = img.astype(np.float64), cap.astype(np.float64)  # the reference's encode_data dtype
    sims64, t_matmul = timed(np.matmul, img64, cap64.T)
    (ref_i2t, ref_t2i, ref_metrics), t_ref = timed(run_reference, sims64)
    (ours, our_metrics), t_ours = timed(run_blockwise_sims, sims64, mapping, repeat=args.repeat)
    identical = (np.array_equal(ours.i2t, ref_i2t) and np.array_equal(ours.t2i, ref_t2i)
                 and same_metrics(our_metrics, ref_metrics))
    print(f"sims (ranking the same float64 matrix)   blockwise: {t_ours:.2f} s  reference: {t_ref:.2f} s  "
          f"speed-up: {t_ref / t_ours:.1f}x  identical: {identical}")

    (emb_ranks, emb_metrics), t_emb = timed(run_blockwise_embeddings, img, cap, mapping)
    t_ref_total = t_matmul + t_ref
    differing = int((emb_ranks.i2t != ref_i2t).sum() + (emb_ranks.t2i != ref_t2i).sum())
    print(f"embeddings (float32 blocks vs float64 matmul + argsort)   blockwise: {t_emb:.2f} s  "
          f"reference: {t_ref_total:.2f} s  speed-up: {t_ref_total / t_emb:.1f}x  "
          f"ranks differing by float32 rounding: {differing} of {ref_i2t.size + ref_t2i.size}  "
          f"rsum {emb_metrics['rsum']:.4f} vs {ref_metrics['rsum']:.4f}")
    print("metrics: " + "  ".join(f"{k}={v:.2f}" for k, v in our_metrics.items()
                                  if k not in ("n_images", "n_captions")))
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
