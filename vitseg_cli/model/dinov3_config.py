"""Spec section of the `dinov3_adapter` backbone family (torch-free): the DINOv3 ViT's constructor arguments under
their official names, and the adapter's, which the official `DINOv3_Adapter` takes with these defaults."""

from __future__ import annotations

from typing import ClassVar, Literal, Optional

from pydantic import Field, model_validator

from ..spec_base import MAX_DIM, BackboneConfig
from .family import Family

FFN_LAYERS = ("mlp", "swiglu", "swiglu32", "swiglu64", "swiglu128")


class Dinov3AdapterSpec(BackboneConfig):
    """DINOv3 `DinoVisionTransformer` (RoPE, storage tokens, layer scale) frozen under the `DINOv3_Adapter`
    (SPM + extractors fed by four of the ViT's blocks; no injector). Defaults: the released ViT-7B/16."""

    type: Literal["dinov3_adapter"] = "dinov3_adapter"
    loads_by_assignment: ClassVar[bool] = True  # its modules own their tensors: buildable on the meta device
    # the ViT
    patch_size: Literal[16] = 16
    embed_dim: int = Field(4096, gt=0, le=MAX_DIM)
    depth: int = Field(40, gt=0, le=256)
    num_heads: int = Field(32, gt=0, le=MAX_DIM)
    ffn_ratio: float = Field(3.0, gt=0, le=64)
    ffn_layer: Literal[FFN_LAYERS] = "swiglu64"
    qkv_bias: bool = False
    proj_bias: bool = True
    ffn_bias: bool = True
    layerscale_init: Optional[float] = 1e-5
    norm_layer: Literal["layernorm", "layernormbf16"] = "layernormbf16"
    n_storage_tokens: int = Field(4, ge=0, le=64)
    mask_k_bias: bool = True
    untie_cls_and_patch_norms: bool = False
    untie_global_and_local_cls_norm: bool = True
    pos_embed_rope_base: Optional[float] = 100.0
    pos_embed_rope_min_period: Optional[float] = None
    pos_embed_rope_max_period: Optional[float] = None
    pos_embed_rope_normalize_coords: Literal["min", "max", "separate"] = "separate"
    # the adapter (`interaction_indexes`: the blocks whose outputs feed it; None = four even intervals)
    interaction_indexes: Optional[list[int]] = None
    conv_inplane: int = Field(64, gt=0, le=MAX_DIM)
    n_points: int = Field(4, gt=0, le=64)
    deform_num_heads: int = Field(16, gt=0, le=MAX_DIM)
    drop_path_rate: float = Field(0.3, ge=0, lt=1)
    with_cffn: bool = True
    cffn_ratio: float = Field(0.25, gt=0, le=64)
    deform_ratio: float = Field(0.5, gt=0, le=64)
    add_vit_feature: bool = True
    use_extra_extractor: bool = True
    freeze_vit: bool = True  # the official adapter freezes its ViT; `train --unfreeze` lifts it

    @property
    def out_indices(self) -> list[int]:
        """The blocks feeding the adapter: given, else FOUR_EVEN_INTERVALS (ViT-L's paper set 4, 11, 17, 23)."""
        if self.interaction_indexes is not None:
            return list(self.interaction_indexes)
        if self.depth == 24:
            return [4, 11, 17, 23]
        return [i * (self.depth // 4) - 1 for i in range(1, 5)]

    @model_validator(mode="after")
    def _check(self) -> "Dinov3AdapterSpec":
        d = self.embed_dim
        if d % (4 * self.num_heads):
            raise ValueError(f"embed_dim {d} must be divisible by 4 * num_heads ({4 * self.num_heads}) for RoPE")
        if int(d * self.deform_ratio) % self.deform_num_heads:
            raise ValueError(f"embed_dim*deform_ratio = {int(d * self.deform_ratio)} is not divisible by "
                             f"deform_num_heads {self.deform_num_heads}")
        both = self.pos_embed_rope_min_period is not None and self.pos_embed_rope_max_period is not None
        if (self.pos_embed_rope_base is None) == (not both):
            raise ValueError("give either pos_embed_rope_base or both pos_embed_rope_min/max_period")
        idx = self.out_indices
        if len(idx) != 4 or any(b <= a for a, b in zip(idx, idx[1:])) or idx[0] < 0 or idx[-1] >= self.depth:
            raise ValueError(f"interaction_indexes must be 4 increasing block indices below depth {self.depth}, "
                             f"got {idx}")
        return self

    def summary(self) -> str:
        state = "frozen" if self.freeze_vit else "trainable"
        return (f"DINOv3 ViT D{self.embed_dim} depth {self.depth} heads {self.num_heads} ({state}, blocks "
                f"{self.out_indices} feed the adapter), deform heads {self.deform_num_heads} ratio "
                f"{self.deform_ratio}")



FAMILY = Family(
    name="dinov3_adapter", config_cls=Dinov3AdapterSpec, label="DINOv3-Adapter",
    build=f"{__package__}.dinov3:build_dinov3_adapter",
    detect=f"{__package__}.dinov3:is_own", infer=f"{__package__}.dinov3:infer",
    tiny=dict(type="dinov3_adapter", embed_dim=32, depth=4, num_heads=2, ffn_layer="swiglu", deform_num_heads=2,
              conv_inplane=8, interaction_indexes=[0, 1, 2, 3]),
)

# The official test of the released segmentor (configs/config-ade20k-m2f-inference.yaml)
OFFICIAL_TEST = {"procedure": "dinov3", "short_side": 896, "mode": "slide", "crop_size": [896, 896],
                 "stride": [596, 596], "scales": [0.9, 0.95, 1.0, 1.05, 1.1], "flip": True, "resize": None}

