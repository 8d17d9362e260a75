"""Length-chunked text backbone: same states at every real token and the same gradients as one padded
batch (reference: the plain backbone call), zeros at padding; falls back when chunking cannot help or the
mask is not right-padded."""
from __future__ import annotations

import pytest
import torch

from hrem.encoders.length_chunks import is_right_padded, plan_chunks, run_length_chunked
from hrem.encoders.text import HFTextBackbone
from hrem.utils.paths import packaged_minilm_dir

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return HFTextBackbone(packaged_minilm_dir(), pretrained=False, config_overrides=TINY).eval()


def _batch(rows=64, width=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, width + 1, (rows,), generator=g)
    lengths[5] = width
    mask = (torch.arange(width)[None] < lengths[:, None]).long()
    ids = torch.randint(1000, 2000, (rows, width), generator=g) * mask
    return ids, mask


def test_states_and_gradients_equal_one_padded_batch(backbone):
    ids, mask = _batch()
    assert plan_chunks(mask.sum(1)) is not None          # the test exercises the chunked path
    plain = backbone._bert_states(ids, mask)
    chunked = backbone._backbone_states(ids, mask)
    real = mask.bool()
    torch.testing.assert_close(chunked[real], plain[real], rtol=1e-5, atol=1e-5)
    assert torch.count_nonzero(chunked[~real]) == 0
    weights = torch.randn(plain.shape, generator=torch.Generator().manual_seed(1)) * mask[..., None]
    grads = []
    for fn in (backbone._bert_states, backbone._backbone_states):
        backbone.zero_grad()
        (fn(ids, mask) * weights).sum().backward()
        grads.append([p.grad.clone() for p in backbone.parameters() if p.grad is not None])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_no_chunks_when_small_or_uniform():
    assert plan_chunks(torch.full((128,), 20)) is None               # nothing to save
    assert plan_chunks(torch.arange(1, 17)) is None                  # too few rows for two chunks
    chunks = plan_chunks(torch.tensor([30] + [5] * 63))
    assert chunks is not None and sorted(torch.cat(chunks).tolist()) == list(range(64))


def test_left_padded_mask_falls_back_to_the_plain_call(backbone):
    ids, mask = _batch()
    flipped_mask, flipped_ids = mask.flip(1), ids.flip(1)
    assert not is_right_padded(flipped_mask)
    calls = []
    out = run_length_chunked(lambda i, m: calls.append(i.shape) or backbone._bert_states(i, m), flipped_ids,
                             flipped_mask)
    assert calls == [flipped_ids.shape] and out.shape[:2] == flipped_ids.shape
