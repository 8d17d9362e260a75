"""Losses against naive per-pair loops written here."""
import math

import torch
import torch.nn.functional as F

from hrem.losses import ContrastiveLoss, TripletLoss


def _embeddings(b=6, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    img = F.normalize(torch.randn(b, d, generator=g), dim=1)
    cap = F.normalize(img + 0.7 * torch.randn(b, d, generator=g), dim=1)
    return img, cap


def _naive_contrastive(img, cap, ids, margin, max_violation):
    b = img.shape[0]
    s = [[float(img[i] @ cap[j]) for j in range(b)] for i in range(b)]
    total = 0.0
    for i in range(b):                        # image anchor i, caption i positive
        costs = [max(0.0, margin + s[i][j] - s[i][i]) for j in range(b) if ids[j] != ids[i]]
        total += (max(costs) if costs else 0.0) if max_violation else sum(costs)
    for j in range(b):                        # caption anchor j, image j positive
        costs = [max(0.0, margin + s[i][j] - s[j][j]) for i in range(b) if ids[i] != ids[j]]
        total += (max(costs) if costs else 0.0) if max_violation else sum(costs)
    return total


def test_contrastive_matches_naive_with_repeated_images():
    img, cap = _embeddings()
    ids = torch.tensor([0, 1, 1, 2, 3, 3])   # two captions of image 1 and of image 3 in the batch
    for mv in (False, True):
        got = ContrastiveLoss(0.2, max_violation=mv)(img, cap, ids)
        assert math.isclose(float(got), _naive_contrastive(img, cap, ids.tolist(), 0.2, mv), rel_tol=1e-5)


def _naive_weights(sim_row, neg_ok, n=512, cutoff=1.7):
    logs = []
    for s, ok in zip(sim_row, neg_ok):
        d = max(math.sqrt(max(2 - 2 * s, 0.0)), 0.5)
        if ok and d < cutoff:
            logs.append((2 - n) * math.log(d) - ((n - 3) / 2) * math.log(1 - d * d / 4))
        else:
            logs.append(None)
    valid = [x for x in logs if x is not None]
    if not valid:
        return [0.0] * len(logs)
    top = max(valid)
    w = [math.exp(x - top) if x is not None else 0.0 for x in logs]
    return [v / sum(w) for v in w]


def _naive_triplet_direction(sim, ids, generator):
    """Pairs in row-major order; one multinomial draw over the stacked weight rows (same RNG use)."""
    b = sim.shape[0]
    pairs = [(a, p) for a in range(b) for p in range(b) if ids[a] == ids[p]]
    rows = [_naive_weights(sim[a].tolist(), [ids[j] != ids[a] for j in range(b)]) for a, _ in pairs]
    kept = [(pair, row) for pair, row in zip(pairs, rows) if sum(row) > 0]
    if not kept:
        return 0.0
    negs = torch.multinomial(torch.tensor([r for _, r in kept]), 1, generator=generator)[:, 0].tolist()
    return sum(max(0.0, 0.2 + float(sim[a, n]) - float(sim[a, p])) for ((a, p), _), n in zip(kept, negs))


def test_triplet_matches_naive_sampling_with_the_same_generator():
    img, cap = _embeddings(b=8, d=4, seed=1)
    ids = torch.tensor([0, 0, 1, 2, 3, 4, 4, 5])
    got = TripletLoss(generator=torch.Generator().manual_seed(7))(img, cap, ids)
    g = torch.Generator().manual_seed(7)
    sim = img @ cap.t()
    want = _naive_triplet_direction(sim, ids.tolist(), g) + _naive_triplet_direction(sim.t(), ids.tolist(), g)
    assert math.isclose(float(got), want, rel_tol=1e-5, abs_tol=1e-6)


def test_triplet_weights_follow_the_distance_density():
    img, cap = _embeddings(b=5, d=6, seed=2)
    loss = TripletLoss()
    sim = img @ cap.t()
    positives = torch.eye(5, dtype=torch.bool)
    w = loss.sampling_weights(sim, positives)
    for a in range(5):
        want = _naive_weights(sim[a].tolist(), [j != a for j in range(5)])
        torch.testing.assert_close(w[a], torch.tensor(want), atol=1e-6, rtol=1e-5)


def test_triplet_only_candidate_is_deterministic_and_cutoff_excludes_far_negatives():
    # 3 items in 2-D: negatives of item 0 are item 1 (near) and item 2 (opposite, d = 2 >= cutoff).
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    cap = img.clone()
    loss = TripletLoss(margin=2.0)
    sim = img @ cap.t()
    w = loss.sampling_weights(sim, torch.eye(3, dtype=torch.bool))
    assert w[0, 2] == 0 and w[0, 1] == 1.0
    # every anchor has exactly one sampleable negative (the orthogonal one): loss = sum(2 + 0 - 1) per pair
    got = loss(img, cap, torch.arange(3))
    want = 2 * sum(2.0 + float(sim[a, n]) - 1.0 for a, n in ((0, 1), (1, 0), (2, 1)))
    assert math.isclose(float(got), want, rel_tol=1e-6)


def test_triplet_without_negatives_is_zero_with_gradient():
    img, cap = _embeddings(b=3)
    img.requires_grad_(True)
    got = TripletLoss()(img, cap, torch.zeros(3, dtype=torch.long))   # all one image: no negatives
    assert float(got.detach()) == 0.0
    got.backward()
    assert img.grad is not None
