"""Image<->caption ranks for one image : K captions, computed blockwise without per-query loops.

Rank convention (used everywhere in hrem.eval): the rank of a query's ground truth is the **number of
candidates with a strictly higher score**, so rank 0 is a hit at R@1. With distinct scores this equals the
0-based position in a descending argsort (the reference's `np.where(inds == i)`); with ties it is the
optimistic position (the ground truth is placed first among equal scores), which is deterministic,
whereas an argsort position among ties depends on the sort algorithm.

* i2t rank of image i = #{captions j : s_ij > max_{j' in G(i)} s_ij'}, G(i) = i's captions. This equals
  the reference's "best rank among the image's captions": strict-greater rank is monotone non-increasing
  in the score, so the minimum over G(i) is reached at the caption with the highest score, and captions of
  G(i) scoring at most that maximum are never counted.
* t2i rank of caption j = #{images i : s_ij > s_{g(j) j}}, g = `caption_image`.

Scores are the dot products of the given embeddings (float32 matmul, float16 inputs are widened per
block) or the entries of a precomputed similarity matrix, read in row blocks in its own dtype (a memmap
works; no float64 or float32 copy of the whole matrix is made). Each direction compares values that come
from one and the same array, so a ground truth is never compared with a differently rounded copy of
itself. NaN scores are never "strictly higher"; a NaN ground-truth score is an error.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
import numpy as np

log = logging.getLogger(__name__)

# Elements per score block: 16M float32 = 64 MB, plus a 16 MB boolean comparison buffer.
DEFAULT_BLOCK_ELEMENTS = 1 << 24
# Row blocks of a precomputed matrix are sized to stay in cache: both directions compare the same block.
SIMS_BLOCK_BYTES = 4 << 20
_UINT8_ROWS = 255


@dataclass(frozen=True)
class RetrievalRanks:
    """Ranks of the ground truth (strict-greater count, 0 = top-1) for both directions."""

    i2t: np.ndarray  # int64 [N]: per image, best rank among its captions
    t2i: np.ndarray  # int64 [M]: per caption, rank of its image


def validate_caption_image(caption_image: np.ndarray, n_images: int,
                           where: str = "caption_image") -> np.ndarray:
    """Check the caption -> image-row mapping and that every image has at least one caption."""
    mapping = np.asarray(caption_image)
    if mapping.ndim != 1 or not np.issubdtype(mapping.dtype, np.integer):
        raise ValueError(f"{where}: expected a 1-D integer array (caption -> image row), "
                         f"found dtype {mapping.dtype} with shape {mapping.shape}")
    if mapping.size == 0 or n_images == 0:
        raise ValueError(f"{where}: expected at least one image and one caption, "
                         f"found {n_images} images and {mapping.size} captions")
    low, high = int(mapping.min()), int(mapping.max())
    if low < 0 or high >= n_images:
        raise ValueError(f"{where}: expected image rows in [0, {n_images}), found values in [{low}, {high}]")
    counts = np.bincount(mapping, minlength=n_images)
    if (counts == 0).any():
        missing = np.flatnonzero(counts == 0)
        raise ValueError(f"{where}: every image needs at least one caption for i2t ranks; "
                         f"{missing.size} of {n_images} images have none "
                         f"(first rows: {missing[:5].tolist()})")
    return mapping.astype(np.int64, copy=False)


def _rows_per_block(n_columns: int, block_elements: int) -> int:
    return max(1, block_elements // max(1, n_columns))


def _count_greater(scores: np.ndarray, thresholds: np.ndarray, axis: int, buffer: np.ndarray) -> np.ndarray:
    """Per row (axis=1) or column (axis=0): how many entries are strictly above its threshold."""
    out = buffer[: scores.shape[0], : scores.shape[1]]
    expanded = thresholds[:, None] if axis == 1 else thresholds[None, :]
    np.greater(scores, expanded, out=out)
    if axis == 1:
        return out.sum(axis=1, dtype=np.int32).astype(np.int64)
    # Column counts: summing booleans as uint8 is ~10x faster than as int32; 255 rows cannot overflow.
    counts = np.zeros(out.shape[1], dtype=np.int64)
    for first in range(0, out.shape[0], _UINT8_ROWS):
        counts += out[first: first + _UINT8_ROWS].view(np.uint8).sum(axis=0, dtype=np.uint8)
    return counts


def _best_positive_scores(block: np.ndarray, first_image: int, caption_image: np.ndarray,
                          captions_by_image: np.ndarray, image_starts: np.ndarray) -> np.ndarray:
    """For the images [first_image, first_image + rows) of `block`, the max score over their captions."""
    rows = block.shape[0]
    captions = captions_by_image[image_starts[first_image]: image_starts[first_image + rows]]
    local_rows = caption_image[captions] - first_image
    best = np.full(rows, -np.inf, dtype=block.dtype)
    np.maximum.at(best, local_rows, block[local_rows, captions])
    return best


def _check_finite(values: np.ndarray, what: str) -> None:
    if np.isnan(values).any():
        raise ValueError(f"{what}: {int(np.isnan(values).sum())} ground-truth scores are NaN; "
                         "check the embeddings / similarity matrix for NaN")


def _caption_index(caption_image: np.ndarray, n_images: int) -> tuple[np.ndarray, np.ndarray]:
    """Captions grouped by image: captions_by_image[image_starts[i]:image_starts[i + 1]] describe image i."""
    captions_by_image = np.argsort(caption_image, kind="stable")
    image_starts = np.searchsorted(caption_image[captions_by_image], np.arange(n_images + 1))
    return captions_by_image, image_starts


def _i2t_block(block: np.ndarray, first_image: int, caption_image: np.ndarray,
               index: tuple[np.ndarray, np.ndarray], buffer: np.ndarray) -> np.ndarray:
    """i2t ranks of the images [first_image, first_image + rows) from their score rows [rows, M]."""
    best = _best_positive_scores(block, first_image, caption_image, *index)
    _check_finite(best, "i2t")
    return _count_greater(block, best, 1, buffer)


def retrieval_ranks(img_emb: np.ndarray, cap_emb: np.ndarray, caption_image: np.ndarray,
                    block_elements: int = DEFAULT_BLOCK_ELEMENTS) -> RetrievalRanks:
    """Ranks from embeddings (scores = img_emb @ cap_emb.T, float32), in blocks of ~`block_elements`.

    i2t uses image-row blocks img[a:b] @ cap.T; t2i uses caption blocks cap[c:d] @ img.T. That is two
    matmuls instead of one, but each direction then compares a ground truth with values of the very same
    computed array (BLAS may round a block and a single dot product differently).
    """
    img, cap = as_embedding_matrix(img_emb, "img_emb"), as_embedding_matrix(cap_emb, "cap_emb")
    if img.shape[1] != cap.shape[1]:
        raise ValueError("img_emb / cap_emb: expected the same dimension, "
                         f"found {img.shape[1]} and {cap.shape[1]}")
    mapping = validate_caption_image(caption_image, img.shape[0])
    if mapping.shape[0] != cap.shape[0]:
        raise ValueError(f"caption_image: expected one entry per caption ({cap.shape[0]}), "
                         f"found {mapping.shape[0]}")
    (n_images, n_captions), index = (img.shape[0], cap.shape[0]), _caption_index(mapping, img.shape[0])
    img32, cap32 = img.astype(np.float32, copy=False), cap.astype(np.float32, copy=False)
    i2t, t2i = np.empty(n_images, dtype=np.int64), np.empty(n_captions, dtype=np.int64)
    step = _rows_per_block(n_captions, block_elements)
    buffer = np.empty((min(step, n_images), n_captions), dtype=bool)
    for start in range(0, n_images, step):
        block = img32[start: start + step] @ cap32.T  # [images, captions]
        i2t[start: start + block.shape[0]] = _i2t_block(block, start, mapping, index, buffer)
    step = _rows_per_block(n_images, block_elements)
    buffer = np.empty((min(step, n_captions), n_images), dtype=bool)
    for start in range(0, n_captions, step):
        block = cap32[start: start + step] @ img32.T  # [captions, images]
        positive = block[np.arange(block.shape[0]), mapping[start: start + block.shape[0]]]
        _check_finite(positive, "t2i")
        t2i[start: start + block.shape[0]] = _count_greater(block, positive, 1, buffer)
    return RetrievalRanks(i2t=i2t, t2i=t2i)


def retrieval_ranks_from_sims(sims: np.ndarray, caption_image: np.ndarray,
                              block_elements: int | None = None) -> RetrievalRanks:
    """Ranks from a precomputed [N images, M captions] score matrix (array or memmap), one pass of row blocks.

    Blocks keep the matrix dtype (float64 stays float64, float16 stays float16): no widened copy is made.
    By default a block is ~4 MB so that it is still in cache when the second direction compares it.
    """
    if getattr(sims, "ndim", None) != 2 or not np.issubdtype(sims.dtype, np.floating):
        raise ValueError(f"sims: expected a 2-D floating-point [images, captions] matrix, found "
                         f"shape {getattr(sims, 'shape', None)} dtype {getattr(sims, 'dtype', None)}")
    n_images, n_captions = sims.shape
    mapping = validate_caption_image(caption_image, n_images)
    if mapping.shape[0] != n_captions:
        raise ValueError(f"caption_image: expected one entry per sims column ({n_captions}), "
                         f"found {mapping.shape[0]}")
    positive = np.asarray(sims[mapping, np.arange(n_captions)])  # s_{g(j) j}, read once per caption
    _check_finite(positive, "t2i")
    if block_elements is None:
        block_elements = SIMS_BLOCK_BYTES // sims.dtype.itemsize
    step, index = _rows_per_block(n_captions, block_elements), _caption_index(mapping, n_images)
    buffer = np.empty((min(step, n_images), n_captions), dtype=bool)
    i2t, t2i = np.empty(n_images, dtype=np.int64), np.zeros(n_captions, dtype=np.int64)
    for start in range(0, n_images, step):
        block = np.asarray(sims[start: start + step])
        i2t[start: start + block.shape[0]] = _i2t_block(block, start, mapping, index, buffer)
        t2i += _count_greater(block, positive, 0, buffer)
    return RetrievalRanks(i2t=i2t, t2i=t2i)


def as_embedding_matrix(values: np.ndarray, name: str) -> np.ndarray:
    """Check an embedding matrix [rows, dim] of float16/32/64 (scores are computed in float32 blocks)."""
    array = np.asarray(values)
    if array.ndim != 2 or array.dtype not in (np.float16, np.float32, np.float64):
        raise ValueError(f"{name}: expected a 2-D float16/float32/float64 array [rows, dim], "
                         f"found dtype {array.dtype} with shape {array.shape}")
    if array.dtype == np.float64:
        log.debug("%s is float64; blocks are computed in float32", name)
    return array
