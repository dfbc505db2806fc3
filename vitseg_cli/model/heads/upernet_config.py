"""The `upernet` head family's spec section, official-config translation and registry entry (torch-free; the
modules are in `upernet.py`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from ...spec_base import Channels, HeadConfig
from ..family import Family
from ..official_fields import OfficialContext, check_in_channels, need


class UperNetHeadSpec(HeadConfig):
    type: Literal["upernet"] = "upernet"
    channels: Channels = 512
    pool_scales: list[Annotated[int, Field(ge=1, le=64)]] = Field(default_factory=lambda: [1, 2, 3, 6], min_length=1)
    dropout: float = Field(0.1, ge=0, lt=1)

    def summary(self) -> str:
        return f"UperNet {self.channels} ch"


def from_official_config(head: dict, ctx: OfficialContext) -> tuple[dict[str, Any], int]:
    """An official `UPerHead` dict -> (the upernet section, num_classes)."""
    check_in_channels(head, ctx.backbone, ctx.where)
    spec = {"type": "upernet", "channels": need(head, "channels", ctx.where),
            "pool_scales": list(head.get("pool_scales", (1, 2, 3, 6))), "dropout": head.get("dropout_ratio", 0.1)}
    return spec, need(head, "num_classes", ctx.where)


FAMILY = Family(
    name="upernet", config_cls=UperNetHeadSpec, label="UperNet",
    build=f"{__package__}.upernet:build_upernet",
    detect=f"{__package__}.upernet:is_official", infer=f"{__package__}.upernet:infer_official",
    official_types=("UPerHead",), from_official_config=from_official_config,
    tiny=dict(type="upernet", channels=16),
)
