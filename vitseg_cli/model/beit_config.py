"""The `beit_adapter` family's spec section, official-config translation and registry entry (torch-free; the
modules are in `beit.py`)."""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import Field, field_validator, model_validator

from ..spec_base import MAX_DIM, MAX_SIDE, Pair
from .adapter_config import OFFICIAL_ADAPTER_DEFAULTS, AdapterConfig, translate_adapter
from .family import Family
from .official_fields import OfficialContext


class BeitAdapterSpec(AdapterConfig):
    """BEiT-Adapter (BEiT / BEiTv2 blocks, cls token, relative position bias): official `BEiTAdapter`."""

    type: Literal["beit_adapter"] = "beit_adapter"
    img_size: Pair = (512, 512)
    pretrain_size: int = Field(224, gt=0, le=4096, multiple_of=16)
    patch_size: Literal[16] = 16
    embed_dim: int = Field(768, gt=0, le=MAX_DIM)
    num_heads: int = Field(12, gt=0, le=MAX_DIM)
    deform_num_heads: int = Field(12, gt=0, le=MAX_DIM)
    deform_ratio: float = Field(0.5, gt=0, le=64)
    drop_path_rate: float = Field(0.3, ge=0, lt=1)
    qkv_bias: bool = True
    use_abs_pos_emb: bool = False
    use_rel_pos_bias: bool = True
    use_shared_rel_pos_bias: bool = False
    init_values: float = 1e-6  # gamma_1/gamma_2 and the injector's gamma start here (official: a number, never None)

    @field_validator("img_size", mode="before")
    @classmethod
    def _square(cls, value: Any) -> Any:
        return (value, value) if isinstance(value, int) else value

    def summary(self) -> str:
        bias = ("shared" if self.use_shared_rel_pos_bias else "per block") if self.use_rel_pos_bias else "none"
        return (f"BEiT-Adapter D{self.embed_dim} depth {self.depth} heads {self.num_heads} deform heads "
                f"{self.deform_num_heads} ratio {self.deform_ratio} window {self.img_size[1]}x{self.img_size[0]} "
                f"relative position bias {bias}")

    @model_validator(mode="after")
    def _check_window(self) -> "BeitAdapterSpec":
        if any(s <= 0 or s % 32 or s > MAX_SIDE for s in self.img_size):
            raise ValueError(f"img_size must be positive multiples of 32 up to {MAX_SIDE}, got {list(self.img_size)}")
        if self.use_abs_pos_emb:
            raise ValueError("use_abs_pos_emb: true is not supported: the official BEiTAdapter cannot run with it (its "
                             "forward reshapes the cls-including pos_embed to the pretraining grid); every released "
                             "config uses the relative position bias instead")
        return self


_OFFICIAL_DEFAULTS = {**OFFICIAL_ADAPTER_DEFAULTS, "img_size": 512, "pretrain_size": 224, "qkv_bias": False,
                      "use_abs_pos_emb": False, "use_rel_pos_bias": True, "use_shared_rel_pos_bias": False}


def from_official_config(cfg: dict, ctx: OfficialContext) -> dict[str, Any]:
    """An official `BEiTAdapter` backbone dict -> the beit_adapter section."""
    out = translate_adapter(cfg, ctx, BeitAdapterSpec, _OFFICIAL_DEFAULTS)
    if isinstance(out.get("img_size"), (list, tuple)):
        out["img_size"] = list(out["img_size"])
    return out


def infer_test(section: dict[str, Any]) -> Optional[tuple[dict[str, Any], list[str]]]:
    """A BEiT window is its one input size: an inferred spec slides windows of exactly that size."""
    window = section.get("img_size")
    if window is None:
        return None
    crop = [window, window] if isinstance(window, int) else list(window)
    stride = [c * 2 // 3 for c in crop]  # the released configs' ratio (512 -> 341, 640 -> 426)
    return {"crop_size": crop, "stride": stride}, [f"test: slide crop {crop} (img_size), stride {stride}"]


FAMILY = Family(
    name="beit_adapter", config_cls=BeitAdapterSpec, label="BEiT-Adapter",
    build=f"{__package__}.beit:build_beit_adapter",
    detect=f"{__package__}.beit:is_official", infer=f"{__package__}.beit:infer_official",
    pretrained=f"{__package__}.beit:load_beit_pretrained",
    official_types=("BEiTAdapter",), from_official_config=from_official_config, infer_test=infer_test,
    tiny=dict(type="beit_adapter", img_size=64, embed_dim=32, depth=4, num_heads=2, deform_num_heads=2,
              conv_inplane=8, init_values=0.1, interaction_indexes=[[0, 0], [1, 1], [2, 2], [3, 3]]),
)
