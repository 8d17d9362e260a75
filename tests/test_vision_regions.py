"""The region-selection rule shared by every detector (hrem.vision.regions), against a naive loop."""
import pytest
import torch

from hrem.vision.regions import RegionSet, fill_after_nms


def _naive_fill(scores, keep, count):
    order = list(keep)
    for i in sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i)):
        if i not in order:
            order.append(i)
    return order[:count]


@pytest.mark.parametrize("kept,count", [(5, 3), (3, 3), (2, 6), (0, 4), (4, 20)])
def test_fill_after_nms_matches_naive(kept, count):
    g = torch.Generator().manual_seed(kept * 7 + count)
    scores = torch.rand(10, generator=g)
    keep = torch.argsort(scores, descending=True)[torch.randperm(10, generator=g)[:kept]]
    keep = keep[torch.argsort(scores[keep], descending=True)]
    got = fill_after_nms(scores, keep, count).tolist()
    assert got == _naive_fill(scores, keep.tolist(), count)
    assert len(got) == min(count, 10) and len(set(got)) == len(got)


def test_region_set_checks_shapes():
    RegionSet(torch.zeros(3, 4), torch.zeros(3), torch.zeros(3, 8))
    with pytest.raises(ValueError, match="expected boxes"):
        RegionSet(torch.zeros(3, 4), torch.zeros(2), torch.zeros(3, 8))
