"""transformers detectors as region detectors (hrem.vision.hf_detector): tiny random DETR-family models
saved to disk and loaded back, checked against a direct model call and a naive per-query loop."""
from __future__ import annotations

import json

import pytest
import torch
from hf_detector_support import save_tiny_detector

from hrem.factory import load_region_detector
from hrem.vision.hf_detector import IMAGENET_MEAN, IMAGENET_STD, load_hf_detector
from hrem.vision.regions import RegionDetector

FAMILIES = ["detr", "conditional_detr", "deformable_detr", "rt_detr"]


@pytest.fixture(scope="module", params=FAMILIES)
def tiny(request, tmp_path_factory):
    folder = save_tiny_detector(tmp_path_factory.mktemp(request.param), request.param)
    return request.param, folder


def _naive(model, pixels, count, softmax):
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        out = model(pixel_values=(pixels - mean) / std)
    side = pixels.shape[-1]
    found = []
    for b in range(pixels.shape[0]):
        rows = []
        for q in range(out.logits.shape[1]):
            logits = out.logits[b, q]
            probs = logits.softmax(-1)[:-1] if softmax else logits.sigmoid()
            cx, cy, w, h = out.pred_boxes[b, q].tolist()
            box = [min(max(v * side, 0.0), side) for v in (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)]
            rows.append((float(probs.max()), q, box))
        rows.sort(key=lambda r: (-r[0], r[1]))
        found.append((rows[:count], out.last_hidden_state[b]))
    return found


def test_regions_match_a_naive_per_query_post_processing(tiny):
    family, folder = tiny
    det = load_hf_detector(folder, input_size=64)
    assert isinstance(det, RegionDetector) and det.input_size == 64
    pixels = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    regions = det.detect_regions(pixels, 12)
    expected = _naive(det.model, pixels, 12, family == "detr")
    for got, (rows, hidden) in zip(regions, expected):
        assert len(got) == 12 and got.features.shape == (12, det.feature_dim)
        torch.testing.assert_close(got.scores, torch.tensor([r[0] for r in rows]), rtol=1e-5, atol=1e-6)
        # boxes are in pixels (x 64): 1e-2 px is ~1.6e-4 of the side, float32 noise of the two paths (a
        # conditional-DETR box once differed by 2.2e-3 px on another CPU), far below any real mistake
        torch.testing.assert_close(got.boxes, torch.tensor([r[2] for r in rows]), rtol=1e-4, atol=1e-2)
        torch.testing.assert_close(got.features, hidden[[r[1] for r in rows]], rtol=1e-4, atol=1e-4)
        assert bool((got.scores[:-1] >= got.scores[1:]).all())


def test_an_image_alone_or_in_a_batch_gives_the_same_regions(tiny):
    _, folder = tiny
    det = load_hf_detector(folder, input_size=64)
    pixels = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    together, alone = det.detect_regions(pixels, 8)[1], det.detect_regions(pixels[1:2], 8)[0]
    torch.testing.assert_close(together.boxes, alone.boxes, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(together.features, alone.features, rtol=1e-4, atol=1e-4)


def test_fewer_queries_than_count_returns_all_queries(tmp_path):
    det = load_hf_detector(save_tiny_detector(tmp_path / "few", "detr", queries=5), input_size=64)
    assert len(det.detect_regions(torch.rand(1, 3, 64, 64), 36)[0]) == 5


def test_preprocessor_config_mean_std_and_do_normalize(tmp_path):
    folder = save_tiny_detector(tmp_path / "rt", "rt_detr")
    (folder / "preprocessor_config.json").write_text(json.dumps({"do_normalize": False}))
    det = load_hf_detector(folder, input_size=64)
    assert det.mean.flatten().tolist() == [0.0, 0.0, 0.0] and det.std.flatten().tolist() == [1.0, 1.0, 1.0]
    (folder / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5] * 3, "image_std": [0.25] * 3}))
    assert load_hf_detector(folder, input_size=64).std.flatten().tolist() == [0.25] * 3


def test_factory_dispatches_transformers_folders(tmp_path):
    folder = save_tiny_detector(tmp_path / "detr", "detr")
    det = load_region_detector(folder, input_size=96)
    assert det.input_size == 96 and det.feature_dim == 16 and not det.training


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_region_detector(tmp_path / "missing")
    folder = save_tiny_detector(tmp_path / "timm", "detr")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "use_timm_backbone": True}))
    with pytest.raises(ValueError, match="timm"):
        load_hf_detector(folder)
    (folder / "config.json").write_text(json.dumps({**config, "backbone_config": {"model_type": "timm_backbone"}}))
    with pytest.raises(ValueError, match="timm"):
        load_hf_detector(folder)
    bare = {k: v for k, v in config.items() if k != "backbone_config"}
    (folder / "config.json").write_text(json.dumps({**bare, "backbone": "resnet50"}))
    with pytest.raises(ValueError, match="without a backbone_config"):
        load_hf_detector(folder)
    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError):
        load_region_detector(other)
