"""`fusion: ca2m`: multi-grained CA2M fusion (REFERENCE_EXTRA.md §3.4 a) in place of MCN's simple fusion.

The stride-16 F_v^3 map of hrem.grounding.options.ca2m becomes MCN's fused map F_m at stride 32 (2x2 average
pooling, then a 1x1 conv-BN-Leaky to the fusion width), so the collaborative neck, the GARANs and both
heads are unchanged. The fused [CLS] token is returned for the optional direct box head and, with
`ca2m.sentence_to_garan`, projected to the sentence width and used as f_q by both GARANs.
"""

from __future__ import annotations

import torch
from torch import nn

from hrem.config.grounding_options import CA2MCfg
from hrem.grounding.fusion import FusionOutput
from hrem.grounding.language import LanguageOutput
from hrem.grounding.layers import ConvBNLeaky
from hrem.grounding.options.ca2m import MultiGrainedCA2M


class CA2MFusion(nn.Module):
    def __init__(self, channels: tuple[int, int, int], text_widths: tuple[int, ...], cfg: CA2MCfg,
                 out_width: int, text_dim: int, max_tokens: int) -> None:
        super().__init__()
        if not text_widths:
            raise ValueError("fusion 'ca2m': expected token states at several granularities from the language "
                             "encoder, found none")
        self.ca2m = MultiGrainedCA2M(channels, text_widths, cfg, max_tokens)
        self.pool = nn.AvgPool2d(2)
        self.to_top = ConvBNLeaky(cfg.fusion_width, out_width, 1)
        self.to_sentence = nn.Linear(cfg.fusion_width, text_dim) if cfg.sentence_to_garan else None

    @property
    def last_weight(self) -> torch.Tensor:
        return self.to_top[0].weight

    def forward(self, c3: torch.Tensor, c4: torch.Tensor, c5: torch.Tensor, language: LanguageOutput) -> FusionOutput:
        out = self.ca2m(c3, c4, c5, language.levels, language.mask)
        fused = self.to_top(self.pool(out.visual))
        sentence = None if self.to_sentence is None else self.to_sentence(out.cls)
        return FusionOutput(fused, out.cls, sentence)
