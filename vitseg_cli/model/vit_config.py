"""The `vit_adapter` family's spec section, presets, official-config translation and registry entry (torch-free;
the modules are in `vit.py`)."""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import Field, model_validator

from .adapter_config import OFFICIAL_ADAPTER_DEFAULTS, STD_INDEXES, AdapterConfig, translate_adapter
from .family import Family
from .official_fields import ConfigRefused, OfficialContext, pair, show

# Backbone presets: the official ViT-Adapter numbers, plus `nano`, a CPU-sized model for demos and tests.
BACKBONE_PRESETS: dict[str, dict[str, Any]] = {
    "nano": dict(embed_dim=96, depth=4, num_heads=3, deform_num_heads=6, deform_ratio=1.0, drop_path_rate=0.1,
                 conv_inplane=16, interaction_indexes=[[0, 0], [1, 1], [2, 2], [3, 3]]),
    "tiny": dict(embed_dim=192, depth=12, num_heads=3, deform_num_heads=6, deform_ratio=1.0, drop_path_rate=0.1,
                 interaction_indexes=STD_INDEXES),
    "small": dict(embed_dim=384, depth=12, num_heads=6, deform_num_heads=6, deform_ratio=1.0, drop_path_rate=0.2,
                  interaction_indexes=STD_INDEXES),
    "base": dict(embed_dim=768, depth=12, num_heads=12, deform_num_heads=12, deform_ratio=0.5, drop_path_rate=0.3,
                 interaction_indexes=STD_INDEXES),
    "large": dict(embed_dim=1024, depth=24, num_heads=16, deform_num_heads=16, deform_ratio=0.5, drop_path_rate=0.4,
                  interaction_indexes=[[0, 5], [6, 11], [12, 17], [18, 23]]),
}


class VitAdapterSpec(AdapterConfig):
    """ViT-Adapter on a plain (DeiT / AugReg) ViT: official `ViTAdapter`."""

    type: Literal["vit_adapter"] = "vit_adapter"
    preset: Optional[Literal["nano", "tiny", "small", "base", "large"]] = None
    pretrain_size: int = Field(224, gt=0, le=4096, multiple_of=16)
    patch_size: Literal[16] = 16
    use_extra_extractor: bool = True
    layer_scale: bool = True
    init_values: float = 0.0

    @model_validator(mode="before")
    @classmethod
    def _fill_from_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") in BACKBONE_PRESETS:
            return {**BACKBONE_PRESETS[data["preset"]], **data}
        return data

    def summary(self) -> str:
        return (f"ViT-Adapter D{self.embed_dim} depth {self.depth} heads {self.num_heads} deform heads "
                f"{self.deform_num_heads} ratio {self.deform_ratio} pretrain {self.pretrain_size}")


_OFFICIAL_DEFAULTS = {**OFFICIAL_ADAPTER_DEFAULTS, "pretrain_size": 224, "use_extra_extractor": True,
                      "layer_scale": True}


def check_vit_key(key: str, value: Any, cfg: dict, ctx: OfficialContext, family: str) -> bool:
    """The official `ViTAdapter` keys that every ViT-based family checks alike (`img_size`, `window_attn`); True when
    `key` was one of them (and acceptable)."""
    if key == "img_size":
        # the official ViT sizes pos_embed by img_size and reads it back on the pretrain_size grid
        if pair(value) != pair(cfg.get("pretrain_size", 224)):
            raise ConfigRefused(f"config: {ctx.where}.img_size {show(value)} differs from pretrain_size "
                                f"{show(cfg.get('pretrain_size', 224))}; the official ViTAdapter cannot run that")
        return True
    if key == "window_attn":
        if any(value if isinstance(value, (list, tuple)) else [value]):
            raise ConfigRefused(f"config: {ctx.where}.window_attn: windowed attention is not supported "
                                f"by vitseg's {family}")
        return True
    return False


def from_official_config(cfg: dict, ctx: OfficialContext) -> dict[str, Any]:
    """An official `ViTAdapter` backbone dict -> the vit_adapter section."""
    def special(key: str, value: Any) -> bool:
        if check_vit_key(key, value, cfg, ctx, "vit_adapter"):
            return True
        if key == "qkv_bias":
            if not value:
                raise ConfigRefused(f"config: {ctx.where}.qkv_bias false is not supported by vitseg's vit_adapter")
        else:
            return False
        return True

    return translate_adapter(cfg, ctx, VitAdapterSpec, _OFFICIAL_DEFAULTS, special)


FAMILY = Family(
    name="vit_adapter", config_cls=VitAdapterSpec, label="ViT-Adapter",
    build=f"{__package__}.vit:build_vit_adapter",
    detect=f"{__package__}.vit:is_official", infer=f"{__package__}.vit:infer_official",
    pretrained=f"{__package__}.vit:load_vit_pretrained",
    official_types=("ViTAdapter",), from_official_config=from_official_config,
    tiny=dict(type="vit_adapter", embed_dim=32, depth=4, num_heads=2, deform_num_heads=2, conv_inplane=8,
              pretrain_size=64, interaction_indexes=[[0, 0], [1, 1], [2, 2], [3, 3]]),
)
