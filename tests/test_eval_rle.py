"""COCO RLE: round trips, a naive run-length reference, and strings produced by pycocotools 2.0.11."""
import numpy as np
import pytest

from hrem.eval import rle_area, rle_decode, rle_encode
from hrem.eval.rle import counts_to_string, string_to_counts


def naive_counts(mask):
    """Run lengths in column-major order starting with zeros, by walking pixel by pixel."""
    counts, current, run = [], False, 0
    for c in range(mask.shape[1]):
        for r in range(mask.shape[0]):
            if bool(mask[r, c]) == current:
                run += 1
            else:
                counts.append(run)
                current, run = not current, 1
    counts.append(run)
    return counts


# Encoded with pycocotools.mask.encode(np.asfortranarray(mask)) (negative deltas in the first, long runs
# in the second).
SMALL = {"size": [6, 7], "counts": "01<2G000:N"}
LARGE = {"size": [300, 400], "counts": "03Y90TU>c4YfA" + "0" * 677 + "dj2"}


def small_mask():
    mask = np.zeros((6, 7), dtype=np.uint8)
    mask[1:4, 2:5] = 1
    mask[5, 6] = 1
    mask[0, 0] = 1
    return mask


def large_mask():
    mask = np.zeros((300, 400), dtype=np.uint8)
    mask[100:250, 50:390] = 1
    mask[0:3, 0:2] = 1
    return mask


def test_matches_pycocotools_strings():
    for mask, expected in ((small_mask(), SMALL), (large_mask(), LARGE)):
        assert rle_encode(mask) == expected
        np.testing.assert_array_equal(rle_decode(expected), mask.astype(bool))
        np.testing.assert_array_equal(rle_decode({**expected, "counts": expected["counts"].encode()}),
                                      mask.astype(bool))
        assert rle_area(expected) == int(mask.sum())


def test_random_round_trips_and_naive_counts():
    rng = np.random.default_rng(0)
    for trial in range(60):
        height, width = (int(v) for v in rng.integers(1, 40, size=2))
        mask = rng.random((height, width)) < rng.random()
        if trial % 10 == 0:
            mask[:] = trial % 20 == 0  # all ones / all zeros
        plain = rle_encode(mask, compressed=False)
        assert plain["counts"] == naive_counts(mask)
        np.testing.assert_array_equal(rle_decode(plain), mask)
        np.testing.assert_array_equal(rle_decode(rle_encode(mask)), mask)
        assert rle_area(rle_encode(mask)) == int(mask.sum())


def test_string_codec_handles_large_and_negative_deltas():
    counts = [0, 5, 100000, 3, 7, 2**31 - 1, 1, 0, 12]
    assert string_to_counts(counts_to_string(counts)) == counts


def test_errors():
    with pytest.raises(ValueError, match="summing to H\\*W = 6"):
        rle_decode({"size": [2, 3], "counts": [1, 2]})
    with pytest.raises(ValueError, match="'size' and 'counts'"):
        rle_decode({"counts": [1]})
    with pytest.raises(ValueError, match="truncated"):
        string_to_counts("0" + chr(48 + 0x20))
    with pytest.raises(ValueError, match="2-D"):
        rle_encode(np.zeros(3))
