"""The adapter's own spec fields (SPM, injector, extractor), shared by every block-stack backbone family, and the
part of the official config translation they share (torch-free)."""

from __future__ import annotations

from typing import Any, Callable, Optional

from pydantic import Field, model_validator

from ..spec_base import MAX_DIM, BackboneConfig, Pair
from .official_fields import OfficialContext, need, show

STD_INDEXES = [[0, 2], [3, 5], [6, 8], [9, 11]]


def check_interactions(indexes: list[Pair], depth: int, add_vit_feature: bool) -> None:
    """What the official adapters accept: block ranges in order inside the stack; exactly four when the ViT features
    are added to the four pyramid levels (the official forward unpacks four outputs only then)."""
    if not indexes:
        raise ValueError("interaction_indexes must hold at least one [first, last] block range")
    if add_vit_feature and len(indexes) != 4:
        raise ValueError(f"interaction_indexes must hold 4 [first, last] block ranges when add_vit_feature is true "
                         f"(one per pyramid level), got {len(indexes)}")
    previous = -1
    for first, last in indexes:
        if first <= previous or last < first or last >= depth:
            raise ValueError(f"interaction_indexes must be increasing [first, last] block ranges within depth {depth}, "
                             f"got {[list(p) for p in indexes]}")
        previous = last


class AdapterConfig(BackboneConfig):
    """The adapter's own fields (SPM, injector, extractor), shared by every block-stack family."""

    embed_dim: int = Field(192, gt=0, le=MAX_DIM)
    depth: int = Field(12, gt=0, le=256)
    num_heads: int = Field(3, gt=0, le=MAX_DIM)
    mlp_ratio: float = Field(4.0, gt=0, le=64)
    drop_path_rate: float = Field(0.1, ge=0, lt=1)
    conv_inplane: int = Field(64, gt=0, le=MAX_DIM)
    n_points: int = Field(4, gt=0, le=64)
    deform_num_heads: int = Field(6, gt=0, le=MAX_DIM)
    cffn_ratio: float = Field(0.25, gt=0, le=64)
    deform_ratio: float = Field(1.0, gt=0, le=64)
    interaction_indexes: list[Pair] = Field(default_factory=lambda: [tuple(p) for p in STD_INDEXES])
    add_vit_feature: bool = True
    with_cffn: bool = True

    @model_validator(mode="after")
    def _check_shapes(self) -> "AdapterConfig":
        d = self.embed_dim
        if d % self.num_heads:
            raise ValueError(f"embed_dim {d} is not divisible by num_heads {self.num_heads}")
        value_dim = int(d * self.deform_ratio)
        if value_dim % self.deform_num_heads:
            raise ValueError(f"embed_dim*deform_ratio = {value_dim} is not divisible by deform_num_heads "
                             f"{self.deform_num_heads}")
        check_interactions(self.interaction_indexes, self.depth, self.add_vit_feature)
        return self


# The official adapter constructors' defaults, for the spec fields a config may leave out (they differ from
# vitseg's); each family adds its own.
OFFICIAL_ADAPTER_DEFAULTS = dict(patch_size=16, embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0,
                                 drop_path_rate=0.0, conv_inplane=64, n_points=4, deform_num_heads=6, cffn_ratio=0.25,
                                 deform_ratio=1.0, add_vit_feature=True, with_cffn=True, init_values=0.0)
# Official arguments that change nothing vitseg computes or stores (memory, initialisation, pretrained files).
NO_EFFECT = {"type", "pretrained", "with_cp", "use_checkpoint", "init_cfg", "drop_rate", "attn_drop_rate",
             "num_classes", "in_chans"}


def translate_adapter(cfg: dict, ctx: OfficialContext, config_cls: type, defaults: dict[str, Any],
                      special: Optional[Callable[[str, Any], bool]] = None) -> dict[str, Any]:
    """An official adapter backbone dict -> the family's section: the official defaults, then every argument the
    section has a field for; `special(key, value)` handles (or refuses) the family's other arguments and says
    whether it did; the rest that change nothing are dropped, others become notes."""
    fields = set(config_cls.model_fields) - {"type", "preset"}
    out: dict[str, Any] = {"type": config_cls.model_fields["type"].default, **defaults}
    out["interaction_indexes"] = [list(p) for p in need(cfg, "interaction_indexes", ctx.where)]
    for key, value in cfg.items():
        if key in fields:
            out[key] = [list(v) for v in value] if key == "interaction_indexes" else value
        elif special is not None and special(key, value):
            pass
        elif key == "window_size" or (key == "qk_scale" and value is None):
            pass  # window sizes only matter with window_attn; qk_scale None is the default
        elif key not in NO_EFFECT:
            ctx.notes.append(f"config: {ctx.where}.{key}={show(value)} has no vitseg field; ignored")
    return out
