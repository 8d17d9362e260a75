"""GARAN, the global attentive reasoning unit ("collect and diffuse"), as in K `model/garan.py`.

The visual channels and the sentence vector are each split into `heads` equal parts that are stacked
along the batch axis, so all heads share one set of projections (K `split_dim_concat_batch`). Per head:
  collect  a_c = softmax over the H*W positions of (K_c q) / tau,   g = sum_p a_c(p) V(p)   (one vector)
  diffuse  a_d = sigmoid((K_d q) / tau) per position,               A(p) = a_d(p) g
with tau = sqrt(text_dim / heads), the width of each head's slice of f_q (K `normalize_by_dim` with the
query's last dimension: sqrt(512) for f_q 1024 and 2 heads). The heads are concatenated back along
channels; output = LeakyReLU(BN(A + input)) (BN after the residual add, no output projection). CEM
uses A, the attended map before the residual. The spatial layout is kept as is (SimREC transposes H
and W here; K does not).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from hrem.grounding.layers import LEAKY_SLOPE


@dataclass(frozen=True)
class GaranOutput:
    features: torch.Tensor  # [B, C, H, W] LeakyReLU(BN(attended + input))
    attended: torch.Tensor  # [B, C, H, W] the pre-residual map A (CEM input)
    collect: torch.Tensor  # [B, heads, H*W] softmax weights, each row sums to 1
    diffuse: torch.Tensor  # [B, heads, H*W] sigmoid gates in (0, 1)


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, C, ...] -> [heads * B, C / heads, ...]: channel chunks stacked along the batch axis."""
    return torch.cat(torch.chunk(x, heads, dim=1), dim=0)


def merge_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """Inverse of split_heads: [heads * B, C / heads, ...] -> [B, C, ...]."""
    return torch.cat(torch.chunk(x, heads, dim=0), dim=1)


class GARAN(nn.Module):
    def __init__(self, channels: int, text_dim: int, heads: int = 2) -> None:
        super().__init__()
        if channels % heads or text_dim % heads:
            raise ValueError(
                f"GARAN: channels ({channels}) and text_dim ({text_dim}) must be multiples of heads ({heads})"
            )
        self.heads = heads
        head = channels // heads
        self.key_collect = nn.Conv2d(head, head, 1)  # K: Dense on every position == 1x1 conv
        self.value = nn.Conv2d(head, head, 1)
        self.key_diffuse = nn.Conv2d(head, head, 1)
        self.query = nn.Linear(text_dim // heads, head)
        self.temperature = math.sqrt(text_dim // heads)  # K divides by sqrt of the query slice width
        self.norm = nn.BatchNorm2d(channels)
        self.act = nn.LeakyReLU(LEAKY_SLOPE)

    def forward(self, visual: torch.Tensor, sentence: torch.Tensor) -> GaranOutput:
        batch, _, height, width = visual.shape
        v = split_heads(visual, self.heads)  # [hB, c, H, W]
        q = self.query(split_heads(sentence, self.heads))  # [hB, c]
        key_c = self.key_collect(v).flatten(2)  # [hB, c, HW]
        key_d = self.key_diffuse(v).flatten(2)
        values = self.value(v).flatten(2)
        collect = torch.softmax(torch.einsum("bcp,bc->bp", key_c, q) / self.temperature, dim=-1)
        diffuse = torch.sigmoid(torch.einsum("bcp,bc->bp", key_d, q) / self.temperature)
        gathered = torch.einsum("bcp,bp->bc", values, collect)  # one global vector per head
        attended = diffuse[:, None, :] * gathered[:, :, None]  # [hB, c, HW]
        attended = merge_heads(attended.view(-1, attended.shape[1], height, width), self.heads)
        features = self.act(self.norm(attended + visual))
        per_head = (
            collect.view(self.heads, batch, -1).transpose(0, 1),
            diffuse.view(self.heads, batch, -1).transpose(0, 1),
        )
        return GaranOutput(features, attended, per_head[0], per_head[1])
