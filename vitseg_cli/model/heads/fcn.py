"""The auxiliary FCN head (mmseg FCNHead, concat_input=False) with mmseg's key names."""

from __future__ import annotations

import torch
from torch import nn

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
