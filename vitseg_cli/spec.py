"""YAML spec -> typed, validated config (DESIGN §3), with the official ViT-Adapter argument names and presets.

A spec is the one description of a model and how to feed it; train, eval and predict all build their model from it.
`load_spec` takes a YAML path, a dict, a preset name or a `Spec`; unknown keys and bad values raise `VitsegError`
naming the key path.
"""

from __future__ import annotations

import copy
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import VitsegError, did_you_mean
from .safe_yaml import load_yaml, read_yaml_file

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)

_STD_INDEXES = [[0, 2], [3, 5], [6, 8], [9, 11]]

# Backbone presets: the official ViT-Adapter numbers, plus `nano`, a CPU-sized model for demos and tests.
BACKBONE_PRESETS: dict[str, dict[str, Any]] = {
    "nano": dict(embed_dim=96, depth=4, num_heads=3, deform_num_heads=6, deform_ratio=1.0, drop_path_rate=0.1,
                 conv_inplane=16, interaction_indexes=[[0, 0], [1, 1], [2, 2], [3, 3]]),
    "tiny": dict(embed_dim=192, depth=12, num_heads=3, deform_num_heads=6, deform_ratio=1.0, drop_path_rate=0.1,
                 interaction_indexes=_STD_INDEXES),
    "small": dict(embed_dim=384, depth=12, num_heads=6, deform_num_heads=6, deform_ratio=1.0, drop_path_rate=0.2,
                  interaction_indexes=_STD_INDEXES),
    "base": dict(embed_dim=768, depth=12, num_heads=12, deform_num_heads=12, deform_ratio=0.5, drop_path_rate=0.3,
                 interaction_indexes=_STD_INDEXES),
    "large": dict(embed_dim=1024, depth=24, num_heads=16, deform_num_heads=16, deform_ratio=0.5, drop_path_rate=0.4,
                  interaction_indexes=[[0, 5], [6, 11], [12, 17], [18, 23]]),
}

# Whole-spec presets: backbone preset + heads + recipe. The big ones follow the official UperNet ADE20K configs.
SPEC_PRESETS: dict[str, dict[str, Any]] = {
    name: {
        "model": {
            "backbone": {"preset": name},
            "decode_head": {"type": "upernet", "channels": 1024 if name == "large" else 512},
            "auxiliary_head": {"type": "fcn", "channels": 256},
            "num_classes": 150,
        },
        "train": {"lr": {"tiny": 12e-5, "small": 12e-5, "base": 6e-5, "large": 2e-5}[name]},
    }
    for name in ("tiny", "small", "base", "large")
}
SPEC_PRESETS["nano"] = {
    "model": {
        "backbone": {"preset": "nano"},
        "decode_head": {"type": "upernet", "channels": 64},
        "auxiliary_head": {"type": "fcn", "channels": 64},
        "num_classes": 6,
    },
    "test": {"resize": None, "mode": "whole", "crop_size": [256, 256], "stride": [171, 171]},
    "train": {"iters": 2000, "batch_size": 8, "crop_size": [256, 256], "lr": 1e-3, "warmup_iters": 100,
              "scale": [256, 256]},
}

# A CPU-sized BEiT-Adapter + Mask2Former (like `nano` for UperNet) for demos, tests and the synthetic data. BEiT's
# relative position bias fixes its input to img_size (128 here, to keep CPU training affordable), so training takes
# 128 crops and inference slides 128 windows.
SPEC_PRESETS["nano_mask2former"] = {
    "model": {
        "backbone": {"type": "beit_adapter", "img_size": 128, "embed_dim": 96, "depth": 4, "num_heads": 3,
                     "deform_num_heads": 6, "deform_ratio": 0.5, "conv_inplane": 16, "init_values": 0.1,
                     "drop_path_rate": 0.1, "interaction_indexes": [[0, 0], [1, 1], [2, 2], [3, 3]]},
        "decode_head": {"type": "mask2former", "feat_channels": 64, "out_channels": 64, "num_queries": 20,
                        "pixel_decoder": {"num_layers": 2, "num_heads": 4, "num_points": 4,
                                          "feedforward_channels": 128, "num_groups": 16},
                        "transformer_decoder": {"num_layers": 3, "num_heads": 4, "feedforward_channels": 256},
                        "loss": {"num_points": 2048}},
        "num_classes": 6,
    },
    "test": {"resize": None, "mode": "slide", "crop_size": [128, 128], "stride": [85, 85]},
    "train": {"iters": 2000, "batch_size": 8, "crop_size": [128, 128], "lr": 5e-4, "warmup_iters": 50,
              "scale": [256, 256]},
}

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


