"""Resource limits and rough edges: decompression bombs, card ranges, a full disk, truncated weights,
corrupt images and convert-checkpoint over an existing run folder. Real files throughout (PNG files on
disk, tiny random run directories, a real tmpfs for the full disk)."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import pickle
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hrem.checkpoint import load_run, save_run
from hrem.cli import main
from hrem.cli.os_errors import describe_os_error
from hrem.config.base import ConfigError
from hrem.factory import create_model, list_models, load_card
from hrem.utils.files import atomic_path
from hrem.utils.images import BUDGET_ENV, ImageTooLarge, ImageUnreadable, load_image_file
from hrem.utils.paths import ASSETS_DIR

SIDE = 13000  # 169 M pixels, ~160 KB as a constant PNG


@pytest.fixture(scope="session")
def huge_png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bomb") / "huge.png"
    Image.new("L", (SIDE, SIDE)).save(path)  # < 1 s, ~170 MB briefly, 164 KB on disk
    return path


@pytest.fixture(scope="module")
def grounding_run(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    card = load_card("mcn-tiny")
    run = tmp_path_factory.mktemp("ground") / "run"
    save_run(run, create_model(card), card)
    return run


def _scene(path: Path, size: tuple[int, int] = (64, 48)) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


# 1. memory bombs -----------------------------------------------------------------------------------------

def test_huge_image_is_refused_from_its_header(huge_png):
    start = time.perf_counter()
    with pytest.raises(ImageTooLarge, match=rf"{huge_png.name}: image of 13000 x 13000 = 169,000,000 pixels "
                                            r"exceeds the decoding budget of 40,000,000"):
        load_image_file(huge_png)
    assert time.perf_counter() - start < 0.5  # nothing decoded (decoding takes seconds and 0.5 GB)


def test_image_too_large_survives_pickling_with_its_fields(huge_png):
    # Errors raised in Ray or DataLoader workers reach the parent pickled.
    with pytest.raises(ImageTooLarge) as info:
        load_image_file(huge_png)
    copy = pickle.loads(pickle.dumps(info.value))
    assert (str(copy), copy.size, copy.budget) == (str(info.value), info.value.size, info.value.budget)
    assert copy.size is not None


def test_budget_is_overridable(tmp_path, monkeypatch):
    small = _scene(tmp_path / "s.png")
    assert load_image_file(small).size == (64, 48)
    with pytest.raises(ImageTooLarge, match="3,072 pixels exceeds the decoding budget of 1,000"):
        load_image_file(small, max_pixels=1000)
    monkeypatch.setenv(BUDGET_ENV, "3000")
    with pytest.raises(ImageTooLarge, match="budget of 3,000 pixels"):
        load_image_file(small)
    monkeypatch.setenv(BUDGET_ENV, "lots")
    with pytest.raises(ValueError, match=rf"\${BUDGET_ENV}: expected a positive integer"):
        load_image_file(small)


def test_pil_decompression_bomb_error_becomes_image_too_large(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL raises at twice its limit, inside open()
    monkeypatch.setenv(BUDGET_ENV, str(10 ** 6))
    with pytest.raises(ImageTooLarge, match="s.png"):
        load_image_file(_scene(tmp_path / "s.png"))


def test_every_image_decoder_applies_the_budget(huge_png):
    from hrem.data.datasets import ImageLoader, RetrievalSplit
    from hrem.data.images import ImagePreprocessor
    from hrem.vision.preprocess import LetterboxPreprocessor

    grid = ImagePreprocessor(64, [0.5] * 3, [0.25] * 3)
    split = RetrievalSplit(format="images", split="test", dataset="x", source=huge_png.parent, captions=["c"],
                           caption_image=np.zeros(1, np.int64), image_ids=np.zeros(1, np.int64),
                           image_files=(str(huge_png),))
    for decode in (grid, LetterboxPreprocessor(64), lambda p: ImageLoader(split, grid)(0)):
        with pytest.raises(ImageTooLarge, match="169,000,000 pixels"):
            decode(huge_png)


def test_embed_records_a_failure_row_for_a_huge_image(tmp_path, huge_png):
    from test_embed_support import make_listing, make_run

    from hrem.store import read_failures

    listing = make_listing(tmp_path / "data", 4)
    shutil.copy(huge_png, tmp_path / "data" / "imgs" / "0002.png")
    run = make_run(tmp_path / "run")
    assert main(["embed", "--data", str(listing), "--model", str(run), "--out", str(tmp_path / "emb"),
                 "--workers", "0", "--device", "cpu", "--no-progress"]) == 0
    failures = read_failures(tmp_path / "emb").to_pylist()
    assert len(failures) == 1 and "0002.png" in json.dumps(failures[0])
    assert "169,000,000 pixels exceeds the decoding budget" in json.dumps(failures[0])


def test_ground_refuses_a_huge_image_by_name(grounding_run, huge_png, capsys):
    code = main(["ground", "--model", str(grounding_run), "--image", str(huge_png), "--text", "the circle",
                 "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert str(huge_png) in err and "169,000,000 pixels" in err and "40,000,000" in err


def test_overlays_are_bounded():
    from hrem.pipeline.overlay import MAX_SIDE, render_overlay

    image = Image.new("RGB", (4000, 1000), (20, 20, 20))
    mask = np.zeros((1000, 4000), bool)
    mask[100:300, 2000:2400] = True
    out = render_overlay(image, (2000, 100, 2400, 300), 0.9, mask, "the box")
    assert out.width == MAX_SIDE and out.height < 1000  # 4000 x 1000 -> 2048 x 512 + caption strip
    rgb = np.asarray(out)
    assert rgb[100, 1100, 2] > 80                  # the mask, scaled with the image (blue channel up)
    assert tuple(rgb[100, 1024]) == (255, 40, 40)  # the box's left edge at 2000 * 2048 / 4000


# 2. card ranges ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value, allowed", [
    (("image", "image_size"), 100000, "[16, 2048]"), (("embed_size",), 10 ** 6, "[1, 16384]"),
    (("head", "heads"), 0, "[1, 128]"), (("instance_relation", "layers"), 1000, "[1, 64]")])
def test_out_of_range_card_fields_are_refused(tmp_path, field, value, allowed):
    data = json.loads((Path(__file__).parents[1] / "hrem" / "cards" / "tiny.json").read_text())
    target = data
    for key in field[:-1]:
        target = target.setdefault(key, {})
    target[field[-1]] = value
    path = tmp_path / "card.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=rf"card.json.*{'.'.join(field)}: expected an integer in "
                                          rf"\{allowed[:-1]}\], found {value}"):
        load_card(path)


def test_every_shipped_card_and_packaged_run_is_in_range():
    for name in list_models():
        load_card(name)
    for config in ASSETS_DIR.glob("*/config.json"):
        load_card(config)


# 3a. a full disk -----------------------------------------------------------------------------------------

@contextlib.contextmanager
def _tmpfs(mount: Path, options: str):
    """A real tmpfs at `mount` (root only; the test is skipped elsewhere), unmounted afterwards."""
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)],
                      check=False, capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


@pytest.fixture()
def full_disk(tmp_path):
    with _tmpfs(tmp_path / "tiny-disk", "size=256k") as mount:
        fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)  # fill it: the next write gets ENOSPC
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        finally:
            os.close(fd)
        yield mount


@pytest.fixture()
def read_only_disk(tmp_path):
    with _tmpfs(tmp_path / "ro-disk", "size=64k,ro") as mount:
        yield mount


def _ground_to(run: Path, out: Path, tmp_path: Path, capsys) -> tuple[int, str]:
    """`hrem ground` writing its overlay to `out`: the exit code and the last line of stderr."""
    image = _scene(tmp_path / "scene.png")
    code = main(["ground", "--model", str(run), "--image", str(image), "--text", "the circle", "--out", str(out),
                 "--device", "cpu"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err.strip().splitlines()[-1]   # earlier lines are INFO logs


def test_full_disk_is_a_one_line_error(grounding_run, full_disk, tmp_path, capsys):
    code, last = _ground_to(grounding_run, full_disk / "overlay.png", tmp_path, capsys)
    assert code == 1 and last == (f"hrem ground: error: disk full writing {full_disk / 'overlay.png'} (no space "
                                  f"left on device); free space and re-run")
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]  # no temporary file left behind


def test_read_only_output_is_a_one_line_error_naming_the_file(grounding_run, read_only_disk, tmp_path, capsys):
    code, last = _ground_to(grounding_run, read_only_disk / "overlay.png", tmp_path, capsys)
    assert code == 1 and last == (f"hrem ground: error: read-only file system at {read_only_disk / 'overlay.png'}; "
                                  f"choose an output folder on a writable disk")


@pytest.mark.parametrize("code, expected", [
    (errno.EDQUOT, "disk quota exceeded writing /d/x.parquet; free space within your quota and re-run"),
    (errno.EMFILE, "too many open files at /d/x.parquet; raise the limit (ulimit -n) or use fewer --workers"),
    (errno.EACCES, "permission denied at /d/x.parquet; check the file and folder permissions, or choose "
                   "another path"),
])
def test_user_fixable_os_errors_are_one_line(code, expected):
    assert describe_os_error(OSError(code, os.strerror(code), "/d/x.parquet")) == expected
    assert describe_os_error(OSError(errno.EIO, "I/O error", "/d/x")) is None   # a real fault keeps its traceback


def test_atomic_writes_name_the_destination_not_the_temporary_file(tmp_path):
    target = tmp_path / "out" / "x.bin"
    with pytest.raises(OSError) as caught:
        with atomic_path(target) as tmp:
            raise OSError(errno.EDQUOT, "quota", str(tmp))   # as a writer naming the temporary file would
    assert caught.value.errno == errno.EDQUOT and caught.value.filename == str(target)
    assert list(target.parent.iterdir()) == []


# 3b. truncated weights -----------------------------------------------------------------------------------

def test_truncated_weights_name_the_file(grounding_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(grounding_run, run)
    weights = run / "model.safetensors"
    data = weights.read_bytes()
    for cut in (len(data) // 2, 5):
        weights.write_bytes(data[:cut])
        with pytest.raises(ValueError, match=rf"{weights}: truncated"):
            load_run(run)
    code = main(["ground", "--model", str(run), "--image", str(_scene(tmp_path / "s.png")), "--text", "x",
                 "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 1 and str(weights) in err and "Traceback" not in err


# 3c. corrupt images --------------------------------------------------------------------------------------

def test_corrupt_images_name_the_file(grounding_run, tmp_path, capsys):
    truncated, garbage = tmp_path / "truncated.png", tmp_path / "garbage.png"
    data = _scene(tmp_path / "s.png", (200, 200)).read_bytes()
    truncated.write_bytes(data[:len(data) // 2])
    garbage.write_bytes(b"not an image at all")
    for bad in (truncated, garbage):
        with pytest.raises(ImageUnreadable, match=rf"{bad}: not a readable image"):
            load_image_file(bad)
        code = main(["ground", "--model", str(grounding_run), "--image", str(bad), "--text", "x",
                     "--device", "cpu"])
        err = capsys.readouterr().err
        assert code == 1 and str(bad) in err and "Traceback" not in err


# 3d. convert-checkpoint over an existing run folder ------------------------------------------------------

def test_convert_refuses_existing_output_and_overwrite_replaces_it(tmp_path, capsys):
    from test_convert import _image_state, _text_state, _write_official

    from hrem.utils.paths import packaged_minilm_dir

    text_dir = tmp_path / "tiny-bert"
    text_dir.mkdir()
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(packaged_minilm_dir() / name, text_dir / name)
    config = json.loads((packaged_minilm_dir() / "config.json").read_text())
    config.update(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    (text_dir / "config.json").write_text(json.dumps(config))
    g = torch.Generator().manual_seed(1)
    _write_official(tmp_path / "m.pth", _image_state(g), _text_state(text_dir, g))
    out = tmp_path / "run"
    out.mkdir()
    (out / "training_state.pt").write_bytes(b"old")
    argv = ["convert-checkpoint", str(tmp_path / "m.pth"), "--out", str(out), "--text-model", str(text_dir)]
    assert main(argv) == 1
    assert "expected a new or empty run directory" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["training_state.pt"]  # untouched
    assert main(argv + ["--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "conversion.json", "model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no staging left
    load_run(out)


def test_training_datasets_apply_the_budget(huge_png):
    # The grounding and detector training sets decode through the same budget: a huge file fails from its
    # header with the file named, before a 169 M-pixel allocation.
    from hrem.data.detection_dataset import DetectionRecord, DetectionSet
    from hrem.data.grounding_dataset import load_item
    from hrem.data.readers.refs import RefObject

    ref = RefObject(ref_id=0, image_id=0, image_path=huge_png, bbox_xywh=(0.0, 0.0, 10.0, 10.0),
                    category="circle", sentences=("the circle",), mask_path=None)
    with pytest.raises(ImageTooLarge, match="169,000,000 pixels"):
        load_item(ref, "the circle", prepare=None, index=0)
    record = DetectionRecord(image_path=huge_png, boxes=np.zeros((1, 4), np.float32),
                             labels={"object": np.zeros(1, np.int64)})
    detection = DetectionSet([record], size=64, prepare=None, to_letterbox=None)
    with pytest.raises(ImageTooLarge, match=str(huge_png.name)):
        detection[0]
    from hrem.data.readers.refs import read_mask

    with pytest.raises(ImageTooLarge, match=str(huge_png.name)):   # a mask file is decoded the same way
        read_mask(huge_png)
