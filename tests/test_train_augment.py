"""Caption noise, region drop and the training collate, against simple references written here."""
import pytest
import torch

from hrem.data.augment import CaptionAugmenter, drop_regions, group_words, pad_token_rows
from hrem.data.collate import TrainCollate, collate_images
from hrem.data.datasets import CaptionItem
from hrem.data.tokenize import TextTokenizer
from hrem.utils.paths import packaged_minilm_dir


@pytest.fixture(scope="module")
def tokenizer():
    return TextTokenizer(packaged_minilm_dir())


def test_group_words_joins_continuations():
    assert group_words(["a", "he", "##xa", "##gon", ",", "##x"]) == [["a"], ["he", "##xa", "##gon"], [",", "##x"]]
    assert group_words(["##odd", "b"]) == [["##odd"], ["b"]]


def test_no_noise_equals_the_tokenizer(tokenizer):
    texts = ["A red circle left of the blue-ish hexagons!", "two stars", "an unbelievably long word: pneumonoultra"]
    augmented = CaptionAugmenter(tokenizer, 0.0)(texts)
    plain = tokenizer(texts)
    assert torch.equal(augmented.input_ids, plain.input_ids)
    assert torch.equal(augmented.attention_mask, plain.attention_mask)


def test_noise_shares_follow_the_reference(tokenizer):
    torch.manual_seed(0)
    aug = CaptionAugmenter(tokenizer, 1.0)   # every word altered: 50% mask, 10% replace, 40% delete
    mask_id = aug.vocab["[MASK]"]
    words = "red circle left of a blue square and green star".split()   # 10 one-piece words
    counts = {"mask": 0, "replace": 0, "delete": 0}
    for _ in range(400):
        ids = aug.augment_ids(" ".join(words))   # P(all 10 deleted) = 0.4**10: negligible
        counts["delete"] += len(words) - len(ids)
        counts["mask"] += sum(1 for i in ids if i == mask_id)
        counts["replace"] += sum(1 for i in ids if i != mask_id)
    total = sum(counts.values())
    assert total == 4000
    assert counts["mask"] / total == pytest.approx(0.5, abs=0.03)
    assert counts["replace"] / total == pytest.approx(0.1, abs=0.02)
    assert counts["delete"] / total == pytest.approx(0.4, abs=0.03)


def test_partial_noise_rate(tokenizer):
    torch.manual_seed(2)
    aug = CaptionAugmenter(tokenizer, 0.2)
    text = "red circle left of a blue square and green star"
    plain = tokenizer([text]).input_ids[0, 1:-1].tolist()
    unchanged = sum(aug.augment_ids(text) == plain for _ in range(1000)) / 1000
    assert unchanged == pytest.approx(0.8 ** 10, abs=0.035)   # each of 10 words kept with p = 0.8


def test_masked_words_mask_every_piece_and_keep_specials(tokenizer):
    torch.manual_seed(1)
    aug = CaptionAugmenter(tokenizer, 0.3)
    batch = aug(["hexagons hexagons hexagons hexagons", "a star"])
    cls, sep, pad = aug.vocab["[CLS]"], aug.vocab["[SEP]"], aug.vocab["[PAD]"]
    for row, mask in zip(batch.input_ids, batch.attention_mask):
        ids = row[mask.bool()].tolist()
        assert ids[0] == cls and ids[-1] == sep
        assert all(i == pad for i in row[~mask.bool()].tolist())


def test_pad_token_rows():
    batch = pad_token_rows([[1, 2, 3], [4]], pad_id=0)
    assert batch.input_ids.tolist() == [[1, 2, 3], [4, 0, 0]]
    assert batch.attention_mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def test_drop_regions_rate_and_minimum():
    torch.manual_seed(0)
    regions = torch.arange(36.0)[:, None].repeat(1, 4)
    kept = [drop_regions(regions, 0.2).shape[0] for _ in range(400)]
    assert sum(kept) / (400 * 36) == pytest.approx(0.8, abs=0.02)
    out = drop_regions(regions, 0.2)
    assert set(out[:, 0].tolist()) <= set(range(36))          # rows are kept whole and in order
    assert out[:, 0].tolist() == sorted(out[:, 0].tolist())
    assert drop_regions(regions[:3], 0.999).shape[0] >= 1


def test_collate_images_pads_regions():
    batch = collate_images([torch.ones(3, 2), torch.ones(5, 2) * 2])
    assert batch.regions.shape == (2, 5, 2) and batch.lengths.tolist() == [3, 5]
    assert batch.regions[0, 3:].abs().sum() == 0
    pixels = collate_images([torch.zeros(3, 8, 8), torch.ones(3, 8, 8)])
    assert pixels.pixels.shape == (2, 3, 8, 8) and pixels.regions is None


def test_train_collate_sorts_longest_first_and_keeps_pairs(tokenizer):
    items = [CaptionItem(torch.full((2, 3), float(i)), text, i) for i, text in
             enumerate(["a star", "a very long caption about many red circles", "a blue square here"])]
    batch = TrainCollate(tokenizer)(items)
    lengths = batch.texts.lengths.tolist()
    assert lengths == sorted(lengths, reverse=True)
    assert batch.image_rows.tolist() == [1, 2, 0]
    for k, row in enumerate(batch.image_rows.tolist()):   # the image moved with its caption
        assert float(batch.images.regions[k, 0, 0]) == row