Pair = tuple[int, int]

# Upper bounds that keep an absurd value (embed_dim: 1e9) a one-line error instead of an allocation failure
MAX_DIM = 8192  # channels, embed_dim: the largest official models use 1024
MAX_SIDE = 1 << 16  # image, crop and resize sides, pixels
MAX_CLASSES = 65535  # masks are stored as uint16 past 255 classes
Side = Annotated[int, Field(gt=0, le=MAX_SIDE)]
Size = tuple[Side, Side]
Channels = Annotated[int, Field(gt=0, le=MAX_DIM)]


def _check_interactions(indexes: list[Pair], depth: int, add_vit_feature: bool) -> None:
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


class _AdapterSpec(_Strict):
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
    interaction_indexes: list[Pair] = Field(default_factory=lambda: [tuple(p) for p in _STD_INDEXES])
    add_vit_feature: bool = True
    with_cffn: bool = True

    @model_validator(mode="after")
    def _check_shapes(self) -> "_AdapterSpec":
        d = self.embed_dim
        if d % self.num_heads:
            raise ValueError(f"embed_dim {d} is not divisible by num_heads {self.num_heads}")
        value_dim = int(d * self.deform_ratio)
        if value_dim % self.deform_num_heads:
            raise ValueError(f"embed_dim*deform_ratio = {value_dim} is not divisible by deform_num_heads "
                             f"{self.deform_num_heads}")
        _check_interactions(self.interaction_indexes, self.depth, self.add_vit_feature)
        return self


class VitAdapterSpec(_AdapterSpec):
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


BackboneSpec = VitAdapterSpec  # the default family, under its historical name


class BeitAdapterSpec(_AdapterSpec):
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


class UniPerceiverAdapterSpec(_AdapterSpec):
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


class UperNetHeadSpec(_Strict):
    type: Literal["upernet"] = "upernet"
    channels: Channels = 512
    pool_scales: list[Annotated[int, Field(ge=1, le=64)]] = Field(default_factory=lambda: [1, 2, 3, 6], min_length=1)
    dropout: float = Field(0.1, ge=0, lt=1)

    def summary(self) -> str:
        return f"UperNet {self.channels} ch"


DecodeHeadSpec = UperNetHeadSpec  # the default head, under its historical name


class PixelDecoderSpec(_Strict):
    """Mask2Former's MSDeformAttnPixelDecoder: a deformable-attention encoder over the 1/8..1/32 levels."""

    num_layers: int = Field(6, gt=0, le=256)
    num_heads: int = Field(8, gt=0, le=MAX_DIM)
    num_points: int = Field(4, gt=0, le=64)
    feedforward_channels: Channels = 1024
    num_groups: int = Field(32, gt=0, le=MAX_DIM)


class TransformerDecoderSpec(_Strict):
    """Mask2Former's masked-attention decoder (DetrTransformerDecoder of DetrTransformerDecoderLayers)."""

    num_layers: int = Field(9, gt=0, le=256)
    num_heads: int = Field(8, gt=0, le=MAX_DIM)
    feedforward_channels: Channels = 2048


class Mask2FormerLossSpec(_Strict):
    """The official Mask2Former loss: Hungarian matching on sampled points, deep supervision."""

    cls_weight: float = Field(2.0, ge=0)
    mask_weight: float = Field(5.0, ge=0)
    dice_weight: float = Field(5.0, ge=0)
    no_object_weight: float = Field(0.1, ge=0)
    num_points: int = Field(12544, gt=0, le=1 << 20)
    oversample_ratio: float = Field(3.0, ge=1)
    importance_sample_ratio: float = Field(0.75, ge=0, le=1)


