"""Readers on good files and on broken files written here; errors must name the file, expected and found."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hrem.data.readers import expand_sentences, read_karpathy, read_mask, read_precomp, read_refs


# ---------------------------------------------------------------- precomp
def _precomp(folder: Path, split: str = "test", n: int = 3, captions: int | None = None, ids: int | None = None,
             array: np.ndarray | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / f"{split}_ims.npy", array if array is not None else
            np.arange(n * 4 * 8, dtype=np.float32).reshape(n, 4, 8))
    lines = [f"caption {i} of image {i // 5}" for i in range(5 * n if captions is None else captions)]
    (folder / f"{split}_caps.txt").write_text("\n".join(lines) + "\n")
    if ids is not None:
        (folder / f"{split}_ids.txt").write_text("\n".join(str(100 + i) for i in range(ids)) + "\n")
    return folder


def test_precomp_reads_memmap_and_maps_captions(tmp_path):
    split = read_precomp(_precomp(tmp_path, ids=3), "test")
    assert isinstance(split.features, np.memmap) and split.features.shape == (3, 4, 8)
    assert split.features.dtype == np.float32 and float(split.features[2, 3, 7]) == 95.0
    assert len(split.captions) == 15 and split.captions[7] == "caption 7 of image 1"
    assert split.caption_image.tolist() == [i // 5 for i in range(15)]
    assert split.image_ids.tolist() == [100, 101, 102] and split.source == tmp_path


def test_precomp_dev_alias_and_default_ids(tmp_path):
    split = read_precomp(_precomp(tmp_path, split="dev", n=2), "val")
    assert split.image_ids.tolist() == [0, 1] and split.caption_image.dtype == np.int64


def test_precomp_wrong_caption_count_names_everything(tmp_path):
    _precomp(tmp_path, n=3, captions=16)
    with pytest.raises(ValueError) as err:
        read_precomp(tmp_path, "test")
    message = str(err.value)
    assert "test_caps.txt" in message and "expected 15 captions" in message and "found 16" in message
    assert "3 images in test_ims.npy" in message


@pytest.mark.parametrize("array, expected", [
    (np.zeros((3, 8), dtype=np.float32), "3-D"),
    (np.zeros((3, 4, 8), dtype=np.int32), "float"),
])
def test_precomp_bad_array(tmp_path, array, expected):
    _precomp(tmp_path, array=array)
    with pytest.raises(ValueError, match=expected) as err:
        read_precomp(tmp_path, "test")
    assert "test_ims.npy" in str(err.value)


def test_precomp_ids_count_and_missing_files(tmp_path):
    _precomp(tmp_path, ids=4)
    with pytest.raises(ValueError, match=r"test_ids.txt: expected 3 image ids .* found 4"):
        read_precomp(tmp_path, "test")
    (tmp_path / "test_caps.txt").unlink()
    with pytest.raises(FileNotFoundError, match="test_caps.txt"):
        read_precomp(tmp_path, "test")
    with pytest.raises(ValueError, match=r"unknown precomp split 'bogus'.*\['test'\]"):
        read_precomp(tmp_path, "bogus")


def test_precomp_accepts_one_id_per_caption(tmp_path):
    _precomp(tmp_path, n=2)
    (tmp_path / "test_ids.txt").write_text("\n".join(["7"] * 5 + ["9"] * 5))
    assert read_precomp(tmp_path, "test").image_ids.tolist() == [7, 9]


# ---------------------------------------------------------------- Karpathy JSON
def _karpathy(root: Path, images: list[dict] | None = None, make_files: bool = True) -> Path:
    if images is None:
        images = [{"imgid": i, "filename": f"im{i}.jpg", "filepath": "val2014", "split": split,
                   "sentences": [{"raw": f"image {i} sentence {k}", "sentid": 10 * i + k} for k in range(5 + i % 2)]}
                  for i, split in enumerate(["train", "restval", "val", "test", "test"])]
    if make_files:
        for image in images:
            path = root / image.get("filepath", "") / image["filename"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"not really a jpeg")
    path = root / "dataset_coco.json"
    path.write_text(json.dumps({"dataset": "coco", "images": images}))
    return path


def test_karpathy_reads_split_with_restval_and_dev_alias(tmp_path):
    path = _karpathy(tmp_path)
    train = read_karpathy(path, tmp_path, "train")
    assert train.image_paths == ["val2014/im0.jpg", "val2014/im1.jpg"] and train.image_ids.tolist() == [0, 1]
    assert len(train.captions) == 10          # image 1 has 6 sentences; the first 5 are kept
    assert train.caption_image.tolist() == [0] * 5 + [1] * 5
    assert train.caption_ids.tolist() == [0, 1, 2, 3, 4, 10, 11, 12, 13, 14]
    assert len(read_karpathy(path, tmp_path, "train", captions_per_image=None).captions) == 11
    dev = read_karpathy(path, tmp_path, "dev")
    assert dev.image_paths == ["val2014/im2.jpg"] and dev.root == tmp_path
    assert read_karpathy(path, tmp_path, "test").caption_image.tolist() == [0] * 5 + [1] * 5


def test_karpathy_missing_key_names_image_index(tmp_path):
    images = [{"filename": "a.jpg", "split": "test", "sentences": [{"raw": "x"}] * 5},
              {"filename": "b.jpg", "split": "test"}]
    path = _karpathy(tmp_path, images)
    with pytest.raises(ValueError, match=r"dataset_coco.json: images\[1\]: missing key\(s\) \['sentences'\]"):
        read_karpathy(path, tmp_path, "test")


def test_karpathy_unknown_split_lists_splits(tmp_path):
    path = _karpathy(tmp_path)
    with pytest.raises(ValueError, match=r"unknown split 'testall'.*\['restval', 'test', 'train', 'val'\]"):
        read_karpathy(path, tmp_path, "testall")


def test_karpathy_missing_images_reports_count_and_names(tmp_path):
    path = _karpathy(tmp_path, make_files=False)
    with pytest.raises(FileNotFoundError) as err:
        read_karpathy(path, tmp_path, "test")
    assert "found 2 missing" in str(err.value) and "im3.jpg" in str(err.value) and "dataset_coco.json" in str(err.value)


def test_karpathy_too_few_sentences_and_bad_json(tmp_path):
    images = [{"filename": "a.jpg", "split": "test", "sentences": [{"raw": "only one"}]}]
    path = _karpathy(tmp_path, images)
    with pytest.raises(ValueError, match=r"images\[0\] \(a.jpg\): expected at least 5 sentences, found 1"):
        read_karpathy(path, tmp_path, "test")
    path.write_text('{"images": [')
    with pytest.raises(ValueError, match="dataset_coco.json: expected valid JSON"):
        read_karpathy(path, tmp_path, "test")


# ---------------------------------------------------------------- RefCOCO-style
def _entry(iid=1, mask_id=7, **extra):
    entry = {"iid": iid, "bbox": [1.5, 2.0, 3.0, 4.0], "cat_id": 2, "refs": ["the cat", "left cat"], "mask_id": mask_id}
    entry.update(extra)
    return entry


def _simrec(root: Path, entries: list[dict]) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks" / "refcoco").mkdir(parents=True, exist_ok=True)
    for entry in entries:
        (root / "images" / f"COCO_train2014_{entry['iid']:012d}.jpg").write_bytes(b"x")
        np.save(root / "masks" / "refcoco" / f"{entry['mask_id']}.npy", np.array([[0, 2], [1, 0]], dtype=np.uint8))
    path = root / "refcoco.json"
    path.write_text(json.dumps({"train": entries, "val": entries[:1], "testA": entries[:1]}))
    return path


def test_refs_simrec_layout(tmp_path):
    path = _simrec(tmp_path, [_entry(), _entry(iid=2, mask_id=8)])
    refs = read_refs(path, "train", tmp_path / "images", tmp_path / "masks" / "refcoco")
    assert [r.ref_id for r in refs] == [7, 8] and refs[0].bbox_xywh == (1.5, 2.0, 3.0, 4.0)
    assert refs[1].image_path == tmp_path / "images" / "COCO_train2014_000000000002.jpg"
    assert refs[0].mask_path == tmp_path / "masks" / "refcoco" / "7.npy" and refs[0].category == "2"
    assert read_mask(refs[0].mask_path).tolist() == [[False, True], [True, False]]   # binarised
    assert len(read_refs(path, "dev", tmp_path / "images")) == 1                     # dev -> val
    assert read_refs(path, "val", tmp_path / "images")[0].mask_path is None          # no mask_root given
    assert [s for _, s in expand_sentences(refs)] == ["the cat", "left cat"] * 2


def test_refs_plain_list_with_explicit_paths(tmp_path):
    (tmp_path / "refs").mkdir()
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    (tmp_path / "images" / "000001.png").write_bytes(b"x")
    Image.fromarray(np.full((4, 4), 255, dtype=np.uint8)).save(tmp_path / "masks" / "0000007.png")
    path = tmp_path / "refs" / "test.json"
    path.write_text(json.dumps([_entry(file_name="000001.png", category="star", mask="masks/0000007.png")]))
    (ref,) = read_refs(path, "test", tmp_path / "images")
    assert ref.mask_path == tmp_path / "masks" / "0000007.png" and ref.category == "star" and ref.cat_id == 2
    assert read_mask(ref.mask_path).all()


@pytest.mark.parametrize("bad, expected", [
    ({"bbox": [1, 2, 0, 4]}, r"entry 1\.bbox: expected 4 finite numbers .* found \[1, 2, 0, 4\]"),
    ({"bbox": [1, 2, 3]}, r"entry 1\.bbox: expected 4 finite numbers"),
    ({"refs": []}, r"entry 1\.refs: expected a non-empty list"),
    ({"refs": ["ok", "  "]}, r"entry 1\.refs: expected a non-empty list"),
])
def test_refs_bad_entries(tmp_path, bad, expected):
    path = _simrec(tmp_path, [_entry(), _entry(iid=2, mask_id=8, **bad)])
    with pytest.raises(ValueError, match=expected) as err:
        read_refs(path, "train", tmp_path / "images")
    assert "refcoco.json" in str(err.value)


def test_refs_missing_key_missing_mask_and_unknown_split(tmp_path):
    entry = _entry()
    del entry["mask_id"]
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"val": [entry]}))
    with pytest.raises(ValueError, match=r"r.json: entry 0: missing key\(s\) \['mask_id'\]"):
        read_refs(path, "val", tmp_path, check_files=False)
    with pytest.raises(ValueError, match=r"unknown split 'testB'.*\['val'\]"):
        read_refs(path, "testB", tmp_path)
    path = _simrec(tmp_path, [_entry()])
    (tmp_path / "masks" / "refcoco" / "7.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"expected all 1 mask files to exist, found 1 missing: .*7.npy"):
        read_refs(path, "train", tmp_path / "images", tmp_path / "masks" / "refcoco")


# ---------------------------------------------------------------- on a generated ShapesRef folder
def test_readers_on_generated_shapesref(tmp_path):
    from hrem.data.shapes import ShapesRefConfig, generate_shapesref

    root = tmp_path / "ds"
    generate_shapesref(root, ShapesRefConfig(train=3, dev=2, test=2, size=64, seed=1))
    test = read_karpathy(root / "dataset_shapesref.json", root, "test")
    assert test.image_ids.tolist() == [5, 6] and test.image_paths == ["images/000005.png", "images/000006.png"]
    refs = read_refs(root / "refs" / "val.json", "dev", root / "images")
    assert {r.image_id for r in refs} == {3, 4}
    for ref in refs:
        mask = read_mask(ref.mask_path)
        ys, xs = np.nonzero(mask)
        assert (xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()) == ref.bbox_xywh
        assert ref.ref_id // 10 == ref.image_id and 1 <= len(ref.sentences) <= 3
