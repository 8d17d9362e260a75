"""Cross-task consistency between REC and RES (xtask_mt, Nakano et al.; REFERENCE_EXTRA.md §2.4).

Each head's prediction is mapped to the other task by a small U-Net ("TaskTransferNet") and compared with
the other head's *detached* prediction (mode "consistency", xtask's `xtsc`) or with the ground truth (mode
"alignment", xtask's `xtc`):
  RES -> REC  L_{s->c} = BCE( T_{s->c}(sigmoid(mask logits)), stopgrad(R(box)) )
  REC -> RES  L_{c->s} = BCE( T_{c->s}(R(box)),              stopgrad(1[sigmoid(mask logits) > 0.5]) )
R is a differentiable soft raster of the REC box on the stride-8 mask grid, so the REC side receives a
gradient through its box coordinates. The transfer nets' inputs are not detached (as in xtask: the
consistency gradient reaches the *source* head); only the targets are. Both losses are summed over the
map and divided by the batch, like MCN's mask BCE.

hrem's choices where the sources leave it open: the REC box is the top-objectness YOLO box
(`yolo.select_top_box`: its coordinates are differentiable, the argmax is not), and it is not
multiplied by its confidence.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from hrem.config.grounding_options import XTaskCfg

UNET_DEPTH = 3  # three 2x poolings: inputs are padded to a multiple of 8


def soft_box_raster(boxes_xyxy: torch.Tensor, grid: tuple[int, int], stride: float,
                    sharpness: float) -> torch.Tensor:
    """R(b)(x, y) = s(k(x - x1)) s(k(x2 - x)) s(k(y - y1)) s(k(y2 - y)) at the cell centres -> [B, 1, H, W].

    boxes in input pixels; `sharpness` k is per cell (the coordinates are divided by the stride first).
    """
    if boxes_xyxy.dim() != 2 or boxes_xyxy.shape[1] != 4:
        raise ValueError(f"boxes: expected [B, 4] xyxy, found {tuple(boxes_xyxy.shape)}")
    height, width = grid
    cells = boxes_xyxy / stride
    ys = torch.arange(height, device=boxes_xyxy.device, dtype=boxes_xyxy.dtype) + 0.5
    xs = torch.arange(width, device=boxes_xyxy.device, dtype=boxes_xyxy.dtype) + 0.5
    x1, y1, x2, y2 = (cells[:, i, None] for i in range(4))
    in_x = torch.sigmoid(sharpness * (xs - x1)) * torch.sigmoid(sharpness * (x2 - xs))  # [B, W]
    in_y = torch.sigmoid(sharpness * (ys - y1)) * torch.sigmoid(sharpness * (y2 - ys))  # [B, H]
    return (in_y[:, :, None] * in_x[:, None, :]).unsqueeze(1)


def _double_conv(in_ch: int, out_ch: int, batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c_in in (in_ch, out_ch):
        layers.append(nn.Conv2d(c_in, out_ch, 3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_ch))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class TaskTransferNet(nn.Module):
    """xtask's TaskTransferNetWithSkip: 3 x (2 convs, max-pool) at widths w, 2w, 4w; 3 x (up, concat skip,
    2 convs); a final bias-free 1x1 conv. Inputs of any size are padded to a multiple of 8, then cropped."""

    def __init__(self, in_ch: int, out_ch: int, width: int = 64, batch_norm: bool = False) -> None:
        super().__init__()
        widths = [width * 2**i for i in range(UNET_DEPTH)]
        self.down = nn.ModuleList()
        for i, w in enumerate(widths):
            self.down.append(_double_conv(in_ch if i == 0 else widths[i - 1], w, batch_norm))
        self.bottom = _double_conv(widths[-1], widths[-1], batch_norm)
        self.up = nn.ModuleList()
        for i in reversed(range(UNET_DEPTH)):
            below = widths[-1] if i == UNET_DEPTH - 1 else widths[i + 1]
            self.up.append(_double_conv(below + widths[i], widths[i], batch_norm))
        self.out = nn.Conv2d(widths[0], out_ch, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        multiple = 2**UNET_DEPTH
        x = F.pad(x, (0, -width % multiple, 0, -height % multiple))
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottom(x)
        for block, skip in zip(self.up, reversed(skips)):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.out(x)[..., :height, :width]


@dataclass(frozen=True)
class TransferLosses:
    mask_to_box: torch.Tensor  # L_{s->c}: trains the RES head and T_{s->c}
    box_to_mask: torch.Tensor  # L_{c->s}: trains the REC head and T_{c->s}


class CrossTaskConsistency(nn.Module):
    """The two transfer nets and their losses (training only; not part of the saved model)."""

    def __init__(self, cfg: XTaskCfg, stride: int) -> None:
        super().__init__()
        self.cfg, self.stride = cfg, stride
        self.mask_to_box = TaskTransferNet(1, 1, cfg.tt_width, cfg.tt_bn)
        self.box_to_mask = TaskTransferNet(1, 1, cfg.tt_width, cfg.tt_bn)

    def raster(self, boxes_xyxy: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        return soft_box_raster(boxes_xyxy, grid, self.stride, self.cfg.box_sharpness)

    def forward(self, mask_logits: torch.Tensor, box_xyxy: torch.Tensor, gt_box_xyxy: torch.Tensor | None = None,
                gt_mask: torch.Tensor | None = None) -> TransferLosses:
        """mask_logits [B, 1, H, W] (RES), box_xyxy [B, 4] (REC); GT needed for mode "alignment"."""
        grid = tuple(mask_logits.shape[-2:])
        box_map = self.raster(box_xyxy, grid)
        if self.cfg.mode == "alignment":
            if gt_box_xyxy is None or gt_mask is None:
                raise ValueError("xtask mode 'alignment': expected the GT box and mask, found None")
            box_target, mask_target = self.raster(gt_box_xyxy, grid), gt_mask
        else:
            box_target = box_map.detach()
            mask_target = (torch.sigmoid(mask_logits.detach()) > 0.5).to(mask_logits.dtype)
        batch = mask_logits.shape[0]
        s_to_c = self.mask_to_box(torch.sigmoid(mask_logits))
        c_to_s = self.box_to_mask(box_map)
        return TransferLosses(
            F.binary_cross_entropy_with_logits(s_to_c, box_target, reduction="sum") / batch,
            F.binary_cross_entropy_with_logits(c_to_s, mask_target, reduction="sum") / batch,
        )
