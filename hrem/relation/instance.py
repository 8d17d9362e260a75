"""Instance-level relation: the training criterion of HREM (`graph_lib.GraphLoss`, REFERENCE_HREM.md §1.4).

Training only. Its parameters (`gnn.*`, `adj_model.adj_learning.mlp_{t2i,i2t}.*`) are never part of a
model file, and inference embeddings never depend on it: they are per item and batch-invariant.

Each step: base loss on the encoder embeddings; after `warmup_iters` iterations also the batch graph:
the 2B L2-normalised embeddings (images first) form one sequence of length 2B, a Transformer attends
over it with the additive bias mask_weight * relevance (-inf where not connected), and the GNN loss is
computed on the enhanced embeddings (three terms with cross_loss). total = base + gnn + reg_weight * reg.

The loss functions are injected (hrem.losses, built by hrem.factory) because this package sits beside
hrem.losses in the layering and may not import it.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from hrem.config.model import InstanceRelationCard
from hrem.relation.graph import AdjacencyModel
from hrem.relation.outputs import TrainOutputs

PairLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def graph_attention_bias(connect: torch.Tensor, relevance: torch.Tensor, mask_weight: float) -> torch.Tensor:
    """Additive float attention mask [2B, 2B] (rows = queries): mask_weight * relevance, -inf if unconnected."""
    if mask_weight <= 0:
        raise ValueError(f"mask_weight: expected a positive value, found {mask_weight} (0 * -inf is NaN)")
    return (mask_weight * relevance).masked_fill(~connect, float("-inf"))


class HREMCriterion(nn.Module):
    def __init__(self, embed_size: int, relation: InstanceRelationCard, warmup_iters: int,
                 base_loss: PairLoss, gnn_loss: PairLoss, score_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.relation = relation
        self.warmup_iters = int(warmup_iters)
        self.base_loss = base_loss
        self.gnn_loss = gnn_loss
        if relation.enabled:
            layer = nn.TransformerEncoderLayer(d_model=embed_size, nhead=relation.heads,
                                               dim_feedforward=relation.ff_dim or embed_size,
                                               dropout=relation.dropout, batch_first=True)
            self.gnn = nn.TransformerEncoder(layer, num_layers=relation.layers, enable_nested_tensor=False)
            self.adj_model = AdjacencyModel(relation.threshold, relation.topk, relation.sigma, relation.temperature,
                                            score_dtype)

    def graph_active(self, iteration: int) -> bool:
        return self.relation.enabled and iteration >= self.warmup_iters

    def forward(self, out: TrainOutputs, image_ids: torch.Tensor, iteration: int) -> dict[str, torch.Tensor]:
        image_ids = image_ids.to(out.img_emb.device)
        base = self.base_loss(out.img_emb, out.cap_emb, image_ids)
        zero = base.new_zeros(())
        if not self.graph_active(iteration):
            return {"loss": base, "base": base, "gnn": zero, "reg": zero}
        img_gnn, cap_gnn, reg = self.enhance(out)
        gnn = self.gnn_loss(img_gnn, cap_gnn, image_ids)
        if self.relation.cross_loss:
            gnn = gnn + self.gnn_loss(out.img_emb, cap_gnn, image_ids) + self.gnn_loss(img_gnn, out.cap_emb, image_ids)
        total = base + gnn + self.relation.reg_weight * reg
        return {"loss": total, "base": base, "gnn": gnn, "reg": reg}

    def enhance(self, out: TrainOutputs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Relation-enhanced (normalised) image and caption embeddings, and the relevance regulariser."""
        img_emb, cap_emb = F.normalize(out.img_emb, dim=-1), F.normalize(out.cap_emb, dim=-1)
        connect, relevance, reg = self.adj_model(img_emb, cap_emb, out.img_tokens, out.img_mask,
                                                 out.cap_tokens, out.cap_mask)
        bias = graph_attention_bias(connect, relevance, self.relation.mask_weight)
        nodes = torch.cat([img_emb, cap_emb] if self.relation.norm_input else [out.img_emb, out.cap_emb], dim=0)
        enhanced = self.gnn(nodes[None], mask=bias.to(nodes.dtype))[0]          # one sequence of 2B instances
        img_gnn, cap_gnn = enhanced.split(img_emb.shape[0], dim=0)
        return F.normalize(img_gnn, dim=-1), F.normalize(cap_gnn, dim=-1), reg
