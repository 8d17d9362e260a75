"""report.json / report.md / recall_curves.png from real metric summaries."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from hrem.eval import evaluate_retrieval, grounding_summary, render_markdown, write_report


@pytest.fixture(scope="module")
def results():
    rng = np.random.default_rng(0)
    img = rng.standard_normal((1000, 16)).astype(np.float32)
    cap = np.repeat(img, 5, axis=0) + 1.5 * rng.standard_normal((5000, 16)).astype(np.float32)
    retrieval = evaluate_retrieval(img, cap, np.repeat(np.arange(1000), 5), ("f30k", "coco1k"))
    boxes = np.array([[0, 0, 4, 4], [1, 1, 3, 3]], dtype=float)
    masks = [np.eye(4, dtype=bool), np.ones((3, 5), dtype=bool)]
    grounding = grounding_summary(boxes, boxes[::-1], masks, masks)
    return {"test/f30k": retrieval["f30k"], "test/coco1k": retrieval["coco1k"], "refs/test": grounding}


def test_write_report_files(tmp_path, results):
    paths = write_report(tmp_path / "eval", results, {"model": "run-1", "split": "test"})
    names = sorted(p.name for p in (tmp_path / "eval").iterdir())
    assert names == ["recall_curves.png", "report.json", "report.md"]  # no temporary files left
    report = json.loads(paths["json"].read_text())
    assert report["meta"]["model"] == "run-1" and "created" in report["meta"]
    assert report["results"]["test/f30k"]["rsum"] == pytest.approx(results["test/f30k"]["rsum"])
    assert report["results"]["refs/test"]["ie"] == results["refs/test"]["ie"]
    markdown = paths["markdown"].read_text()
    assert markdown.count("| i2t R@1 |") == 2 and markdown.count("| Acc@0.5 |") == 1
    f30k = results["test/f30k"]
    assert f"| {f30k['i2t_r1']:.2f} | {f30k['i2t_r5']:.2f} |" in markdown
    assert "mean over 1 fold(s) of 1000 images" in markdown
    with Image.open(paths["curves"]) as png:
        assert png.format == "PNG" and png.size[0] > 600
        pixels = np.asarray(png.convert("L"))
    assert pixels.std() > 10  # something was drawn


def test_grounding_only_report_has_no_png(tmp_path, results):
    paths = write_report(tmp_path, {"refs/test": results["refs/test"]})
    assert "curves" not in paths and not (tmp_path / "recall_curves.png").exists()


def test_report_errors(tmp_path):
    with pytest.raises(ValueError, match="at least one result"):
        write_report(tmp_path, {})
    with pytest.raises(ValueError, match="task 'retrieval' or 'grounding'"):
        render_markdown({"x": {"rsum": 1.0}}, {})
    assert not any(tmp_path.iterdir())


def test_eval_package_does_not_import_torch():
    code = "import sys, hrem.eval; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
