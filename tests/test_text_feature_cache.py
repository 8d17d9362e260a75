"""FrozenFeatureCache: same states as running the backbone, each caption computed once, LRU bound,
usable for training after inference-mode lookups; HFTextBackbone refuses it for a trainable backbone."""
import pytest
import torch

from hrem.encoders.feature_cache import FrozenFeatureCache
from hrem.factory import create_model, load_card


class CountingBackbone:
    """A context-dependent toy backbone (prefix sums of embedded ids) that counts the captions it sees."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.table = torch.randn(50, 6)
        self.rows_seen = 0

    def __call__(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        self.rows_seen += ids.shape[0]
        emb = self.table[ids] * mask[..., None]
        return emb.cumsum(dim=1) + 0.5 * mask.sum(dim=1, keepdim=True)[..., None]


def _batch(captions: list[list[int]], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.zeros(len(captions), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, caption in enumerate(captions):
        ids[row, : len(caption)] = torch.tensor(caption)
        mask[row, : len(caption)] = 1
    return ids, mask


def test_states_match_the_backbone_and_each_caption_runs_once():
    backbone = CountingBackbone()
    cache = FrozenFeatureCache(max_entries=100)
    ids, mask = _batch([[1, 2, 3], [4, 5], [1, 2, 3], [7]], width=5)
    reference = backbone(ids, mask)
    backbone.rows_seen = 0
    first = cache.lookup(ids, mask, backbone)
    valid = mask.bool()
    torch.testing.assert_close(first[valid], reference[valid])
    assert torch.all(first[~valid] == 0)
    assert backbone.rows_seen == 3 and cache.misses == 4 and cache.hits == 0 and len(cache) == 3

    ids2, mask2 = _batch([[7], [4, 5], [9, 9, 9, 9]], width=4)   # another padding width, one new caption
    second = cache.lookup(ids2, mask2, backbone)
    torch.testing.assert_close(second[mask2.bool()], backbone(ids2, mask2)[mask2.bool()])
    assert cache.hits == 2 and cache.misses == 5


def test_least_recently_used_entries_are_evicted():
    backbone = CountingBackbone()
    cache = FrozenFeatureCache(max_entries=2)
    for caption in ([1], [2], [1], [3]):       # [2] is the least recently used when [3] arrives
        cache.lookup(*_batch([caption], 1), backbone)
    assert len(cache) == 2
    backbone.rows_seen = 0
    cache.lookup(*_batch([[1], [3]], 1), backbone)
    assert backbone.rows_seen == 0
    cache.lookup(*_batch([[2]], 1), backbone)
    assert backbone.rows_seen == 1
    with pytest.raises(ValueError, match="max_entries"):
        FrozenFeatureCache(0)


def test_states_cached_in_inference_mode_train_a_following_layer():
    backbone = CountingBackbone()
    cache = FrozenFeatureCache(max_entries=10)
    ids, mask = _batch([[1, 2], [3]], width=2)
    with torch.inference_mode():
        cache.lookup(ids, mask, backbone)
    layer = torch.nn.Linear(6, 3)
    layer(cache.lookup(ids, mask, backbone)).sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


def test_caption_encoder_with_cache_equals_without_and_needs_a_frozen_backbone():
    trainable = create_model(load_card("tiny"))
    with pytest.raises(ValueError, match="frozen"):
        trainable.txt_enc.enable_feature_cache(10)
    torch.manual_seed(0)
    model = create_model(load_card("tiny", overrides={"text.freeze": True})).eval()
    ids, mask = _batch([[101, 1037, 2417, 102], [101, 2417, 102]], width=4)
    with torch.inference_mode():
        plain = model.txt_enc(ids, mask).embedding
        model.txt_enc.enable_feature_cache(10)
        cached = model.txt_enc(ids, mask).embedding
        again = model.txt_enc(ids, mask).embedding
    torch.testing.assert_close(cached, plain, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(again, plain, atol=1e-5, rtol=1e-5)
    assert model.txt_enc.feature_cache.hits == 2


def test_cache_file_round_trip_and_identity(tmp_path):
    import torch

    from hrem.encoders.feature_cache import FrozenFeatureCache

    calls = []

    def backbone(ids, mask):
        calls.append(ids.shape[0])
        return torch.arange(ids.numel() * 3, dtype=torch.float32).view(ids.shape[0], ids.shape[1], 3)

    ids = torch.tensor([[101, 5, 6, 102, 0], [101, 7, 102, 0, 0]])
    cache = FrozenFeatureCache(10)
    first = cache.lookup(ids, (ids != 0).long(), backbone)
    cache.save(tmp_path / "c.safetensors", "sha-a")
    again = FrozenFeatureCache(10)
    assert again.load(tmp_path / "c.safetensors", "sha-a") == 2
    assert torch.equal(again.lookup(ids, (ids != 0).long(), backbone), first) and calls == [2]
    with pytest.raises(ValueError, match="another --text-cache"):
        FrozenFeatureCache(10).load(tmp_path / "c.safetensors", "sha-b")
