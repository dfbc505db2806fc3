"""The auxiliary FCN head (mmseg FCNHead, concat_input=False) with mmseg's key names."""

from __future__ import annotations

import torch
from torch import nn

from ..keys import count_indices
from .common import ConvModule, _SegHead


class FCNHead(_SegHead):
    """mmseg FCNHead (concat_input=False): `num_convs` 3x3 ConvModules on one pyramid level, then the classifier."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, in_index: int = 2, num_convs: int = 1,
                 dropout: float = 0.1):
        super().__init__(channels if num_convs else in_channels, num_classes, dropout)
        self.in_index = in_index
        self.convs = nn.Sequential(*[ConvModule(in_channels if i == 0 else channels, channels, 3)
                                     for i in range(num_convs)])

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return self.cls_seg(self.convs(inputs[self.in_index]))


def is_official(part: dict) -> bool:
    return "conv_seg.weight" in part and "psp_modules.0.1.conv.weight" not in part


def infer_official(part: dict, meta: dict) -> tuple[dict, int, list[str]]:
    """(auxiliary head section, num_classes, assumed) of an official FCNHead state dict."""
    seg = part["conv_seg.weight"]
    section = {"type": "fcn", "channels": seg.shape[1], "num_convs": count_indices(part, r"convs\.(\d+)\."),
               "in_index": 2}
    return section, seg.shape[0], ["auxiliary_head.in_index=2"]


def build_fcn(section, in_channels: list[int], num_classes: int) -> FCNHead:
    return FCNHead(in_channels[section.in_index], section.channels, num_classes, section.in_index,
                   section.num_convs, section.dropout)
