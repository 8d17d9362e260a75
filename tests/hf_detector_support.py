"""Tiny random transformers object detectors saved to a folder (tests only): DETR, Conditional-DETR,
Deformable-DETR and RT-DETR with a small transformers ResNet backbone (no timm, nothing downloaded)."""
from __future__ import annotations

from pathlib import Path

import torch

BACKBONE = dict(embedding_size=8, hidden_sizes=[8, 16, 16, 32], depths=[1, 1, 1, 1], layer_type="basic")
COMMON = dict(encoder_layers=1, decoder_layers=1, encoder_ffn_dim=32, decoder_ffn_dim=32, encoder_attention_heads=2,
              decoder_attention_heads=2, num_labels=5)


def tiny_config(family: str, queries: int = 40):
    import transformers as t

    if family == "detr":
        return t.DetrConfig(backbone_config=t.ResNetConfig(**BACKBONE, out_features=["stage4"]), d_model=16,
                            num_queries=queries, **COMMON)
    if family == "conditional_detr":
        return t.ConditionalDetrConfig(backbone_config=t.ResNetConfig(**BACKBONE, out_features=["stage4"]),
                                       d_model=16, num_queries=queries, **COMMON)
    if family == "deformable_detr":
        return t.DeformableDetrConfig(backbone_config=t.ResNetConfig(**BACKBONE, out_features=["stage2", "stage3",
                                                                                              "stage4"]),
                                      d_model=32, num_queries=queries, num_feature_levels=3,
                                      **{**COMMON, "decoder_layers": 2})   # one layer trips transformers' weight tying
    if family == "rt_detr":
        return t.RTDetrConfig(backbone_config=t.ResNetConfig(**BACKBONE, out_features=["stage2", "stage3", "stage4"]),
                              encoder_in_channels=[16, 16, 32], encoder_hidden_dim=16, d_model=16,
                              decoder_in_channels=[16, 16, 16], num_queries=queries, num_denoising=0, eval_size=None,
                              **COMMON)
    raise ValueError(family)


def save_tiny_detector(folder: Path, family: str, queries: int = 40, seed: int = 0) -> Path:
    import transformers as t

    torch.manual_seed(seed)
    model = t.AutoModelForObjectDetection.from_config(tiny_config(family, queries))
    model.save_pretrained(folder)
    return folder
