"""UperNet (mmseg UPerHead) with mmseg's layer structure and key names."""

from __future__ import annotations

import torch
from torch import nn

from ..keys import count_indices
from .common import ConvModule, _resize, _SegHead


class UPerHead(_SegHead):
    """Pyramid pooling on the 1/32 map + FPN top-down over f1..f3, fused at 1/4 (Xiao et al., 2018)."""

    def __init__(self, in_channels: list[int], channels: int, num_classes: int,
                 pool_scales: list[int] = (1, 2, 3, 6), dropout: float = 0.1):
        super().__init__(channels, num_classes, dropout)
        self.psp_modules = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(s), ConvModule(in_channels[-1], channels, 1)) for s in pool_scales)
        self.bottleneck = ConvModule(in_channels[-1] + len(pool_scales) * channels, channels, 3)
        self.lateral_convs = nn.ModuleList(ConvModule(c, channels, 1) for c in in_channels[:-1])
        self.fpn_convs = nn.ModuleList(ConvModule(channels, channels, 3) for _ in in_channels[:-1])
        self.fpn_bottleneck = ConvModule(len(in_channels) * channels, channels, 3)

    def _psp(self, x: torch.Tensor) -> torch.Tensor:
        outs = [x] + [_resize(m(x), x.shape[2:]) for m in self.psp_modules]
        return self.bottleneck(torch.cat(outs, dim=1))

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        laterals = [conv(inputs[i]) for i, conv in enumerate(self.lateral_convs)]
        laterals.append(self._psp(inputs[-1]))
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + _resize(laterals[i], laterals[i - 1].shape[2:])
        outs = [conv(laterals[i]) for i, conv in enumerate(self.fpn_convs)] + [laterals[-1]]
        outs = [outs[0]] + [_resize(o, outs[0].shape[2:]) for o in outs[1:]]
        return self.cls_seg(self.fpn_bottleneck(torch.cat(outs, dim=1)))


def is_official(part: dict) -> bool:
    return "psp_modules.0.1.conv.weight" in part and "conv_seg.weight" in part


def infer_official(part: dict, meta: dict) -> tuple[dict, int, list[str]]:
    """(head section, num_classes, assumed) of an official UPerHead state dict (keys without `decode_head.`)."""
    seg = part["conv_seg.weight"]
    n_pool = count_indices(part, r"psp_modules\.(\d+)\.")
    pool_scales = [1, 2, 3, 6] if n_pool == 4 else list(range(1, n_pool + 1))
    section = {"type": "upernet", "channels": seg.shape[1], "pool_scales": pool_scales}
    return section, seg.shape[0], [f"decode_head.pool_scales={pool_scales}"]


def build_upernet(section, in_channels: list[int], num_classes: int) -> UPerHead:
    return UPerHead(in_channels, section.channels, num_classes, section.pool_scales, section.dropout)
