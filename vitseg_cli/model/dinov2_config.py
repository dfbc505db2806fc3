"""The `dinov2_adapter` family's spec section, official-config translation and registry entry (torch-free; the
modules are in `dinov2.py`).

DINOv2's segmentation code registers its own mmseg `ViTAdapter`, under the same type name as the original
ViT-Adapter's: a config with a patch other than 16 or with an argument only DINOv2's class takes (`ffn_type`,
`use_cls`, `freeze_vit`, ...) is DINOv2's; any other `ViTAdapter` config is handed to the `vit_adapter` family.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from ..spec_base import MAX_DIM, Pair
from . import vit_config
from .adapter_config import OFFICIAL_ADAPTER_DEFAULTS, AdapterConfig, translate_adapter
from .family import Family
from .official_fields import ConfigRefused, OfficialContext


class Dinov2AdapterSpec(AdapterConfig):
    """ViT-Adapter on DINOv2's ViT (patch 14, cls token carried, SwiGLU, layer scale): DINOv2's `ViTAdapter`.
    Defaults: the released ViT-g/14 ADE20K segmentor (as reconstructed; see the `dinov2_vitg14_ade20k_m2f` preset)."""

    type: Literal["dinov2_adapter"] = "dinov2_adapter"
    pretrain_size: int = Field(518, gt=0, le=4096)
    patch_size: int = Field(14, ge=2, le=32)
    embed_dim: int = Field(1536, gt=0, le=MAX_DIM)
    depth: int = Field(40, gt=0, le=256)
    num_heads: int = Field(24, gt=0, le=MAX_DIM)
    deform_num_heads: int = Field(24, gt=0, le=MAX_DIM)
    deform_ratio: float = Field(0.5, gt=0, le=64)
    drop_path_rate: float = Field(0.4, ge=0, lt=1)
    interaction_indexes: list[Pair] = Field(default_factory=lambda: [(0, 9), (10, 19), (20, 29), (30, 39)])
    qkv_bias: bool = True
    layer_scale: bool = True
    ffn_type: Literal["mlp", "swiglu"] = "swiglu"
    use_cls: bool = True
    use_extra_extractor: bool = True
    freeze_vit: bool = True  # the official evaluation trains the adapter and head only; `train --unfreeze` lifts it
    init_values: float = 0.0

    @model_validator(mode="after")
    def _check_grid(self) -> "Dinov2AdapterSpec":
        if self.pretrain_size % self.patch_size:
            raise ValueError(f"pretrain_size {self.pretrain_size} is not a multiple of patch_size {self.patch_size}")
        return self

    def summary(self) -> str:
        return (f"DINOv2 ViT-Adapter D{self.embed_dim} depth {self.depth} heads {self.num_heads} patch "
                f"{self.patch_size} {self.ffn_type} FFN, deform heads {self.deform_num_heads} ratio "
                f"{self.deform_ratio}{', ViT frozen' if self.freeze_vit else ''}")


# DINOv2's constructor defaults (its TIMMVisionTransformer + ViTAdapter), for what a config leaves out
_OFFICIAL_DEFAULTS = {**OFFICIAL_ADAPTER_DEFAULTS, "pretrain_size": 224, "use_extra_extractor": True,
                      "layer_scale": True, "qkv_bias": True, "ffn_type": "mlp", "use_cls": True, "freeze_vit": False}
_DINOV2_ONLY = ("ffn_type", "use_cls", "freeze_vit", "memeff", "pre_norm")


def is_dinov2_config(cfg: dict) -> bool:
    return cfg.get("patch_size", 16) != 16 or any(key in cfg for key in _DINOV2_ONLY)


def from_official_config(cfg: dict, ctx: OfficialContext) -> dict[str, Any]:
    """An official `ViTAdapter` backbone dict -> the dinov2_adapter section (DINOv2's class) or, for the original
    ViT-Adapter's class, the vit_adapter section."""
    if not is_dinov2_config(cfg):
        return vit_config.from_official_config(cfg, ctx)

    def special(key: str, value: Any) -> bool:
        if vit_config.check_vit_key(key, value, cfg, ctx, "dinov2_adapter"):
            return True
        if key == "pre_norm":
            if value:
                raise ConfigRefused(f"config: {ctx.where}.pre_norm true (a CLIP ViT) is not supported by vitseg's "
                                    "dinov2_adapter")
        elif key != "memeff":  # memory-efficient attention computes the same attention
            return False
        return True

    return translate_adapter(cfg, ctx, Dinov2AdapterSpec, _OFFICIAL_DEFAULTS, special)


FAMILY = Family(
    name="dinov2_adapter", config_cls=Dinov2AdapterSpec, label="DINOv2 ViT-Adapter",
    build=f"{__package__}.dinov2:build_dinov2_adapter",
    detect=f"{__package__}.dinov2:is_official", infer=f"{__package__}.dinov2:infer_official",
    official_types=("ViTAdapter",), from_official_config=from_official_config,
    tiny=dict(type="dinov2_adapter", pretrain_size=56, patch_size=14, embed_dim=32, depth=4, num_heads=2,
              deform_num_heads=2, conv_inplane=8, freeze_vit=False,
              interaction_indexes=[[0, 0], [1, 1], [2, 2], [3, 3]]),
)
