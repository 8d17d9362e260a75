"""Direct box regression for the CA2M option: per-sample L1 + GIoU, a [CLS] MLP head; REFERENCE_EXTRA §3.1.

Boxes are normalised to the (letterboxed) input square. The GIoU loss and box conversions live in
hrem.vision.boxes (shared with the detector); the GIoU's C is the smallest *enclosing* box (the blog's
"smallest inscribed rectangle" is a translation error).
"""

from __future__ import annotations

from torch import Tensor, nn

from hrem.vision.boxes import _check_boxes, cxcywh_to_xyxy, giou_loss  # noqa: F401 (re-exported)


def l1_box_loss(pred_cxcywh: Tensor, target_cxcywh: Tensor) -> Tensor:
    """|dx| + |dy| + |dw| + |dh| per box, [...], on normalised coordinates."""
    _check_boxes("pred_cxcywh", pred_cxcywh)
    if pred_cxcywh.shape != target_cxcywh.shape:
        raise ValueError(f"target_cxcywh: expected the shape of pred_cxcywh {tuple(pred_cxcywh.shape)}, "
                         f"found {tuple(target_cxcywh.shape)}")
    return (pred_cxcywh - target_cxcywh).abs().sum(dim=-1)


class DirectBoxHead(nn.Module):
    """[CLS] [B, in_dim] -> normalised (cx, cy, w, h) [B, 4] in (0, 1): 3-layer ReLU MLP, sigmoid."""

    def __init__(self, in_dim: int, hidden: int) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 4)
        )

    def forward(self, cls: Tensor) -> Tensor:
        if cls.dim() != 2 or cls.shape[1] != self.in_dim:
            raise ValueError(f"cls: expected shape [B, {self.in_dim}], found {tuple(cls.shape)}")
        # Sigmoid as in TransVG ([assumption] in the reference): the box stays inside the input square.
        return self.mlp(cls).sigmoid()


__all__ = ["DirectBoxHead", "cxcywh_to_xyxy", "giou_loss", "l1_box_loss"]
