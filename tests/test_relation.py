"""Instance-level relation: adjacency against naive loops, attention bias, warm-up, criterion wiring."""
import pytest
import torch
import torch.nn.functional as F

import hrem.relation.graph as graph
from hrem.config.base import ConfigError, from_dict
from hrem.config.model import InstanceRelationCard, LossCard
from hrem.losses import build_loss
from hrem.relation.graph import AdjacencyModel, topk_connection, word_region_scores
from hrem.relation.instance import HREMCriterion, graph_attention_bias
from hrem.relation.outputs import TrainOutputs


def _fragments(b=4, n=5, l=7, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    img_tokens, cap_tokens = torch.randn(b, n, d, generator=g), torch.randn(b, l, d, generator=g)
    img_len = torch.tensor([n, 3, n, 2][:b])
    cap_len = torch.tensor([l, 4, 2, 6][:b])
    img_mask = torch.arange(n)[None] < img_len[:, None]
    cap_mask = torch.arange(l)[None] < cap_len[:, None]
    return img_tokens, img_mask, cap_tokens, cap_mask


def _leaky(x):
    return x if x >= 0 else 0.1 * x


def _top_padded(values, k):
    values = sorted(values, reverse=True)[:k]
    return values + [0.0] * (k - len(values))


def _naive_pair(words, regions, k):
    """One caption vs one image with only their valid fragments, in plain Python."""
    s = [[_leaky(float(F.normalize(w, dim=0) @ F.normalize(r, dim=0))) for r in regions] for w in words]
    col_norm = [sum(s[w][r] ** 2 for w in range(len(words))) ** 0.5 for r in range(len(regions))]
    row_norm = [sum(s[w][r] ** 2 for r in range(len(regions))) ** 0.5 for w in range(len(words))]
    row = [max(s[w][r] / max(col_norm[r], 1e-12) for r in range(len(regions))) for w in range(len(words))]
    col = [max(s[w][r] / max(row_norm[w], 1e-12) for w in range(len(words))) for r in range(len(regions))]
    return sum(row) / len(row), _top_padded(row, k), sum(col) / len(col), _top_padded(col, k)


@pytest.mark.parametrize("block", [1 << 24, 40])   # 40 elements forces one caption per block
def test_word_region_scores_match_naive_loops(monkeypatch, block):
    monkeypatch.setattr(graph, "SCORE_BLOCK_ELEMENTS", block)
    img_tokens, img_mask, cap_tokens, cap_mask = _fragments()
    k = 4
    got = word_region_scores(img_tokens, img_mask, cap_tokens, cap_mask, k)
    for t in range(4):
        for i in range(4):
            t2i_mean, t2i_top, i2t_mean, i2t_top = _naive_pair(cap_tokens[t][cap_mask[t]], img_tokens[i][img_mask[i]], k)
            assert got["t2i_mean"][t, i].item() == pytest.approx(t2i_mean, abs=1e-5)
            assert got["i2t_mean"][t, i].item() == pytest.approx(i2t_mean, abs=1e-5)
            assert got["t2i_topk"][t, i].tolist() == pytest.approx(t2i_top, abs=1e-5)
            assert got["i2t_topk"][t, i].tolist() == pytest.approx(i2t_top, abs=1e-5)


def test_topk_connection_keeps_half_of_each_row():
    sim = torch.tensor([[0.9, 0.1, 0.5, 0.3], [0.2, 0.8, 0.7, 0.1], [0.0, 0.0, 1.0, 0.5], [0.4, 0.3, 0.2, 0.6]])
    want = torch.tensor([[1, 0, 1, 0], [0, 1, 1, 0], [0, 0, 1, 1], [1, 0, 0, 1]], dtype=torch.bool)
    assert torch.equal(topk_connection(sim, 0.5), want)


def test_adjacency_blocks_and_attention_bias():
    torch.manual_seed(0)
    img_tokens, img_mask, cap_tokens, cap_mask = _fragments()
    img_emb, cap_emb = F.normalize(torch.randn(4, 6), dim=1), F.normalize(torch.randn(4, 6), dim=1)
    model = AdjacencyModel(threshold=0.5, topk=4)
    connect, relevance, reg = model(img_emb, cap_emb, img_tokens, img_mask, cap_tokens, cap_mask)
    assert connect.shape == relevance.shape == (8, 8)
    assert connect.diagonal().all()                                    # self-loops always connected
    assert torch.equal(connect[:4, :4], topk_connection(img_emb @ img_emb.t(), 0.5) | torch.eye(4, dtype=torch.bool))
    torch.testing.assert_close(relevance[:4, :4], torch.exp(-torch.cdist(img_emb, img_emb)))   # intra-modal
    assert (connect.sum(1) >= 1 + 2).all()                             # itself + half of the other modality
    assert reg.item() >= 0
    bias = graph_attention_bias(connect, relevance, 1.5)
    torch.testing.assert_close(bias[connect], 1.5 * relevance[connect])
    assert torch.isinf(bias[~connect]).all() and (bias[~connect] < 0).all()
    with pytest.raises(ValueError, match="mask_weight"):
        graph_attention_bias(connect, relevance, 0.0)


def test_mask_weight_zero_is_a_config_error():
    with pytest.raises(ConfigError, match="mask_weight"):
        from_dict(InstanceRelationCard, {"mask_weight": 0.0})


def _criterion(warmup=3, enabled=True):
    torch.manual_seed(0)
    relation = InstanceRelationCard(enabled=enabled, heads=2, topk=4)
    loss = LossCard(base="vse", gnn="vse")
    return HREMCriterion(6, relation, warmup, build_loss("vse", loss), build_loss("vse", loss))


def _outputs():
    img_tokens, img_mask, cap_tokens, cap_mask = _fragments()
    img_emb = F.normalize(torch.randn(4, 6), dim=1).requires_grad_(True)
    cap_emb = F.normalize(torch.randn(4, 6), dim=1).requires_grad_(True)
    return TrainOutputs(img_emb, cap_emb, img_tokens, img_mask, cap_tokens, cap_mask)


def test_criterion_warmup_then_graph_terms():
    crit = _criterion(warmup=3)
    out, ids = _outputs(), torch.arange(4)
    before = crit(out, ids, iteration=2)
    assert before["gnn"].item() == 0 and before["reg"].item() == 0
    assert torch.equal(before["loss"], before["base"])
    after = crit(out, ids, iteration=3)
    assert after["gnn"].item() > 0
    torch.testing.assert_close(after["loss"], after["base"] + after["gnn"] + 10.0 * after["reg"])
    after["loss"].backward()
    assert crit.gnn.layers[0].linear1.weight.grad is not None
    assert crit.adj_model.adj_learning.mlp_t2i[0].weight.grad is not None   # trained through reg_loss
    keys = set(crit.state_dict())
    assert "gnn.layers.0.self_attn.in_proj_weight" in keys
    assert {"adj_model.adj_learning.mlp_t2i.0.weight", "adj_model.adj_learning.mlp_i2t.3.bias"} <= keys


def test_disabled_relation_has_no_parameters_and_no_graph():
    crit = _criterion(enabled=False)
    assert len(list(crit.parameters())) == 0
    assert crit(_outputs(), torch.arange(4), iteration=10**6)["gnn"].item() == 0


def test_graph_is_one_sequence_over_the_batch():
    """Enhanced embeddings depend on the other instances (unlike inference embeddings)."""
    crit = _criterion(warmup=0).eval()
    out = _outputs()
    with torch.no_grad():
        img_a, _, _ = crit.enhance(out)
        changed = TrainOutputs(out.img_emb, torch.roll(out.cap_emb, 1, 0), out.img_tokens, out.img_mask,
                               out.cap_tokens, out.cap_mask)
        img_b, _, _ = crit.enhance(changed)
    assert not torch.allclose(img_a, img_b)


def _realistic(seed=0, b=24, n=9, l=11, d=16):
    g = torch.Generator().manual_seed(seed)
    img, cap = torch.randn(b, n, d, generator=g), torch.randn(b, l, d, generator=g)
    img_mask = torch.arange(n)[None] < torch.randint(3, n + 1, (b, 1), generator=g)
    cap_mask = torch.arange(l)[None] < torch.randint(2, l + 1, (b, 1), generator=g)
    return img, img_mask, cap, cap_mask


@pytest.mark.parametrize("compiled", [True, False])
def test_fast_scores_equal_the_reference(monkeypatch, compiled):
    monkeypatch.setenv("HREM_COMPILE", "1" if compiled else "0")
    img, img_mask, cap, cap_mask = _realistic()
    want = graph.word_region_scores_reference(img, img_mask, cap, cap_mask, 4)
    got = word_region_scores(img, img_mask, cap, cap_mask, 4)
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-5, atol=1e-6)


def test_bf16_scores_stay_within_tolerance_and_keep_the_graph():
    img, img_mask, cap, cap_mask = _realistic(seed=1, b=48)
    want = graph.word_region_scores_reference(img, img_mask, cap, cap_mask, 4)
    got = word_region_scores(img, img_mask, cap, cap_mask, 4, torch.bfloat16)
    for key in want:   # small everywhere; a caption of two words near zero cosine amplifies a few entries
        error = (got[key] - want[key]).abs()
        assert error.mean() < 2e-3 and error.max() < 0.1, (key, error.mean(), error.max())
    agree = (topk_connection(got["t2i_mean"], 0.5) == topk_connection(want["t2i_mean"], 0.5)).float().mean()
    assert agree > 0.97


def test_score_dtype_auto_follows_the_cpu(monkeypatch):
    import hrem.utils.device as device

    monkeypatch.setattr(device, "cpu_has_fast_bf16", lambda: True)
    assert device.score_dtype("auto", "cpu") == torch.bfloat16
    monkeypatch.setattr(device, "cpu_has_fast_bf16", lambda: False)
    assert device.score_dtype("auto", "cpu") == torch.float32 and device.score_dtype("bf16", "cpu") == torch.bfloat16
