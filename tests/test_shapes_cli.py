"""`hrem data ...` through the real CLI entry point, and the ShapesRef cache."""
import json

import pytest
from PIL import Image

from hrem.cli import main
from hrem.data.cache import default_shapesref_dir, ensure_shapesref
from hrem.data.shapes import ShapesRefConfig


def test_cli_shapes_check_and_contact_sheet(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["data", "shapes", "--out", str(out), "--images", "10", "--test", "3", "--size", "64"]) == 0
    printed = capsys.readouterr().out
    assert "8 train / 1 val / 3 test" in printed and "images/s" in printed
    assert json.loads((out / "shapesref.json").read_text())["splits"] == {"train": 8, "val": 1, "test": 3}
    assert main(["data", "check", "--data", str(out)]) == 0
    assert "test: 3 images, 15 captions" in capsys.readouterr().out
    sheet = tmp_path / "sheet.png"
    assert main(["data", "contact-sheet", "--data", str(out), "--out", str(sheet), "--n", "3"]) == 0
    with Image.open(sheet) as image:
        assert image.mode == "RGB" and image.width > 2 * 64 * 3 and image.height >= 2 * 64 * 3
    # An existing folder is an error that names it, not a traceback.
    assert main(["data", "shapes", "--out", str(out), "--images", "10"]) == 1
    assert "already exists" in capsys.readouterr().err


def test_ensure_shapesref_reuses_and_regenerates(tmp_path):
    folder = tmp_path / "cache"
    sizes = {"train": 3, "dev": 1, "test": 1, "size": 64, "seed": 2}
    assert ensure_shapesref(folder, **sizes) == folder
    stamp = (folder / "shapesref.json").stat().st_mtime_ns
    assert ensure_shapesref(folder, **sizes) == folder
    assert (folder / "shapesref.json").stat().st_mtime_ns == stamp          # reused, not regenerated
    ensure_shapesref(folder, **{**sizes, "seed": 5})
    assert json.loads((folder / "shapesref.json").read_text())["seed"] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]


def test_ensure_shapesref_refuses_foreign_folders(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a ShapesRef folder"):
        ensure_shapesref(tmp_path / "mine", train=2, dev=1, test=1, size=64)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_default_cache_dir_names_the_parameters():
    path = default_shapesref_dir(ShapesRefConfig(train=10, dev=2, test=3, size=64, seed=7))
    assert path.parts[:2] == ("hrem-out", "cache") and path.name == "shapesref-v2-s64-seed7-10-2-3"
