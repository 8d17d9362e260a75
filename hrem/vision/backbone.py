"""The visual backbone: a transformers ResNet (AutoBackbone) giving C3/C4/C5 at strides 8/16/32.

MCN uses a COCO-pretrained Darknet-53 that cannot be downloaded here, so hrem takes a `transformers`
backbone instead: pretrained weights from a local directory (`backbone.path`) or a `ResNetConfig` built
from the card with random weights. Freezing follows the card: `frozen_stages = k` fixes the stem and the
first k - 1 stages. Frozen parts keep their BatchNorm statistics fixed (eval mode), unlike SimREC whose
frozen BN layers keep updating their running stats.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from hrem.config.grounding import STAGE_NAMES, MCNBackboneCfg

log = logging.getLogger(__name__)


def _build_hf_backbone(cfg: MCNBackboneCfg, fine_feature: str | None) -> nn.Module:
    import transformers

    transformers.utils.logging.set_verbosity_error()
    out_features = ([fine_feature] if fine_feature else []) + list(cfg.out_features)
    if cfg.path is not None:
        path = Path(cfg.path).expanduser()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"backbone.path '{cfg.path}': expected a local transformers model "
                "directory with config.json; hrem does not download weights"
            )
        return transformers.AutoBackbone.from_pretrained(
            str(path), out_features=out_features, local_files_only=True
        )
    log.debug("visual backbone: random initialisation from the card's ResNetConfig (no backbone.path)")
    config = transformers.ResNetConfig(**{**cfg.resnet, "out_features": out_features})
    return transformers.ResNetBackbone(config)


def _stage_modules(backbone: nn.Module) -> list[nn.Module]:
    """[stem, stage1, ..., stage4] of a transformers ResNetBackbone, in the order of STAGE_NAMES."""
    embedder = getattr(backbone, "embedder", None)
    encoder = getattr(backbone, "encoder", None)
    if embedder is None or encoder is None or not hasattr(encoder, "stages"):
        raise ValueError(
            f"backbone: expected a transformers ResNet-family backbone (embedder + encoder.stages), "
            f"found {type(backbone).__name__}; set frozen_stages to 0 for other families"
        )
    return [embedder, *encoder.stages]


class VisualBackbone(nn.Module):
    """images [B, 3, S, S] in [0, 1] -> (C3 [B, c3, S/8, S/8], C4 [.., S/16], C5 [.., S/32]), preceded by
    C2 [B, c2, S/4, S/4] when `fine_feature` names a stride-4 stage (the card's mask_refine)."""

    def __init__(self, cfg: MCNBackboneCfg, fine_feature: str | None = None) -> None:
        super().__init__()
        self.body = _build_hf_backbone(cfg, fine_feature)
        channels = [int(c) for c in self.body.channels]
        self.fine_channels: int | None = channels.pop(0) if fine_feature else None
        self.channels: tuple[int, int, int] = tuple(channels)  # type: ignore[assignment]
        self.register_buffer("pixel_mean", torch.tensor(cfg.pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(cfg.pixel_std).view(1, 3, 1, 1), persistent=False)
        self._frozen: list[nn.Module] = []
        if cfg.frozen_stages:
            self._frozen = _stage_modules(self.body)[: cfg.frozen_stages]
            for module in self._frozen:
                module.requires_grad_(False)
            log.info("visual backbone: frozen %s", ", ".join(STAGE_NAMES[: cfg.frozen_stages]))

    def train(self, mode: bool = True) -> VisualBackbone:
        super().train(mode)
        for module in self._frozen:  # frozen stages keep their BN statistics fixed
            module.eval()
        return self

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        pixels = (images - self.pixel_mean) / self.pixel_std
        return tuple(self.body(pixel_values=pixels).feature_maps)
