"""Blockwise retrieval ranks / recall / protocols against brute-force references written here."""
import tracemalloc

import numpy as np
import pytest

import hrem.eval.protocols as protocols_module
from hrem.eval import (evaluate_retrieval, evaluate_retrieval_sims, recall_curve, recall_summary,
                       retrieval_ranks, retrieval_ranks_from_sims)


def naive_ranks(sims, caption_image):
    """Strict-greater ranks with explicit Python loops over queries and candidates."""
    n, m = sims.shape
    i2t = []
    for i in range(n):
        best = max(sims[i, j] for j in range(m) if caption_image[j] == i)
        i2t.append(sum(1 for j in range(m) if sims[i, j] > best))
    t2i = []
    for j in range(m):
        gt = sims[caption_image[j], j]
        t2i.append(sum(1 for i in range(n) if sims[i, j] > gt))
    return np.array(i2t), np.array(t2i)


def argsort_reference(sims):
    """The reference's i2t / t2i (5 captions per image, per-query argsort, best position)."""
    n = sims.shape[0]
    i2t = np.zeros(n, dtype=np.int64)
    for i in range(n):
        order = np.argsort(sims[i])[::-1]
        i2t[i] = min(np.where(order == j)[0][0] for j in range(5 * i, 5 * i + 5))
    t2i = np.zeros(5 * n, dtype=np.int64)
    for j in range(5 * n):
        order = np.argsort(sims[:, j])[::-1]
        t2i[j] = np.where(order == j // 5)[0][0]
    return i2t, t2i


def reference_summary(i2t, t2i):
    out = {}
    for name, r in (("i2t", i2t), ("t2i", t2i)):
        for k in (1, 5, 10):
            out[f"{name}_r{k}"] = 100.0 * len(np.where(r < k)[0]) / len(r)
        out[f"{name}_medr"] = np.floor(np.median(r)) + 1
        out[f"{name}_meanr"] = r.mean() + 1
    out["rsum"] = sum(out[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10))
    return out


def five_caption_data(n, dim, noise, seed):
    rng = np.random.default_rng(seed)
    img = rng.standard_normal((n, dim)).astype(np.float32)
    cap = (np.repeat(img, 5, axis=0) + noise * rng.standard_normal((5 * n, dim))).astype(np.float32)
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    cap /= np.linalg.norm(cap, axis=1, keepdims=True)
    return img, cap, np.repeat(np.arange(n), 5)


@pytest.mark.parametrize("block_elements", [37, 1000, 1 << 24])
def test_sims_ranks_match_argsort_reference_on_distinct_scores(block_elements):
    img, cap, mapping = five_caption_data(40, 16, 1.5, seed=0)
    sims = img.astype(np.float64) @ cap.astype(np.float64).T  # the reference's float64 matrix
    ranks = retrieval_ranks_from_sims(sims, mapping, block_elements=block_elements)
    ref_i2t, ref_t2i = argsort_reference(sims)
    np.testing.assert_array_equal(ranks.i2t, ref_i2t)
    np.testing.assert_array_equal(ranks.t2i, ref_t2i)
    assert ranks.i2t.dtype == np.int64 and ranks.t2i.dtype == np.int64


def test_ties_use_strict_greater_counts():
    rng = np.random.default_rng(1)
    sims = rng.integers(0, 4, size=(12, 60)).astype(np.float32)  # many exact ties
    mapping = np.repeat(np.arange(12), 5)
    ranks = retrieval_ranks_from_sims(sims, mapping, block_elements=50)
    i2t, t2i = naive_ranks(sims, mapping)
    np.testing.assert_array_equal(ranks.i2t, i2t)
    np.testing.assert_array_equal(ranks.t2i, t2i)
    half = retrieval_ranks_from_sims(sims.astype(np.float16), mapping, block_elements=50)  # stays float16
    np.testing.assert_array_equal(half.i2t, i2t)
    np.testing.assert_array_equal(half.t2i, t2i)
    sims[:] = 1.0  # everything tied: every query is a hit at R@1
    ranks = retrieval_ranks_from_sims(sims, mapping)
    assert ranks.i2t.max() == 0 and ranks.t2i.max() == 0


def test_embedding_ranks_with_ties_and_general_mapping():
    rng = np.random.default_rng(2)
    n, m = 17, 53
    mapping = np.concatenate([np.arange(n), rng.integers(0, n, m - n)])  # 1..k captions per image
    rng.shuffle(mapping)
    img = rng.integers(-2, 3, size=(n, 6)).astype(np.float32)  # small integers: exact dot products, ties
    cap = rng.integers(-2, 3, size=(m, 6)).astype(np.float32)
    for block_elements in (7, 100, 1 << 20):
        ranks = retrieval_ranks(img, cap, mapping, block_elements=block_elements)
        i2t, t2i = naive_ranks(img @ cap.T, mapping)
        np.testing.assert_array_equal(ranks.i2t, i2t)
        np.testing.assert_array_equal(ranks.t2i, t2i)
    ranks16 = retrieval_ranks(img.astype(np.float16), cap.astype(np.float16), mapping)
    np.testing.assert_array_equal(ranks16.i2t, i2t)


def test_embeddings_and_sims_agree_and_summary_matches_reference():
    img, cap, mapping = five_caption_data(60, 32, 1.2, seed=3)
    from_emb = retrieval_ranks(img, cap, mapping, block_elements=500)
    from_sims = retrieval_ranks_from_sims(img @ cap.T, mapping, block_elements=500)
    np.testing.assert_array_equal(from_emb.i2t, from_sims.i2t)
    np.testing.assert_array_equal(from_emb.t2i, from_sims.t2i)
    summary = recall_summary(from_emb)
    for key, value in reference_summary(from_emb.i2t, from_emb.t2i).items():
        assert summary[key] == pytest.approx(value, abs=1e-12), key
    assert (summary["n_images"], summary["n_captions"]) == (60, 300)


def test_recall_curve_matches_brute_force():
    ranks = np.random.default_rng(4).integers(0, 150, size=500)
    curve = recall_curve(ranks, max_k=100)
    assert len(curve) == 100
    for k in (1, 2, 7, 50, 100):
        assert curve[k - 1] == pytest.approx(100.0 * np.mean(ranks < k))


def test_memmap_sims_are_read_in_blocks_without_a_full_copy(tmp_path):
    img, cap, mapping = five_caption_data(400, 8, 1.0, seed=5)
    path = tmp_path / "sims.npy"
    np.save(path, img.astype(np.float64) @ cap.astype(np.float64).T)  # 400 x 2000 float64 = 6.4 MB
    sims = np.load(path, mmap_mode="r")
    tracemalloc.start()
    ranks = retrieval_ranks_from_sims(sims, mapping, block_elements=1 << 16)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < sims.nbytes / 4, f"peak {peak} bytes for a {sims.nbytes}-byte matrix"
    i2t, t2i = argsort_reference(np.asarray(sims[:40, :200]))  # spot check a sub-problem below
    sub = retrieval_ranks_from_sims(np.asarray(sims[:40, :200]), mapping[:200])
    np.testing.assert_array_equal(sub.i2t, i2t)
    np.testing.assert_array_equal(ranks.t2i, naive_ranks_vectorised_t2i(np.asarray(sims), mapping))


def naive_ranks_vectorised_t2i(sims, mapping):
    gt = sims[mapping, np.arange(sims.shape[1])]
    return np.array([(sims[:, j] > gt[j]).sum() for j in range(sims.shape[1])])


def test_coco1k_is_the_mean_of_the_reference_folds(monkeypatch):
    monkeypatch.setattr(protocols_module, "FOLD_SIZE", 20)  # 5 folds of 20 images keep the test fast
    img, cap, mapping = five_caption_data(100, 16, 1.5, seed=6)
    sims = img.astype(np.float64) @ cap.astype(np.float64).T
    folds = [reference_summary(*argsort_reference(sims[f * 20:(f + 1) * 20, f * 100:(f + 1) * 100]))
             for f in range(5)]
    expected = {k: np.mean([f[k] for f in folds]) for k in folds[0]}
    for result in (evaluate_retrieval(img, cap, mapping, ("coco1k",))["coco1k"],
                   evaluate_retrieval_sims(sims, mapping, ("coco1k",))["coco1k"]):
        for key, value in expected.items():
            assert result[key] == pytest.approx(value, abs=1e-9), key
        assert result["folds"] == 5 and result["images_used"] == 100
    whole = evaluate_retrieval_sims(sims, mapping, ("coco5k", "f30k", "all"))
    ref = reference_summary(*argsort_reference(sims))
    for protocol in ("coco5k", "f30k", "all"):
        assert whole[protocol]["rsum"] == pytest.approx(ref["rsum"])


def test_coco1k_partial_and_empty_folds():
    img, cap, mapping = five_caption_data(2500, 4, 1.0, seed=7)
    result = evaluate_retrieval(img, cap, mapping, ("coco1k",))["coco1k"]
    assert (result["folds"], result["images_used"], result["images_total"]) == (2, 2000, 2500)
    assert len(result["per_fold_rsum"]) == 2 and np.isfinite(result["rsum"])
    with pytest.raises(ValueError, match="at least 1000 images.*found 999"):
        evaluate_retrieval(img[:999], cap[:4995], mapping[:4995], ("coco1k",))
    # A fold whose images have no caption at all must fail loudly, not give NaN.
    keep = mapping >= 1000
    with pytest.raises(ValueError, match="no.*captions|found none|have none"):
        evaluate_retrieval(img[:2000], cap[keep & (mapping < 2000)], mapping[keep & (mapping < 2000)],
                           ("coco1k",))


def test_clear_errors():
    img, cap, mapping = five_caption_data(5, 4, 1.0, seed=8)
    with pytest.raises(ValueError, match=r"image rows in \[0, 5\)"):
        retrieval_ranks(img, cap, mapping + 1)
    with pytest.raises(ValueError, match="1 of 5 images have none"):
        retrieval_ranks(img, cap[5:], mapping[5:])
    with pytest.raises(ValueError, match="same dimension"):
        retrieval_ranks(img, cap[:, :3], mapping)
    with pytest.raises(ValueError, match="protocols"):
        evaluate_retrieval(img, cap, mapping, ("f31k",))
    sims = img @ cap.T
    sims[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        retrieval_ranks_from_sims(sims, mapping)
    with pytest.raises(ValueError, match="non-empty"):
        recall_curve(np.array([], dtype=np.int64))


def test_summary_curves_are_consistent_with_recalls():
    img, cap, mapping = five_caption_data(30, 8, 2.0, seed=9)
    result = evaluate_retrieval(img, cap, mapping, ("f30k",))["f30k"]
    for direction in ("i2t", "t2i"):
        curve = result["recall_curve"][direction]
        assert len(curve) == 100 and curve == sorted(curve)
        assert curve[0] == result[f"{direction}_r1"] and curve[9] == result[f"{direction}_r10"]
