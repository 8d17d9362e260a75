"""The ShapesRef region detector (hrem.detection, card kind "detector") and its metrics (hrem.eval.detection):
targets against naive loops, AP against hand-computed values, the region contract, a few training steps,
and the CLI train -> resume -> evaluate on a tiny generated ShapesRef."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hrem.checkpoint import load_run, save_run
from hrem.cli import main
from hrem.config.base import ConfigError
from hrem.data.shapes import ShapesRefConfig, generate_shapesref
from hrem.detection.box_head import assign_cells, cell_centres
from hrem.eval.detection import ImageDetections, ImageObjects, average_precision, detection_report
from hrem.factory import create_model, load_card, load_region_detector
from hrem.vision.regions import RegionDetector


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("det")
    generate_shapesref(root / "shapes", ShapesRefConfig(train=24, dev=8, test=8, size=64, seed=2))
    return root / "shapes"


def test_card_validation_names_the_field():
    with pytest.raises(ConfigError, match="stride"):
        load_card("tiny-detector", overrides={"stride": 12})
    with pytest.raises(ConfigError, match="box_head.prior"):
        load_card("tiny-detector", overrides={"box_head.prior": 1.5})


def test_save_load_round_trip_and_region_contract(tmp_path):
    torch.manual_seed(0)
    card = load_card("tiny-detector")
    model = create_model(card).eval()
    save_run(tmp_path / "run", model, card)
    loaded = load_region_detector(tmp_path / "run")
    assert isinstance(loaded, RegionDetector) and loaded.feature_dim == 16 and loaded.input_size == 64
    pixels = torch.rand(2, 3, 64, 64)
    a, b = model.detect_regions(pixels, 20), loaded.detect_regions(pixels, 20)
    for x, y in zip(a, b):
        assert len(x) == 20 and x.features.shape == (20, 16)
        torch.testing.assert_close(x.features, y.features)
        assert set(x.attributes) == {"object", "colour", "size"}
    reloaded, _, _ = load_run(tmp_path / "run")
    assert reloaded.card == card


def test_cell_assignment_matches_naive_centre_sampling():
    centres = cell_centres(8, 8, 8, "cpu", torch.float32)
    boxes = torch.tensor([[3.0, 5.0, 30.0, 28.0], [40.0, 36.0, 62.0, 63.0]])
    targets = assign_cells([boxes], centres, 8, 1.5)
    for g, (x, y) in enumerate(centres.tolist()):
        expected = None
        for k, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
            inside = x1 < x < x2 and y1 < y < y2
            near = abs(x - (x1 + x2) / 2) <= 12 and abs(y - (y1 + y2) / 2) <= 12
            if inside and near:
                expected = k
        assert bool(targets.positive[0, g]) == (expected is not None)
        if expected is not None:
            assert targets.boxes[0, g].tolist() == boxes[expected].tolist()


def test_a_few_steps_reduce_the_loss():
    torch.manual_seed(0)
    card = load_card("tiny-detector")
    model = create_model(card)
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3)
    pixels = torch.rand(4, 3, 64, 64)
    boxes = [torch.tensor([[4.0, 6.0, 24.0, 26.0], [34.0, 30.0, 60.0, 58.0]])] * 4
    labels = [{"object": torch.tensor([1, 4]), "colour": torch.tensor([0, 3]), "size": torch.tensor([0, 2])}] * 4
    losses = []
    for step in range(25):
        terms = model.losses(pixels, boxes, labels, torch.Generator().manual_seed(step))
        optim.zero_grad()
        terms["loss"].backward()
        optim.step()
        losses.append(float(terms["loss"].detach()))
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])


def test_average_precision_by_hand():
    # 3 objects; detections by score: TP, FP, TP -> precision 1, 1/2, 2/3 at recall 1/3, 1/3, 2/3
    # all-point AP = 1/3 * 1 + 1/3 * 2/3 = 5/9
    assert average_precision(np.array([0.9, 0.8, 0.7]), np.array([1, 0, 1]), 3) == pytest.approx(5 / 9)
    assert average_precision(np.array([0.5]), np.array([1]), 1) == pytest.approx(1.0)


def test_detection_report_matches_and_attributes():
    gt = ImageObjects(np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float),
                      {"object": np.array([0, 1]), "colour": np.array([2, 3])})
    det = ImageDetections(np.array([[0, 0, 10, 9], [0, 0, 10, 10], [50, 50, 60, 60]], float), np.array([0.9, 0.8, 0.7]),
                          {"object": np.array([0, 0, 1]), "colour": np.array([2, 1, 3])})
    report = detection_report([det], [gt], ["a", "b"])
    # first detection TP, second a duplicate (FP), third FP; the second object is never found
    assert report["ap50"] == pytest.approx(50.0)
    acc = report["attribute_accuracy"]
    assert acc["object"] == 50.0 and acc["colour"] == 50.0 and acc["all"] == 50.0


def test_cli_train_resume_evaluate(shapes, tmp_path):
    args = ["train-detector", "--card", "tiny-detector", "--data", str(shapes), "--out", str(tmp_path / "run"),
            "--max-iters", "3", "--batch-size", "8", "--device", "cpu", "--threads", "1", "--save-every", "2"]
    assert main(args) == 0
    first = json.loads((tmp_path / "run" / "report.json").read_text())
    assert first["images"] == 8 and 0 <= first["ap50"] <= 100
    assert main(args[:7] + ["--max-iters", "5"] + args[9:]) == 0     # resumes to 5 iterations
    steps = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert max(s["iteration"] for s in steps if s["kind"] == "eval") == 5
    assert main(["evaluate-detector", "--model", str(tmp_path / "run"), "--data", str(shapes), "--split", "dev",
                 "--device", "cpu", "--out", str(tmp_path / "ev")]) == 0
    assert json.loads((tmp_path / "ev" / "report.json").read_text())["split"] == "dev"


def test_shipped_detector_finds_the_objects_of_test_scenes(tmp_path):
    from hrem.data.detection_dataset import read_detection_split
    from hrem.utils.paths import ASSETS_DIR
    from hrem.vision.boxes import box_iou
    from hrem.vision.letterbox import letterbox_image

    shipped = ASSETS_DIR / "shapes-detector"
    size = json.loads((shipped / "config.json").read_text())["input_size"]
    generate_shapesref(tmp_path / "s", ShapesRefConfig(train=0, dev=0, test=6, size=size, seed=11))
    detector = load_region_detector("packaged:shapes-detector")
    records = read_detection_split(tmp_path / "s", "test", detector.card.objects, detector.card.attributes)
    from PIL import Image

    pixels = torch.stack([torch.from_numpy(letterbox_image(Image.open(r.image_path), size)[0]) for r in records])
    for record, found in zip(records, detector.detect(pixels)):
        gt = torch.from_numpy(record.boxes)
        best = box_iou(gt, found.boxes).amax(dim=1)
        assert bool((best > 0.7).all()), (record.image_path, best)
        matched = box_iou(gt, found.boxes).argmax(dim=1)
        assert found.labels["object"][matched].tolist() == record.labels["object"].tolist()
        assert found.labels["colour"][matched].tolist() == record.labels["colour"].tolist()
