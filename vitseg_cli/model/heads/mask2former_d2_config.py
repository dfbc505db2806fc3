"""Spec section of the `mask2former_d2` head (torch-free): the detectron2-style Mask2Former of the DINOv3
segmentor, whose sizes the official code fixes except the width (`hidden_dim`) and the class count."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ...spec_base import Channels
from ..family import Family
from .mask2former_config import Mask2FormerHeadSpec, PixelDecoderSpec, TransformerDecoderSpec


class Mask2FormerD2HeadSpec(Mask2FormerHeadSpec):
    """Same fields as `mask2former`; defaults are the released DINOv3 head's (hidden_dim 2048, 16 heads, FFN 4096,
    6 encoder and 9 decoder layers, 100 queries, GroupNorm 32)."""

    type: Literal["mask2former_d2"] = "mask2former_d2"  # type: ignore[assignment]
    feat_channels: Channels = 2048
    out_channels: Channels = 2048
    pixel_decoder: PixelDecoderSpec = Field(default_factory=lambda: PixelDecoderSpec(
        num_layers=6, num_heads=16, num_points=4, feedforward_channels=4096, num_groups=32))
    transformer_decoder: TransformerDecoderSpec = Field(default_factory=lambda: TransformerDecoderSpec(
        num_layers=9, num_heads=16, feedforward_channels=4096))

    def summary(self) -> str:
        return "detectron2-style " + super().summary()


FAMILY = Family(
    name="mask2former_d2", config_cls=Mask2FormerD2HeadSpec, label="Mask2Former (detectron2, DINOv3)",
    build=f"{__package__}.mask2former_d2:build_mask2former_d2",
    tiny=dict(type="mask2former_d2", feat_channels=32, out_channels=32, num_queries=8,
              pixel_decoder=dict(num_layers=1, num_heads=2, num_points=2, feedforward_channels=32, num_groups=8),
              transformer_decoder=dict(num_layers=3, num_heads=2, feedforward_channels=32),
              loss=dict(num_points=64)),
)