class Mask2FormerHeadSpec(_Strict):
    """Mask2Former (mmdet-style, as the official ViT-Adapter `Mask2FormerHead`): per-query class + mask."""

    type: Literal["mask2former"] = "mask2former"
    feat_channels: Channels = 256
    out_channels: Channels = 256
    num_queries: int = Field(100, gt=0, le=4096)
    enforce_decoder_input_project: bool = False
    pixel_decoder: PixelDecoderSpec = Field(default_factory=PixelDecoderSpec)
    transformer_decoder: TransformerDecoderSpec = Field(default_factory=TransformerDecoderSpec)
    loss: Mask2FormerLossSpec = Field(default_factory=Mask2FormerLossSpec)

    def summary(self) -> str:
        return (f"Mask2Former {self.num_queries} queries, {self.feat_channels} ch, pixel decoder "
                f"{self.pixel_decoder.num_layers} layers, transformer decoder {self.transformer_decoder.num_layers} "
                f"layers")

    @model_validator(mode="after")
    def _check_dims(self) -> "Mask2FormerHeadSpec":
        if self.feat_channels % 2:
            raise ValueError(f"feat_channels {self.feat_channels} must be even (sine position encoding)")
        for name, heads in (("pixel_decoder", self.pixel_decoder.num_heads),
                            ("transformer_decoder", self.transformer_decoder.num_heads)):
            if self.feat_channels % heads:
                raise ValueError(f"feat_channels {self.feat_channels} is not divisible by {name}.num_heads {heads}")
        if self.feat_channels % self.pixel_decoder.num_groups:
            raise ValueError(f"feat_channels {self.feat_channels} is not divisible by pixel_decoder.num_groups "
                             f"{self.pixel_decoder.num_groups}")
        return self


class AuxHeadSpec(_Strict):
    type: Literal["fcn"] = "fcn"
    channels: Channels = 256
    in_index: int = Field(2, ge=0, le=3)
    num_convs: int = Field(1, ge=0, le=16)
    dropout: float = Field(0.1, ge=0, lt=1)
    loss_weight: float = Field(0.4, ge=0)


BACKBONE_TYPES = {"vit_adapter": VitAdapterSpec, "beit_adapter": BeitAdapterSpec,
                  "uniperceiver_adapter": UniPerceiverAdapterSpec}
HEAD_TYPES = {"upernet": UperNetHeadSpec, "mask2former": Mask2FormerHeadSpec}
AnyBackboneSpec = Annotated[Union[VitAdapterSpec, BeitAdapterSpec, UniPerceiverAdapterSpec],
                            Field(discriminator="type")]
AnyHeadSpec = Annotated[Union[UperNetHeadSpec, Mask2FormerHeadSpec], Field(discriminator="type")]


def _default_type(section: Any, default: str, allowed: dict[str, Any], where: str) -> Any:
    """A section without `type` is of the default family; an unknown type names the allowed ones."""
    if not isinstance(section, dict):
        return section
    kind = section.get("type", default)
    if kind not in allowed:
        raise ValueError(f"{where}.type: unknown type {kind!r}{did_you_mean(str(kind), allowed)} "
                         f"(allowed: {', '.join(allowed)})")
    return {**section, "type": kind}


