"""The `uniperceiver_adapter` family's spec section, official-config translation and registry entry (torch-free;
the modules are in `uniperceiver.py`)."""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import Field, model_validator

from ..spec_base import MAX_DIM
from .adapter_config import OFFICIAL_ADAPTER_DEFAULTS, AdapterConfig, translate_adapter
from .family import Family
from .official_fields import OfficialContext


class UniPerceiverAdapterSpec(AdapterConfig):
    """Uni-Perceiver-Adapter (BERT-style layers): official `UniPerceiverAdapter`."""

    type: Literal["uniperceiver_adapter"] = "uniperceiver_adapter"
    img_size: int = Field(224, gt=0, le=4096, multiple_of=16)
    patch_size: Literal[16] = 16
    embed_dim: int = Field(768, gt=0, le=MAX_DIM)
    num_heads: int = Field(12, gt=0, le=MAX_DIM)
    deform_num_heads: int = Field(12, gt=0, le=MAX_DIM)
    deform_ratio: float = Field(0.5, gt=0, le=64)
    drop_path_rate: float = Field(0.3, ge=0, lt=1)
    init_values: float = 0.0
    window_attn: Optional[list[bool]] = None  # per layer; None: global attention everywhere (official default)
    window_size: Optional[list[Optional[int]]] = None  # per layer; None: 14 everywhere (official default)

    @model_validator(mode="after")
    def _check_windows(self) -> "UniPerceiverAdapterSpec":
        for name in ("window_attn", "window_size"):
            value = getattr(self, name)
            if value is not None and len(value) != self.depth:
                raise ValueError(f"{name} must list one value per layer ({self.depth}), got {len(value)}")
        for i, on in enumerate(self.window_attn or []):
            size = self.window_size[i] if self.window_size is not None else 14
            if on and (size is None or size <= 0):
                raise ValueError(f"window_attn[{i}] is true but window_size[{i}] is {size}: give a positive size")
        return self

    def summary(self) -> str:
        windows = sum(bool(w) for w in self.window_attn or [])
        return (f"Uni-Perceiver-Adapter D{self.embed_dim} depth {self.depth} heads {self.num_heads} deform heads "
                f"{self.deform_num_heads} ratio {self.deform_ratio} window-attention layers {windows}")


_OFFICIAL_DEFAULTS = {**OFFICIAL_ADAPTER_DEFAULTS, "img_size": 224}


def from_official_config(cfg: dict, ctx: OfficialContext) -> dict[str, Any]:
    """An official `UniPerceiverAdapter` backbone dict -> the uniperceiver_adapter section (per-layer window
    settings spelled out, as the official constructor expands a single value)."""
    out = translate_adapter(cfg, ctx, UniPerceiverAdapterSpec, _OFFICIAL_DEFAULTS)
    depth = out["depth"]
    for key, default in (("window_attn", False), ("window_size", 14)):
        value = out.get(key, default)
        out[key] = list(value) if isinstance(value, (list, tuple)) else [value] * depth
    return out


FAMILY = Family(
    name="uniperceiver_adapter", config_cls=UniPerceiverAdapterSpec, label="Uni-Perceiver-Adapter",
    build=f"{__package__}.uniperceiver:build_uniperceiver_adapter",
    detect=f"{__package__}.uniperceiver:is_official", infer=f"{__package__}.uniperceiver:infer_official",
    official_types=("UniPerceiverAdapter",), from_official_config=from_official_config,
    tiny=dict(type="uniperceiver_adapter", img_size=64, embed_dim=32, depth=4, num_heads=2, deform_num_heads=2,
              conv_inplane=8, interaction_indexes=[[0, 0], [1, 1], [2, 2], [3, 3]]),
)
