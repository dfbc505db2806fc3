"""The `fcn` auxiliary head family's spec section, official-config translation and registry entry (torch-free;
the modules are in `fcn.py`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ...spec_base import Channels, HeadConfig
from ..family import Family
from ..official_fields import ConfigRefused, OfficialContext, need


class AuxHeadSpec(HeadConfig):
    type: Literal["fcn"] = "fcn"
    channels: Channels = 256
    in_index: int = Field(2, ge=0, le=3)
    num_convs: int = Field(1, ge=0, le=16)
    dropout: float = Field(0.1, ge=0, lt=1)
    loss_weight: float = Field(0.4, ge=0)

    def summary(self) -> str:
        return f"FCN {self.channels} ch"


def from_official_config(aux: dict, ctx: OfficialContext) -> tuple[dict[str, Any], int]:
    """An official `FCNHead` auxiliary head dict -> (the fcn section, num_classes)."""
    where, embed_dim, classes = ctx.where, ctx.backbone["embed_dim"], ctx.num_classes
    if aux.get("concat_input", True) or aux.get("kernel_size", 3) != 3:
        raise ConfigRefused(f"config: {where}: vitseg's FCN head needs concat_input=False and kernel_size 3")
    index = aux.get("in_index", -1)
    if aux.get("in_channels", embed_dim) != embed_dim or not isinstance(index, int):
        raise ConfigRefused(f"config: {where}: in_channels/in_index do not match one backbone level")
    if classes is not None and aux.get("num_classes", classes) != classes:
        raise ConfigRefused(f"config: {where}.num_classes {aux['num_classes']} differs from the decode head's "
                            f"{classes}")
    loss = aux.get("loss_decode", {})
    section = {"type": "fcn", "channels": need(aux, "channels", where), "in_index": index % 4,
               "num_convs": aux.get("num_convs", 2), "dropout": aux.get("dropout_ratio", 0.1),
               "loss_weight": loss.get("loss_weight", 1.0) if isinstance(loss, dict) else 1.0}
    return section, aux.get("num_classes", classes)


FAMILY = Family(
    name="fcn", config_cls=AuxHeadSpec, label="FCN",
    build=f"{__package__}.fcn:build_fcn",
    detect=f"{__package__}.fcn:is_official", infer=f"{__package__}.fcn:infer_official",
    official_types=("FCNHead",), from_official_config=from_official_config, roles=("auxiliary_head",),
    tiny=dict(type="fcn", channels=16),
)