class ModelSpec(_Strict):
    backbone: AnyBackboneSpec = Field(default_factory=VitAdapterSpec)
    decode_head: Optional[AnyHeadSpec] = None
    auxiliary_head: Optional[AuxHeadSpec] = None
    num_classes: int = Field(150, gt=0, le=MAX_CLASSES)

    @model_validator(mode="before")
    @classmethod
    def _default_types(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "backbone" in data:
            data["backbone"] = _default_type(data["backbone"], "vit_adapter", BACKBONE_TYPES, "backbone")
        if data.get("decode_head") is not None:
            data["decode_head"] = _default_type(data["decode_head"], "upernet", HEAD_TYPES, "decode_head")
        return data


Channel8 = Annotated[int, Field(ge=0, le=255)]
Std = Annotated[float, Field(gt=0)]


class DataSpec(_Strict):
    classes: Optional[list[str]] = None
    palette: Optional[list[tuple[Channel8, Channel8, Channel8]]] = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[Std, Std, Std] = IMAGENET_STD  # 0 would divide by zero: every mask the same class
    ignore_index: int = 255
    reduce_zero_label: Optional[bool] = None  # None: the dataset's layout decides (data.label_treatment)


class ResizeSpec(_Strict):
    scale: Size = (2048, 512)
    keep_ratio: bool = True
    size_divisor: Optional[int] = Field(32, gt=0, le=1024)


class TestSpec(_Strict):
    resize: Optional[ResizeSpec] = Field(default_factory=ResizeSpec)
    mode: Literal["whole", "slide"] = "slide"
    crop_size: Size = (512, 512)
    stride: Size = (341, 341)
    flip: bool = False
    scales: list[Annotated[float, Field(gt=0, le=16)]] = Field(default_factory=lambda: [1.0], min_length=1)

    @model_validator(mode="after")
    def _check_coverage(self) -> "TestSpec":
        # a stride past the crop leaves rows no window covers (mmseg asserts full coverage); whole mode ignores both
        if self.mode == "slide" and any(s > c for s, c in zip(self.stride, self.crop_size)):
            raise ValueError(f"stride {list(self.stride)} is larger than crop_size {list(self.crop_size)}: the slide "
                             "windows would leave gaps")
        return self


TrainSide = Annotated[int, Field(ge=16, le=MAX_SIDE)]
Ratio = Annotated[float, Field(gt=0, le=64)]


class TrainSpec(_Strict):
    iters: int = Field(160000, gt=0)
    batch_size: int = Field(16, gt=0)
    crop_size: tuple[TrainSide, TrainSide] = (512, 512)
    scale: Size = (2048, 512)
    ratio_range: tuple[Ratio, Ratio] = (0.5, 2.0)
    cat_max_ratio: float = Field(0.75, gt=0, le=1)
    flip_prob: float = Field(0.5, ge=0, le=1)
    photometric: bool = True
    lr: float = Field(12e-5, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(0.01, ge=0)
    layer_decay_rate: float = Field(0.95, gt=0, le=1)
    warmup_iters: int = Field(1500, ge=0)
    warmup_ratio: float = Field(1e-6, gt=0, le=1)
    power: float = Field(1.0, gt=0)
    min_lr: float = Field(0.0, ge=0)
    amp: bool = True
    accum: int = Field(1, gt=0)
    workers: int = Field(2, ge=0)
    eval_every: int = Field(0, ge=0)
    save_every: int = Field(1000, gt=0)
    seed: int = 0


class Spec(_Strict):
    model: ModelSpec = Field(default_factory=ModelSpec)
    data: DataSpec = Field(default_factory=DataSpec)
    test: TestSpec = Field(default_factory=TestSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)

    @model_validator(mode="after")
    def _check_classes(self) -> "Spec":
        k = self.model.num_classes
        if self.data.classes is not None and len(self.data.classes) != k:
            raise ValueError(f"data.classes has {len(self.data.classes)} names but model.num_classes is {k}")
        if self.data.palette is not None and len(self.data.palette) != k:
            raise ValueError(f"data.palette has {len(self.data.palette)} colours but model.num_classes is {k}")
        return self

    # -- derived, never stored twice --
    @property
    def class_names(self) -> list[str]:
        return list(self.data.classes) if self.data.classes else [f"class_{i}" for i in range(self.model.num_classes)]

    @property
    def palette(self) -> list[tuple[int, int, int]]:
        if self.data.palette:
            return [tuple(c) for c in self.data.palette]
        return default_palette(self.model.num_classes)

    def updated(self, **sections: Any) -> "Spec":
        """A validated copy with fields replaced, e.g. `spec.updated(data={"classes": [...]})`."""
        return spec_from_dict(_deep_merge(self.to_dict(), sections), source="spec")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)


def default_palette(n: int) -> list[tuple[int, int, int]]:
    """The PASCAL VOC bit-interleaving palette: distinct, deterministic colours for any class count."""
    out = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out.append((r, g, b))
    return out


def _format_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    tags = set(BACKBONE_TYPES) | set(HEAD_TYPES)
    loc = [p for i, p in enumerate(first["loc"])
           if not (p in tags and i and first["loc"][i - 1] in ("backbone", "decode_head"))]
    path = ".".join(str(p) for p in loc) or "(top level)"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key" + did_you_mean(str(first["loc"][-1]), _keys_at(first["loc"][:-1]))
    more = f" (+{err.error_count() - 1} more problems)" if err.error_count() > 1 else ""
    return f"{source}: {path}: {msg}{more}"


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _keys_at(loc: tuple) -> list[str]:
    """The keys a spec allows at `loc` (a pydantic error location), for 'did you mean'; a union tag in the location
    (a `type` value) narrows nothing and is skipped."""
    models: list[type[BaseModel]] = [Spec]
    for part in loc:
        inner = [m for model in models if part in model.model_fields
                 for m in _models_in(model.model_fields[part].annotation)]
        if inner:
            models = inner
    return sorted({key for model in models for key in model.model_fields})


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def spec_from_dict(data: dict[str, Any], source: str = "spec") -> Spec:
    """Validate a spec dict. A top-level `preset: NAME` key starts from that whole-spec preset."""
    if not isinstance(data, dict):
        raise VitsegError(f"{source}: a spec must be a mapping, got {type(data).__name__}")
    if "preset" in data:
        name = data["preset"]
        if name not in SPEC_PRESETS:
            raise VitsegError(f"{source}: preset: unknown preset {name!r}{did_you_mean(str(name), SPEC_PRESETS)} "
                              f"(allowed: {', '.join(SPEC_PRESETS)})")
        data = _deep_merge(SPEC_PRESETS[name], {k: v for k, v in data.items() if k != "preset"})
    try:
        return Spec.model_validate(data)
    except ValidationError as err:
        raise VitsegError(_format_error(err, source)) from None


def load_spec(spec: "Spec | dict | str | Path | None") -> Spec:
    """A `Spec` from a Spec, a dict, a preset name, or a YAML file path."""
    if spec is None:
        return Spec()
    if isinstance(spec, Spec):
        return spec
    if isinstance(spec, dict):
        return spec_from_dict(spec)
    text = str(spec)
    if text in SPEC_PRESETS:
        return spec_from_dict(SPEC_PRESETS[text], source=f"preset {text}")
    return spec_from_dict(read_spec_data(text), source=text)


# ------------------------------------------------------------------------------ partial specs and --set overrides


def read_spec_data(spec: "str | Path") -> dict[str, Any]:
    """What a user wrote as `--spec`, unvalidated and without defaults: a preset name gives `{'preset': NAME}`, a
    YAML file its mapping. Merged onto another spec, only the fields it names change."""
    text = str(spec)
    if text in SPEC_PRESETS:
        return {"preset": text}
    path = Path(text)
    if not path.exists():
        raise VitsegError(f"{path}: spec file not found{did_you_mean(text, SPEC_PRESETS)} (or give a preset: "
                          f"{', '.join(SPEC_PRESETS)})")
    data = read_yaml_file(path)  # regular files only; size, depth and alias expansion capped
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise VitsegError(f"{path}: a spec must be a mapping, got {type(data).__name__}")
    return data


def merge_spec(base: Spec, data: dict[str, Any], source: str = "spec") -> Spec:
    """`base` with the fields of the partial spec `data` put over it, validated. A `preset` in `data` only fills
    what neither names."""
    return spec_from_dict(_deep_merge(base.to_dict(), data), source=source)


def parse_override(pair: str) -> tuple[list[str], Any]:
    """`'test.crop_size=[512, 512]'` -> (['test', 'crop_size'], [512, 512]); the value is read as YAML."""
    key, sep, raw = pair.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not sep or not key or not all(part.strip() for part in parts):
        raise VitsegError(f"--set {pair!r}: expected key.path=value, e.g. --set test.mode=whole")
    try:
        value = load_yaml(raw, f"--set {key}")
    except VitsegError as err:
        raise VitsegError(f"--set {key}: value {raw!r} is not valid YAML ({str(err).splitlines()[0]})") from None
    return [part.strip() for part in parts], value


def apply_overrides(data: dict[str, Any], pairs: "list[str] | tuple[str, ...]") -> dict[str, Any]:
    """A copy of the spec mapping `data` with each `key.path=value` set (later pairs win); missing sections are
    created. Whether the keys exist is checked when the result is validated (`spec_from_dict` names the path)."""
    out = copy.deepcopy(data)
    for pair in pairs:
        parts, value = parse_override(pair)
        node = out
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise VitsegError(f"--set {'.'.join(parts)}: {'.'.join(parts[:depth + 1])} is a value "
                                  f"({child!r}), not a section")
            node = child
        node[parts[-1]] = value
    return out


def with_overrides(spec: Spec, pairs: "list[str] | tuple[str, ...]") -> Spec:
    """`spec` with `--set key.path=value` overrides applied and validated (errors name the key path)."""
    if not pairs:
        return spec
    return spec_from_dict(apply_overrides(spec.to_dict(), pairs), source="--set")


# The presets of the released official configs (plain data; nothing they import imports this module).
from .official_presets import OFFICIAL_PRESETS  # noqa: E402

SPEC_PRESETS.update(OFFICIAL_PRESETS)
