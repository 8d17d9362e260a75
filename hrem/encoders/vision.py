"""The `transformers` vision backbone of grid cards (one of the few places that imports transformers).

Built from a ResNetConfig dict in the card (random init, trained from scratch: the demo) or loaded from
a local directory with AutoBackbone (never downloaded). Returns the module and the channel count of the
stage whose feature map becomes the grid tokens.
"""
from __future__ import annotations

import logging
from pathlib import Path

from torch import nn

from hrem.config.model import VisionBackboneCard

log = logging.getLogger(__name__)


def build_vision_backbone(card: VisionBackboneCard) -> tuple[nn.Module, int]:
    import transformers

    transformers.utils.logging.set_verbosity_error()
    if card.path is not None:
        path = Path(card.path).expanduser()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"image.backbone.path: expected a local transformers backbone directory "
                                    f"with config.json, found {path}")
        model = _load_local_backbone(path, card.out_feature)
    else:
        config_dict = {k: v for k, v in (card.config or {}).items() if k not in ("out_features", "out_indices")}
        try:
            config = transformers.ResNetConfig(**config_dict, out_features=[card.out_feature])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"image.backbone.config: not a valid ResNetConfig ({exc})") from None
        model = transformers.ResNetBackbone(config)
    channels = int(model.channels[-1])
    log.debug("vision backbone %s, grid stage %s with %d channels", type(model).__name__, card.out_feature, channels)
    return model, channels


def _load_local_backbone(path: Path, out_feature: str) -> nn.Module:
    # AutoBackbone.from_pretrained asks the Hub whether the name is a repository (a network call) before
    # loading; resolve the backbone class from the local config instead and load it offline.
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_FOR_BACKBONE_MAPPING

    config = transformers.AutoConfig.from_pretrained(str(path), local_files_only=True)
    if type(config) not in MODEL_FOR_BACKBONE_MAPPING:
        raise ValueError(f"{path}/config.json: model type '{config.model_type}' has no transformers backbone class")
    backbone_class = MODEL_FOR_BACKBONE_MAPPING[type(config)]
    return backbone_class.from_pretrained(str(path), local_files_only=True, out_features=[out_feature])
