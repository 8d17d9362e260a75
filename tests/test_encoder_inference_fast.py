"""The inference-only fast paths (model.eval() + no autograd) against naive step-by-step references.

Covered: the BatchNorm-folded FC + MLP projection, the SDPA fragment-relation layer, top-k by exclusion,
the unpadded HREM pooling tail and l2norm; each with and without padded regions, after load_state_dict of
new weights and after a training step (nothing may be cached across weight changes), and the state-dict
keys, which the converter and the golden embeddings depend on.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from hrem.data.batch import ImageBatch
from hrem.encoders import head as head_module
from hrem.encoders import pooling, projection
from hrem.encoders.pooling import l2norm, lengths_to_mask, maxk_pool, topk_by_exclusion
from hrem.factory import create_model, create_tokenizer, load_card
from hrem.relation import fragment

ATOL = 1e-5


# ---------------------------------------------------------------- naive references, one item at a time

def naive_fcmlp(head, rows):
    """fc(x) + Linear(ReLU(BatchNorm_eval(Linear(x)))), BatchNorm written out with its running statistics."""
    bn, (first, second) = head.mlp.bns[0], head.mlp.layers
    hidden = rows @ first.weight.t() + first.bias
    hidden = (hidden - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    return rows @ head.fc.weight.t() + head.fc.bias + torch.relu(hidden) @ second.weight.t() + second.bias


def naive_layer(layer, x):
    """One post-LN encoder layer (eval: no dropout) over the valid tokens x [n, D] of one item."""
    attn, width = layer.self_attn, x.shape[1]
    heads = attn.num_heads
    d = width // heads
    q, k, v = (x @ attn.in_proj_weight.t() + attn.in_proj_bias).split(width, dim=-1)
    out = []
    for h in range(heads):
        part = slice(h * d, (h + 1) * d)
        weights = torch.softmax(q[:, part] @ k[:, part].t() / math.sqrt(d), dim=-1)
        out.append(weights @ v[:, part])
    mixed = torch.cat(out, dim=-1) @ attn.out_proj.weight.t() + attn.out_proj.bias
    hidden = F.layer_norm(x + mixed, (width,), layer.norm1.weight, layer.norm1.bias, layer.norm1.eps)
    ff = torch.relu(hidden @ layer.linear1.weight.t() + layer.linear1.bias) @ layer.linear2.weight.t()
    return F.layer_norm(hidden + ff + layer.linear2.bias, (width,), layer.norm2.weight, layer.norm2.bias,
                        layer.norm2.eps)


def naive_region_embedding(enc, regions, lengths):
    """RegionImageEncoder + l2norm, item by item on its valid regions only."""
    with torch.no_grad():
        return torch.stack([_naive_item(enc, item[:n]) for item, n in zip(regions, lengths.tolist())])


def _naive_item(enc, valid):
    """[n, F] valid regions of one item -> its normalised embedding [D]."""
    tokens = naive_fcmlp(enc.fc, valid)
    related = tokens
    for layer in enc.aggr.layers:
        related = naive_layer(layer, related)
    k = min(enc.head.maxk, valid.shape[0])
    top = tokens.sort(dim=0, descending=True).values[:k].mean(dim=0)
    r = enc.head.residual_weight
    pooled = r * top + (1 - r) * related.mean(dim=0)
    return pooled / (pooled.norm() + 1e-8)


# ---------------------------------------------------------------- fixtures

def _randomise_(module, seed):
    """New values for every parameter and buffer (BatchNorm variances stay positive): a loaded checkpoint."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in module.state_dict().items():
        if not value.is_floating_point():
            state[key] = value
        elif key.endswith("running_var"):
            state[key] = torch.rand(value.shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(value.shape, generator=g) * 0.3
    module.load_state_dict(state)


@pytest.fixture()
def region_model():
    torch.manual_seed(0)
    card = load_card("tiny-regions")
    model = create_model(card)
    _randomise_(model.img_enc, seed=1)   # non-trivial BatchNorm statistics and affine
    return model.eval(), card


def _regions(lengths, n=9, f=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    regions = torch.randn(len(lengths), n, f, generator=g).abs()
    return regions * lengths_to_mask(lengths, n)[..., None], lengths


def _fast_and_autograd(model, batch):
    with torch.inference_mode():
        fast = model.encode_image(batch)
    with torch.enable_grad():                 # eval mode, autograd on: the unchanged training-time code
        plain = model.encode_image(batch).detach()
    return fast, plain


# ---------------------------------------------------------------- pieces

@pytest.mark.parametrize("shape", [(4, 9, 5), (3, 2, 4), (2, 1, 3), (5, 36, 8)])
def test_topk_by_exclusion_equals_topk_with_ties_and_padding(shape):
    g = torch.Generator().manual_seed(0)
    for trial in range(6):
        x = torch.randint(0, 3, shape, generator=g).float() if trial % 2 else torch.randn(shape, generator=g)
        if trial >= 4:
            x[0, shape[1] // 2:] = float("-inf")          # padded positions, as maxk_pool fills them
        for k in range(1, min(shape[1], 4) + 1):
            got = torch.stack(topk_by_exclusion(x, k), dim=1)
            assert torch.equal(got, x.topk(k, dim=1).values), (shape, trial, k)


def test_maxk_pool_inference_equals_autograd_path():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 4, (5, 7, 6), generator=g).float()          # many ties
    for lengths in ([7, 7, 7, 7, 7], [7, 1, 3, 2, 6]):
        mask = lengths_to_mask(torch.tensor(lengths), 7)
        plain = maxk_pool(x.clone().requires_grad_(), mask, k=2).detach()
        with torch.inference_mode():
            fast = maxk_pool(x, mask, k=2)
        assert torch.equal(fast, plain)


def test_l2norm_without_autograd_matches_the_reference_formula():
    x = torch.randn(6, 10)
    want = x / (x.pow(2).sum(dim=-1, keepdim=True).sqrt() + 1e-8)
    torch.testing.assert_close(l2norm(x), want, atol=1e-7, rtol=0)
    torch.testing.assert_close(l2norm(x.clone().requires_grad_()).detach(), want, atol=0, rtol=0)


def test_folded_projection_matches_naive_batchnorm(region_model):
    model, _ = region_model
    head = model.img_enc.fc
    rows = torch.randn(20, 16).abs()
    with torch.inference_mode():
        got = projection.folded_fc_mlp(head, rows)
    torch.testing.assert_close(got, naive_fcmlp(head, rows), atol=ATOL, rtol=0)


def test_sdpa_layer_matches_naive_attention_with_and_without_padding(region_model):
    model, _ = region_model
    rel = model.img_enc.aggr
    x = torch.randn(3, 6, 32)
    for lengths in ([6, 6, 6], [6, 2, 4]):
        mask = lengths_to_mask(torch.tensor(lengths), 6)
        with torch.inference_mode():
            assert rel.uses_sdpa_inference(x)
            fast = rel(x, mask)
        with torch.enable_grad():
            builtin = rel(x, mask).detach()                          # nn.TransformerEncoder's own path
        for i, n in enumerate(lengths):
            with torch.no_grad():
                want = naive_layer(rel.layers[0], x[i, :n])
            torch.testing.assert_close(fast[i, :n], want, atol=ATOL, rtol=0)
            torch.testing.assert_close(fast[i, :n], builtin[i, :n], atol=ATOL, rtol=0)


def test_fast_paths_only_at_inference(region_model, monkeypatch):
    model, _ = region_model
    calls = {"fold": 0, "sdpa": 0, "pool": 0}

    def counting(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(projection, "folded_fc_mlp", counting("fold", projection.folded_fc_mlp))
    monkeypatch.setattr(fragment, "post_ln_layer_sdpa", counting("sdpa", fragment.post_ln_layer_sdpa))
    monkeypatch.setattr(head_module, "hrem_pool_unpadded", counting("pool", head_module.hrem_pool_unpadded))
    batch = ImageBatch.from_regions(*_regions([9, 9]))
    with torch.enable_grad():
        model.encode_image(batch)
        model.train()
        model.encode_image(batch)
        model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model.encode_image(batch)                                    # autocast: fold and SDPA stay off
    assert calls == {"fold": 0, "sdpa": 0, "pool": 1}
    with torch.inference_mode():
        model.encode_image(batch)
    assert calls == {"fold": 1, "sdpa": 1, "pool": 2}


# ---------------------------------------------------------------- whole image encoder

@pytest.mark.parametrize("lengths", [[9, 9, 9], [9, 1, 4]])
def test_region_embeddings_match_naive_and_autograd_path(region_model, lengths):
    model, _ = region_model
    regions, lengths = _regions(lengths)
    fast, plain = _fast_and_autograd(model, ImageBatch.from_regions(regions, lengths))
    want = naive_region_embedding(model.img_enc, regions, lengths)
    torch.testing.assert_close(fast, want, atol=ATOL, rtol=0)
    torch.testing.assert_close(fast, plain, atol=ATOL, rtol=0)


def test_fast_path_follows_load_state_dict_and_training(region_model):
    model, _ = region_model
    regions, lengths = _regions([9, 3, 7])
    batch = ImageBatch.from_regions(regions, lengths)
    with torch.inference_mode():
        before = model.encode_image(batch)

    _randomise_(model.img_enc, seed=2)                              # new weights and BatchNorm statistics
    with torch.inference_mode():
        loaded = model.encode_image(batch)
    assert (loaded - before).abs().max() > 1e-2
    torch.testing.assert_close(loaded, naive_region_embedding(model.img_enc, regions, lengths), atol=ATOL,
                               rtol=0)

    model.train()                                                   # one step: weights and running stats move
    optimizer = torch.optim.SGD(model.img_enc.parameters(), lr=0.5)
    model.img_enc(*_regions([9, 9, 5, 8], seed=3)).embedding.pow(2).sum().backward()
    optimizer.step()
    model.eval()
    with torch.inference_mode():
        trained = model.encode_image(batch)
    assert (trained - loaded).abs().max() > 1e-3
    torch.testing.assert_close(trained, naive_region_embedding(model.img_enc, regions, lengths), atol=ATOL,
                               rtol=0)
    torch.testing.assert_close(trained, _fast_and_autograd(model, batch)[1], atol=ATOL, rtol=0)


def test_state_dict_keys_are_unchanged_by_inference(region_model):
    model, _ = region_model
    before = list(model.state_dict())
    with torch.inference_mode():
        model.encode_image(ImageBatch.from_regions(*_regions([9, 4])))
    assert list(model.state_dict()) == before
    keys = {k for k in before if k.startswith("img_enc.")}
    assert keys == {
        "img_enc.fc.fc.weight", "img_enc.fc.fc.bias",
        "img_enc.fc.mlp.layers.0.weight", "img_enc.fc.mlp.layers.0.bias",
        "img_enc.fc.mlp.layers.1.weight", "img_enc.fc.mlp.layers.1.bias",
        *(f"img_enc.fc.mlp.bns.{i}.{name}" for i in (0, 1)
          for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")),
        *(f"img_enc.aggr.layers.0.{name}" for name in (
            "self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight",
            "self_attn.out_proj.bias", "linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias",
            "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias")),
    }


def test_text_and_grid_embeddings_match_autograd_path(region_model):
    model, card = region_model
    tokens = create_tokenizer(card)(["a red circle", "two blue squares left of a green triangle", "x"])
    with torch.inference_mode():
        fast = model.encode_text(tokens)                            # padded captions: masked SDPA + exclusion
    with torch.enable_grad():
        plain = model.encode_text(tokens).detach()
    torch.testing.assert_close(fast, plain, atol=ATOL, rtol=0)

    torch.manual_seed(0)
    grid = create_model(load_card("tiny")).eval()
    fast, plain = _fast_and_autograd(grid, ImageBatch.from_pixels(torch.randn(2, 3, 64, 64)))
    torch.testing.assert_close(fast, plain, atol=ATOL, rtol=0)


def test_unpadded_pool_promotes_like_the_reference():
    tokens = torch.randn(2, 5, 4).to(torch.bfloat16)
    related = torch.randn(2, 5, 4)
    with torch.inference_mode():
        got = pooling.hrem_pool_unpadded(tokens, related, 0.8, 2)
    want = 0.8 * tokens.float().topk(2, dim=1).values.mean(dim=1) + 0.2 * related.mean(dim=1)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
