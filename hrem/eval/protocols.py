"""The retrieval protocols of REFERENCE_HREM.md §4.3 on top of the blockwise ranks.

* `all`, `f30k`, `coco5k`: the whole split (F30K test = 1000 images, COCO testall = 5000). The three differ
  only in name, as in the reference (`evalrank(fold5=False)` / the first result of `fold5=True`); a split
  of another size is evaluated as given and a warning says so.
* `coco1k`: folds of 1000 consecutive images f·1000 … f·1000+999 with their captions, metrics averaged
  over folds (medr and meanr included, like the reference). With 5-per-image captions in image order this is
  exactly `sims[f*1000:(f+1)*1000, f*5000:(f+1)*5000]`. The reference takes 5 folds; a split of
  1000 ≤ N < 5000 images uses its N // 1000 full folds and the result says so (`folds`, `images_used`), and
  a split of fewer than 1000 images raises a ValueError naming the count (no empty fold, no NaN).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from hrem.eval.ranks import (DEFAULT_BLOCK_ELEMENTS, RetrievalRanks, as_embedding_matrix, retrieval_ranks,
                             retrieval_ranks_from_sims, validate_caption_image)
from hrem.eval.recall import CURVE_MAX_K, mean_curves, mean_summaries, recall_curves, recall_summary

log = logging.getLogger(__name__)

FOLD_SIZE = 1000
MAX_FOLDS = 5
WHOLE_SPLIT_PROTOCOLS = {"all": None, "f30k": 1000, "coco5k": 5000}  # name -> the paper's image count
PROTOCOLS = ("all", "f30k", "coco5k", "coco1k")


@dataclass(frozen=True)
class _Scores:
    """Either embeddings or a precomputed score matrix, with the caption -> image mapping."""

    caption_image: np.ndarray
    img_emb: np.ndarray | None = None
    cap_emb: np.ndarray | None = None
    sims: np.ndarray | None = None
    block_elements: int | None = None  # None: each ranking function's default

    @property
    def n_images(self) -> int:
        return int(self.sims.shape[0] if self.sims is not None else self.img_emb.shape[0])

    def ranks(self) -> RetrievalRanks:
        if self.sims is not None:
            return retrieval_ranks_from_sims(self.sims, self.caption_image, self.block_elements)
        return retrieval_ranks(self.img_emb, self.cap_emb, self.caption_image,
                               self.block_elements or DEFAULT_BLOCK_ELEMENTS)

    def image_range(self, start: int, stop: int) -> "_Scores":
        """Images [start, stop) and the captions that describe them (in caption order)."""
        captions = np.flatnonzero((self.caption_image >= start) & (self.caption_image < stop))
        if captions.size == 0:
            raise ValueError(f"images [{start}, {stop}): expected captions for this fold, found none")
        mapping = self.caption_image[captions] - start
        if self.sims is None:
            return _Scores(mapping, self.img_emb[start:stop], self.cap_emb[captions], None,
                           self.block_elements)
        contiguous = captions[-1] - captions[0] + 1 == captions.size
        columns = slice(int(captions[0]), int(captions[-1]) + 1) if contiguous else captions
        return _Scores(mapping, None, None, self.sims[start:stop, columns], self.block_elements)


def _summarise(ranks: RetrievalRanks, protocol: str, max_k: int) -> dict:
    summary: dict = {"task": "retrieval", "protocol": protocol, **recall_summary(ranks)}
    summary["recall_curve"] = recall_curves(ranks, max_k)
    return summary


def _fold_summary(scores: _Scores, max_k: int) -> dict:
    n_folds = min(MAX_FOLDS, scores.n_images // FOLD_SIZE)
    if n_folds == 0:
        raise ValueError(f"protocol coco1k: expected at least {FOLD_SIZE} images for one fold of "
                         f"{FOLD_SIZE}, found {scores.n_images}")
    if n_folds < MAX_FOLDS or scores.n_images != MAX_FOLDS * FOLD_SIZE:
        log.warning("coco1k: %d images give %d full fold(s) of %d (the paper: %d folds of the 5K split); "
                    "%d images unused", scores.n_images, n_folds, FOLD_SIZE, MAX_FOLDS,
                    scores.n_images - n_folds * FOLD_SIZE)
    folds = [_summarise(scores.image_range(f * FOLD_SIZE, (f + 1) * FOLD_SIZE).ranks(), "coco1k", max_k)
             for f in range(n_folds)]
    numeric = [k for k, v in folds[0].items() if isinstance(v, (int, float))]
    summary: dict = {"task": "retrieval", "protocol": "coco1k", **mean_summaries(folds, numeric)}
    summary.update(n_images=FOLD_SIZE, n_captions=float(np.mean([f["n_captions"] for f in folds])),
                   folds=n_folds, images_used=n_folds * FOLD_SIZE, images_total=scores.n_images,
                   per_fold_rsum=[f["rsum"] for f in folds],
                   recall_curve=mean_curves([f["recall_curve"] for f in folds]))
    return summary


def _evaluate(scores: _Scores, protocols: Sequence[str], max_k: int) -> dict[str, dict]:
    if isinstance(protocols, str):
        protocols = (protocols,)
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not protocols:
        raise ValueError(f"protocols: expected some of {list(PROTOCOLS)}, found {list(protocols)}")
    results: dict[str, dict] = {}
    whole: RetrievalRanks | None = None  # computed once, shared by all / f30k / coco5k
    for protocol in protocols:
        if protocol == "coco1k":
            results[protocol] = _fold_summary(scores, max_k)
            continue
        expected = WHOLE_SPLIT_PROTOCOLS[protocol]
        if expected is not None and scores.n_images != expected:
            log.warning("%s: the split has %d images (the paper's protocol uses %d); evaluating all of them",
                        protocol, scores.n_images, expected)
        whole = whole if whole is not None else scores.ranks()
        results[protocol] = _summarise(whole, protocol, max_k)
    return results


def evaluate_retrieval(img_emb: np.ndarray, cap_emb: np.ndarray, caption_image: np.ndarray,
                       protocols: Sequence[str] = ("f30k",), *, max_k: int = CURVE_MAX_K,
                       block_elements: int = DEFAULT_BLOCK_ELEMENTS) -> dict[str, dict]:
    """{protocol: summary} from image embeddings [N, D] and caption embeddings [M, D].

    A summary holds i2t_/t2i_ r1 r5 r10 medr meanr, rsum, n_images, n_captions, `recall_curve`
    ({"i2t": [R@1 … R@max_k], "t2i": […]}), and for coco1k `folds`, `images_used`, `per_fold_rsum`.
    """
    img, cap = as_embedding_matrix(img_emb, "img_emb"), as_embedding_matrix(cap_emb, "cap_emb")
    mapping = validate_caption_image(caption_image, img.shape[0])
    return _evaluate(_Scores(mapping, img, cap, None, block_elements), protocols, max_k)


def evaluate_retrieval_sims(sims: np.ndarray, caption_image: np.ndarray, protocols: Sequence[str] = ("f30k",),
                            *, max_k: int = CURVE_MAX_K,
                            block_elements: int | None = None) -> dict[str, dict]:
    """`evaluate_retrieval` on a precomputed [N, M] score matrix (e.g. `np.load(path, mmap_mode="r")`)."""
    if getattr(sims, "ndim", None) != 2:
        raise ValueError("sims: expected a 2-D [images, captions] matrix, "
                         f"found shape {getattr(sims, 'shape', None)}")
    mapping = validate_caption_image(caption_image, sims.shape[0])
    return _evaluate(_Scores(mapping, None, None, sims, block_elements), protocols, max_k)
