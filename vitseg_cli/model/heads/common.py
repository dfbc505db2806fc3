"""Pieces every mmseg-style decode head shares: mmcv's ConvModule, bilinear resize, the `conv_seg` classifier and
its cross-entropy loss."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ConvModule(nn.Sequential):
    """mmcv ConvModule: conv without bias, BatchNorm, ReLU (keys `conv`, `bn`)."""

    def __init__(self, cin: int, cout: int, kernel_size: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.activate = nn.ReLU(inplace=True)


def _resize(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class _SegHead(nn.Module):
    """Dropout then the 1x1 classifier `conv_seg` shared by every mmseg decode head."""

    def __init__(self, channels: int, num_classes: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        nn.init.normal_(self.conv_seg.weight, 0, 0.01)
        nn.init.constant_(self.conv_seg.bias, 0)

    # the layers whose shape depends on the class count (re-initialised when fine-tuning onto other classes)
    class_layers = ("conv_seg.",)

    def cls_seg(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_seg(self.dropout(x))

    def loss(self, feats: list[torch.Tensor], target: torch.Tensor, ignore_index: int) -> dict[str, torch.Tensor]:
        """mmseg CrossEntropyLoss: logits (cropped to the target's 1/4 grid) upsampled to the target size, per-pixel
        CE with ignore_index, mean over all pixels (ignored ones count in the denominator, as in mmseg 0.x)."""
        h, w = target.shape[-2:]
        logits = self(feats)[..., :math.ceil(h / 4), :math.ceil(w / 4)]
        logits = F.interpolate(logits.float(), size=(h, w), mode="bilinear", align_corners=False)
        ce = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none").mean()
        return {"loss_ce": ce}
