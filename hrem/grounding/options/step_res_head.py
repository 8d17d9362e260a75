"""`res_head: step`: STEP (hrem.grounding.options.step) as MCN's RES head (REFERENCE_EXTRA.md §1.4).

STEP reads three maps, fine -> coarse: the backbone's C3/C4/C5 (`step.visual_source: backbone`, the
reference's plug-in) or MCN's language-fused F_down / F_mid / F_m ("neck"). A 1x1 conv-BN-Leaky maps its
last ConvGRU state h_T to the neck width: that map is F_s for CEM and what the REC bottom-up path reads.
"""

from __future__ import annotations

import torch
from torch import nn

from hrem.config.grounding_options import STEPCfg
from hrem.grounding.fusion import Fusion
from hrem.grounding.layers import ConvBNLeaky
from hrem.grounding.options.step import STEPHead
from hrem.grounding.res_head import ResBranch, ResInputs


class StepResHead:
    def __init__(self, step: STEPHead, proj: ConvBNLeaky, cfg: STEPCfg) -> None:
        self.step, self.proj, self.cfg = step, proj, cfg

    def parts(self) -> dict[str, nn.Module | None]:
        return {"step": self.step, "step_proj": self.proj}

    def __call__(self, inputs: ResInputs) -> ResBranch:
        grid = tuple(inputs.c3.shape[-2:])
        if self.cfg.visual_source == "neck":
            levels = (inputs.down(), inputs.mid, inputs.fused)
        else:
            levels = (inputs.c3, inputs.c4, inputs.c5)
        out = self.step(levels, inputs.language.tokens, inputs.language.mask, grid)
        features = self.proj(out.hidden)
        rec_sentence = out.sentence if self.cfg.sentence_to_rec else None
        step_logits = out.step_logits if self.cfg.supervise == "all" else None
        return ResBranch(features, features, out.logits, None, rec_sentence, step_mask_logits=step_logits)

    def shared_layer(self, backbone: nn.Module, fusion: Fusion) -> torch.Tensor:
        # STEP may read the backbone maps and not F_m, so the backbone's last conv is the shared weight
        # (with visual_source "neck" too: one choice per head keeps GradNorm's W fixed by res_head alone)
        return [m for m in backbone.modules() if isinstance(m, nn.Conv2d)][-1].weight
