"""The one input layer (hrem.data.sources, hrem.data.splits): formats, split names, row ranges, image-root
rules, and training / evaluation reading the same sources the embed job reads."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from test_embed_support import make_listing, make_precomp, make_run

from hrem.data.datasets import ImageLoader, open_retrieval_split
from hrem.data.sources import ImageRefused, join_under_root, key_problem, open_sources, resolve_image
from hrem.data.splits import canonical_split, karpathy_splits, precomp_split, refs_file_split, refs_splits
from hrem.pipeline.embed import EmbedConfig, run_embed
from hrem.store import read_failures


def test_split_names_have_one_table():
    assert [canonical_split(s) for s in ("val", "dev", "test", "train")] == ["dev", "dev", "test", "train"]
    assert karpathy_splits("dev") == karpathy_splits("val") == ("val",)
    assert karpathy_splits("train") == ("train", "restval")
    assert precomp_split("val") == "dev" and precomp_split("testall") == "testall"
    assert refs_splits("dev") == ("val", "dev") and refs_file_split("dev") == "val"


@pytest.mark.parametrize("key", ["/etc/passwd", "../outside.png", "imgs/../../x.png", "a\\..\\..\\b.png", "", None])
def test_bad_keys_are_refused_without_touching_disk(tmp_path, key):
    assert key_problem(key) is not None
    with pytest.raises(ImageRefused):
        join_under_root(tmp_path, key)


def test_resolve_image_refuses_symlinks_out_of_the_root(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "secret.png"
    root.mkdir()
    outside.write_bytes(b"x")
    (root / "ok.png").write_bytes(b"x")
    os.symlink(outside, root / "link.png")
    assert resolve_image(root, "ok.png") == (root / "ok.png").resolve()
    with pytest.raises(ImageRefused, match="outside the image root"):
        resolve_image(root, "link.png")
    with pytest.raises(ImageRefused, match="not a regular file"):
        resolve_image(root, "missing.png")


def test_listing_rows_read_by_range_with_problems(tmp_path):
    listing = make_listing(tmp_path / "data", 6)
    frame = pd.read_csv(listing)
    frame.loc[1, "image"] = "/etc/hostname"
    frame.loc[4, "image"] = "../imgs/0004.png"
    frame.to_csv(listing, index=False)
    images = open_sources(listing)["images"]
    part = images.read(1, 5)
    assert part.ids.tolist() == [1001, 1002, 1003, 1004]
    assert set(part.problems) == {0, 3} and part.payload[0] is None and part.payload[3] is None
    assert part.payload[1] == str(tmp_path / "data" / "imgs" / "0002.png")


def test_embed_records_refused_keys_as_failures(tmp_path):
    run = make_run(tmp_path / "run")
    listing = make_listing(tmp_path / "data", 5)
    frame = pd.read_csv(listing)
    frame.loc[2, "image"] = "/etc/hostname"
    frame.to_csv(listing, index=False)
    run_embed(EmbedConfig(data=str(listing), model=str(run), out=str(tmp_path / "emb"), workers=0, device="cpu",
                          modalities=("images",)), show_progress=False)
    failures = read_failures(tmp_path / "emb").to_pandas()
    assert failures.source_index.tolist() == [2] and "absolute path" in failures.reason[0]


def test_training_split_from_a_listing_maps_captions_to_image_rows(tmp_path):
    listing = make_listing(tmp_path / "data", 4)
    frame = pd.read_csv(listing)
    frame["image_id"] = [1003, 1002, 1001, 1000]       # each caption describes another row's image
    frame.to_csv(listing, index=False)
    split = open_retrieval_split(listing, "test")
    assert split.format == "images" and split.num_images == 4 and split.caption_image.tolist() == [3, 2, 1, 0]
    assert split.captions == frame.caption.tolist()
    assert split.image_files[2] == str(tmp_path / "data" / "imgs" / "0002.png")


def test_training_refuses_refused_keys_and_unknown_image_ids(tmp_path):
    listing = make_listing(tmp_path / "data", 4)
    frame = pd.read_csv(listing)
    frame.loc[0, "image"] = "../x.png"
    frame.to_csv(listing, index=False)
    with pytest.raises(ValueError, match=r"1 image\(s\) cannot be read.*relative to the image root"):
        open_retrieval_split(listing, "test")
    frame = pd.read_csv(make_listing(tmp_path / "d2", 3))
    frame["image_id"] = [1000, 1001, 7]
    frame.to_csv(tmp_path / "d2" / "listing.csv", index=False)
    with pytest.raises(ValueError, match=r"name an image id that is not in the input.*\[7\]"):
        open_retrieval_split(tmp_path / "d2" / "listing.csv", "test")


def test_precomp_split_aliases_and_loader(tmp_path):
    folder = make_precomp(tmp_path / "p_precomp", 3)
    (folder / "dev_ims.npy").write_bytes((folder / "test_ims.npy").read_bytes())
    (folder / "dev_caps.txt").write_text((folder / "test_caps.txt").read_text())
    for name in ("dev", "val"):
        split = open_retrieval_split(folder, name)
        assert split.format == "precomp" and split.dataset == "p" and split.num_images == 3
        row = ImageLoader(split, None)(1)
        np.testing.assert_array_equal(row.numpy(), np.load(folder / "dev_ims.npy")[1])
