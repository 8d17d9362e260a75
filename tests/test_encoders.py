"""Pooling, projection, fragment relation and image preprocessing against naive reference code."""
import math

import numpy as np
import pytest
import torch
from PIL import Image

from hrem.data.images import ImagePreprocessor
from hrem.encoders.pooling import GPO, l2norm, lengths_to_mask, masked_mean, maxk_pool
from hrem.encoders.projection import FCMLP
from hrem.relation.fragment import FragmentRelation


def _padded(lengths, n=6, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), n, d, generator=g)
    lengths = torch.tensor(lengths)
    return x, lengths, lengths_to_mask(lengths, n)


def test_maxk_pool_matches_per_sample_loop_with_own_k():
    x, lengths, mask = _padded([6, 1, 3, 2])
    x = x.masked_fill(~mask[..., None], 100.0)   # padding must never be picked, whatever its value
    got = maxk_pool(x, mask, k=2)
    for i, n in enumerate(lengths.tolist()):
        k = min(2, n)                              # per sample: the short item must not lower k for others
        want = torch.stack([x[i, :n, j].sort(descending=True).values[:k].mean() for j in range(x.shape[2])])
        torch.testing.assert_close(got[i], want)


def test_masked_mean_and_l2norm():
    x, lengths, mask = _padded([4, 2])
    got = masked_mean(x, mask)
    torch.testing.assert_close(got[1], x[1, :2].mean(0))
    v = torch.tensor([[3.0, 4.0]])
    torch.testing.assert_close(l2norm(v), torch.tensor([[0.6, 0.8]]), atol=1e-6, rtol=0)


def _naive_gpo(gpo: GPO, x: torch.Tensor, n: int) -> torch.Tensor:
    """One sample at a time, no packing: PE -> BiGRU -> score -> softmax(score / 0.1) over sorted features."""
    width = gpo.pe_dim
    pe = torch.zeros(n, width)
    for pos in range(n):
        for i in range(0, width, 2):
            angle = pos / (10000 ** (i / width))
            pe[pos, i], pe[pos, i + 1] = math.sin(angle), math.cos(angle)
    out, _ = gpo.gru(pe[None])
    h = out.shape[-1] // 2
    scores = gpo.linear((out[0, :, :h] + out[0, :, h:]) / 2)[:, 0]
    weights = torch.softmax(scores / 0.1, dim=0)
    ordered = x[:n].sort(dim=0, descending=True).values
    return (ordered * weights[:, None]).sum(0)


def test_gpo_matches_naive_per_sample():
    torch.manual_seed(0)
    gpo = GPO(8, 6).eval()
    x, lengths, mask = _padded([5, 2, 6], n=6, d=4)
    with torch.no_grad():
        got = gpo(x, mask)
        for i, n in enumerate(lengths.tolist()):
            torch.testing.assert_close(got[i], _naive_gpo(gpo, x[i], n), atol=1e-5, rtol=1e-5)


def test_fcmlp_uses_valid_rows_only_and_keeps_official_keys():
    torch.manual_seed(0)
    head = FCMLP(5, 3, 4).train()
    x, lengths, mask = _padded([6, 2, 4])
    out = head(x, mask)
    assert (out[~mask] == 0).all()
    keys = set(head.state_dict())
    assert {"fc.weight", "mlp.layers.0.weight", "mlp.layers.1.weight", "mlp.bns.0.running_mean",
            "mlp.bns.1.weight"} <= keys
    # naive: BatchNorm with batch statistics over the valid rows only
    rows = x[mask]
    h = rows @ head.mlp.layers[0].weight.t() + head.mlp.layers[0].bias
    h = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + 1e-5)
    h = torch.relu(h * head.mlp.bns[0].weight + head.mlp.bns[0].bias)
    want = rows @ head.fc.weight.t() + head.fc.bias + h @ head.mlp.layers[1].weight.t() + head.mlp.layers[1].bias
    torch.testing.assert_close(out[mask], want, atol=1e-5, rtol=1e-5)


def test_fragment_relation_ignores_padding_and_keeps_reference_keys():
    torch.manual_seed(0)
    rel = FragmentRelation(8, 2, 8, 0.1).eval()
    assert "layers.0.self_attn.in_proj_weight" in rel.state_dict()
    x, lengths, mask = _padded([3, 6], n=6, d=8)
    noisy = x.clone()
    noisy[0, 3:] = 50.0
    with torch.no_grad():
        a, b = rel(x, mask), rel(noisy, mask)
        alone = rel(x[:1, :3], mask[:1, :3])
    torch.testing.assert_close(a[0, :3], b[0, :3])
    torch.testing.assert_close(a[0, :3], alone[0], atol=1e-5, rtol=1e-5)


def test_image_preprocessor_matches_numpy(tmp_path):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, size=(40, 30, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    Image.fromarray(array).save(path)
    pre = ImagePreprocessor(16, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    got = pre(path)
    resized = np.asarray(Image.fromarray(array).resize((16, 16), Image.BILINEAR), dtype=np.float32) / 255.0
    want = (resized - np.array([0.5, 0.4, 0.3])) / np.array([0.2, 0.25, 0.3])
    assert got.shape == (3, 16, 16) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), want.transpose(2, 0, 1), atol=1e-5)
    torch.testing.assert_close(pre(array), got)                   # arrays and paths agree
    with pytest.raises(FileNotFoundError, match="no such image"):
        pre(tmp_path / "missing.png")
