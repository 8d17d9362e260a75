"""A grounding run's visual backbone started from a trained detector's (`backbone.init`, issue 14 item 1):
the copy is exact and limited to the backbone, a mismatched or wrong-kind source is refused by name, and
the trainer applies it before the first step."""
from __future__ import annotations

import pytest
import torch

from hrem.checkpoint import save_run
from hrem.config.base import ConfigError
from hrem.factory import create_model, load_card
from hrem.pipeline.ground import read_grounding_split
from hrem.train.backbone_init import PREFIX, init_backbone_from_detector
from hrem.grounding import GroundingTask

TINY_RESNET = {"embedding_size": 8, "hidden_sizes": [8, 16, 24, 32], "depths": [1, 1, 1, 1], "layer_type": "basic"}


def _detector_run(path, resnet=TINY_RESNET, seed=3):
    card = load_card("tiny-detector", {"backbone.resnet": resnet})
    torch.manual_seed(seed)
    save_run(path, create_model(card), card)
    return path


def _backbone(model):
    return {k: v.clone() for k, v in model.state_dict().items() if k.startswith(PREFIX)}


def test_init_copies_the_backbone_and_nothing_else(tmp_path):
    from hrem.checkpoint import load_run

    run = _detector_run(tmp_path / "det")
    detector = load_run(run)[0]
    torch.manual_seed(0)
    model = create_model(load_card("mcn-tiny"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert init_backbone_from_detector(model, run) == len(_backbone(model)) > 0
    after, source = model.state_dict(), _backbone(detector)
    for key, tensor in after.items():
        expected = source[key] if key.startswith(PREFIX) else before[key]
        assert torch.equal(tensor, expected), key
    assert any(not torch.equal(before[k], source[k]) for k in source)   # the copy changed something


def test_mismatched_or_wrong_kind_source_is_refused_by_name(tmp_path):
    model = create_model(load_card("mcn-tiny"))
    other = _detector_run(tmp_path / "det16", {**TINY_RESNET, "hidden_sizes": [8, 16, 16, 32]})
    with pytest.raises(ValueError, match=r"does not match the card's .*model \(24,"):
        init_backbone_from_detector(model, other)
    card = load_card("mcn-tiny")
    save_run(tmp_path / "grounding", create_model(card), card)
    with pytest.raises((ValueError, FileNotFoundError), match="detector"):
        init_backbone_from_detector(model, tmp_path / "grounding")


def test_card_refuses_init_together_with_path():
    with pytest.raises(ConfigError, match="`init`.*`path`"):
        load_card("mcn-tiny", {"backbone.init": "shapes-detector", "backbone.path": "/some/resnet"})


def test_trainer_starts_from_the_detector_backbone(tmp_path):
    from hrem.data.cache import ensure_shapesref
    from hrem.train.config import TrainConfig
    from hrem.train.grounding_run import build_grounding_trainer

    run = _detector_run(tmp_path / "det")
    data = ensure_shapesref(tmp_path / "shapes", train=4, dev=2, test=2, size=64, workers=1)
    card = load_card("mcn-tiny", {"backbone.init": str(run)})
    trainer = build_grounding_trainer(card, read_grounding_split(data, "train"), tmp_path / "run",
                                      TrainConfig(batch_size=2, workers=0), GroundingTask(), torch.device("cpu"),
                                      evaluate=None, kmeans=False)
    from hrem.checkpoint import load_run

    source = _backbone(load_run(run)[0])
    for key, tensor in _backbone(trainer.model).items():
        assert torch.equal(tensor, source[key]), key
