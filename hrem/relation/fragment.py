"""Fragment-level relation: one Transformer encoder layer over the regions (or words) of one item.

Used at inference. It is an `nn.TransformerEncoder` (batch-first) so its parameters are named
`layers.0.*` exactly like the reference's sequence-first `aggr`: the weights are the same either way,
only the tensor layout of the call differs. Post-LN, ReLU, no positional encoding (as HREM).
"""
from __future__ import annotations

import torch
from torch import nn


class FragmentRelation(nn.TransformerEncoder):
    """tokens [B, N, D] + mask [B, N] (True = valid) -> related tokens [B, N, D]; padding is never attended."""

    def __init__(self, d_model: int, heads: int, ff_dim: int, dropout: float, layers: int = 1) -> None:
        layer = nn.TransformerEncoderLayer(d_model=d_model, nhead=heads, dim_feedforward=ff_dim,
                                           dropout=dropout, batch_first=True)
        super().__init__(layer, num_layers=layers, enable_nested_tensor=False)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(tokens, src_key_padding_mask=~mask)
