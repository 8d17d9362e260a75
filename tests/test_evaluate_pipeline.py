"""Evaluation pipeline pieces: length-sorted caption encoding, encode-each-image-once, sims, protocols,
format detection — each against a naive reference written here."""
import numpy as np
import pytest
import torch
from test_train_standins import BagModel, synthetic_precomp_split

from hrem.data.datasets import ImageDataset, ImageLoader
from hrem.data.sources import detect_input
from hrem.data.tokenize import TextTokenizer
from hrem.eval import evaluate_retrieval
from hrem.factory import create_model, create_tokenizer, load_card
from hrem.pipeline.encode import EncodeOptions, encode_captions, encode_images, length_sorted_batches
from hrem.pipeline.evaluate import SplitEvaluator, default_protocols, resolve_protocols, save_sims
from hrem.utils.paths import packaged_minilm_dir

OPTIONS = EncodeOptions(device=torch.device("cpu"), batch_size=7)


def test_length_sorted_batches_cover_all_longest_first():
    lengths = [3, 9, 1, 9, 4, 7, 2]
    batches = length_sorted_batches(lengths, 3)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(7))
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
    assert [len(b) for b in batches] == [3, 3, 1]


def test_sorted_caption_encoding_equals_one_by_one():
    torch.manual_seed(0)
    card = load_card("tiny")
    model = create_model(card).eval()
    tokenizer = create_tokenizer(card)
    captions = synthetic_precomp_split(n_images=6).captions + ["a much longer caption with many more words in it"]
    batched = encode_captions(model, captions, tokenizer, OPTIONS)
    with torch.inference_mode():
        single = np.stack([model.encode_text(tokenizer([c]))[0].numpy() for c in captions])
    np.testing.assert_allclose(batched, single, atol=2e-5)


class CountingModel(BagModel):
    def __init__(self):
        super().__init__()
        self.images_seen = 0

    def encode_image(self, batch, normalize=True):
        self.images_seen += len(batch)
        return super().encode_image(batch, normalize)


def test_each_image_encoded_once_and_scores_match_brute_force():
    split = synthetic_precomp_split(n_images=30)
    model = CountingModel().eval()
    tokenizer = TextTokenizer(packaged_minilm_dir())
    evaluator = SplitEvaluator(split, None, tokenizer, OPTIONS, ("all",))
    img, cap = evaluator.embed(model)
    assert model.images_seen == 30 and img.shape == (30, 16) and cap.shape == (150, 16)
    with torch.inference_mode():   # brute force: the reference's way, every caption's image encoded again
        loader = ImageLoader(split, None)
        from hrem.data.collate import collate_images
        ref_img = model.encode_image(collate_images([loader(r) for r in range(30)])).numpy()
    np.testing.assert_allclose(img, ref_img, atol=1e-6)
    flat = evaluator(model)
    assert flat["protocol"] == "all"
    assert flat["rsum"] == pytest.approx(evaluate_retrieval(img, cap, split.caption_image, ("all",))["all"]["rsum"])


def test_encode_images_with_workers_keeps_row_order():
    split = synthetic_precomp_split(n_images=20)
    model = BagModel().eval()
    dataset = ImageDataset(split, ImageLoader(split, None))
    one = encode_images(model, dataset, OPTIONS)
    two = encode_images(model, dataset, EncodeOptions(device=torch.device("cpu"), batch_size=3, workers=2))
    np.testing.assert_allclose(one, two, atol=1e-6)


def test_save_sims_blockwise_equals_matmul(tmp_path):
    rng = np.random.default_rng(0)
    img, cap = rng.normal(size=(13, 8)).astype(np.float32), rng.normal(size=(40, 8)).astype(np.float32)
    save_sims(tmp_path / "sims.npy", img, cap, rows_per_block=4)
    np.testing.assert_allclose(np.load(tmp_path / "sims.npy"), img @ cap.T, rtol=1e-5, atol=1e-5)


def test_protocol_choice():
    split = synthetic_precomp_split(n_images=10)
    assert default_protocols(split) == ("all",)
    import dataclasses
    assert default_protocols(dataclasses.replace(split, dataset="f30k")) == ("f30k",)
    coco = dataclasses.replace(split, dataset="coco", image_ids=np.arange(5000))
    assert default_protocols(coco) == ("coco5k", "coco1k")
    assert resolve_protocols(["auto", "all"], split) == ("all",)
    with pytest.raises(ValueError, match="expected some of"):
        resolve_protocols(["coco2k"], split)


def test_detect_input(tmp_path):
    (tmp_path / "p").mkdir()
    np.save(tmp_path / "p" / "test_ims.npy", np.zeros((1, 2, 3), np.float32))
    assert detect_input(tmp_path / "p") == "precomp"
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / "dataset_coco.json").write_text("{}")
    assert detect_input(tmp_path / "k") == "karpathy"
    (tmp_path / "listing.parquet").write_bytes(b"")
    assert detect_input(tmp_path / "listing.parquet") == "listing"
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match=r"expected a \*_precomp folder .* found \['notes.txt'\]"):
        detect_input(tmp_path / "e")
