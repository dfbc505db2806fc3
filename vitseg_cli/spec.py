"""YAML spec -> typed, validated config (DESIGN §3), with the official ViT-Adapter argument names and presets.

A spec is the one description of a model and how to feed it; train, eval and predict all build their model from it.
`load_spec` takes a YAML path, a dict, a preset name or a `Spec`; unknown keys and bad values raise `VitsegError`
naming the key path.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import VitsegError

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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


Pair = tuple[int, int]


class BackboneSpec(_Strict):
    type: Literal["vit_adapter"] = "vit_adapter"
    preset: Optional[Literal["nano", "tiny", "small", "base", "large"]] = None
    pretrain_size: int = Field(224, gt=0, multiple_of=16)
    patch_size: Literal[16] = 16
    embed_dim: int = Field(192, gt=0)
    depth: int = Field(12, gt=0)
    num_heads: int = Field(3, gt=0)
    mlp_ratio: float = Field(4.0, gt=0)
    drop_path_rate: float = Field(0.1, ge=0, lt=1)
    conv_inplane: int = Field(64, gt=0)
    n_points: int = Field(4, gt=0)
    deform_num_heads: int = Field(6, gt=0)
    cffn_ratio: float = Field(0.25, gt=0)
    deform_ratio: float = Field(1.0, gt=0)
    interaction_indexes: list[Pair] = Field(default_factory=lambda: [tuple(p) for p in _STD_INDEXES])
    add_vit_feature: bool = True
    use_extra_extractor: bool = True
    with_cffn: bool = True
    layer_scale: bool = True
    init_values: float = 0.0

    @model_validator(mode="before")
    @classmethod
    def _fill_from_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") in BACKBONE_PRESETS:
            return {**BACKBONE_PRESETS[data["preset"]], **data}
        return data

    @model_validator(mode="after")
    def _check_shapes(self) -> "BackboneSpec":
        d = self.embed_dim
        if d % self.num_heads:
            raise ValueError(f"embed_dim {d} is not divisible by num_heads {self.num_heads}")
        value_dim = int(d * self.deform_ratio)
        if value_dim % self.deform_num_heads:
            raise ValueError(f"embed_dim*deform_ratio = {value_dim} is not divisible by deform_num_heads "
                             f"{self.deform_num_heads}")
        if len(self.interaction_indexes) != 4:
            raise ValueError("interaction_indexes must hold 4 [first, last] block ranges (one per pyramid level)")
        expected = 0
        for first, last in self.interaction_indexes:
            if first != expected or last < first:
                raise ValueError(f"interaction_indexes must be consecutive block ranges starting at 0, got "
                                 f"{[list(p) for p in self.interaction_indexes]}")
            expected = last + 1
        if expected != self.depth:
            raise ValueError(f"interaction_indexes end at block {expected - 1} but depth is {self.depth}")
        return self


class DecodeHeadSpec(_Strict):
    type: Literal["upernet"] = "upernet"
    channels: int = Field(512, gt=0)
    pool_scales: list[int] = Field(default_factory=lambda: [1, 2, 3, 6])
    dropout: float = Field(0.1, ge=0, lt=1)


class AuxHeadSpec(_Strict):
    type: Literal["fcn"] = "fcn"
    channels: int = Field(256, gt=0)
    in_index: int = Field(2, ge=0, le=3)
    num_convs: int = Field(1, ge=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    loss_weight: float = Field(0.4, ge=0)


class ModelSpec(_Strict):
    backbone: BackboneSpec = Field(default_factory=BackboneSpec)
    decode_head: Optional[DecodeHeadSpec] = None
    auxiliary_head: Optional[AuxHeadSpec] = None
    num_classes: int = Field(150, gt=0)


class DataSpec(_Strict):
    classes: Optional[list[str]] = None
    palette: Optional[list[tuple[int, int, int]]] = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    ignore_index: int = 255
    reduce_zero_label: bool = False


class ResizeSpec(_Strict):
    scale: tuple[int, int] = (2048, 512)
    keep_ratio: bool = True
    size_divisor: Optional[int] = Field(32, gt=0)


class TestSpec(_Strict):
    resize: Optional[ResizeSpec] = Field(default_factory=ResizeSpec)
    mode: Literal["whole", "slide"] = "slide"
    crop_size: tuple[int, int] = (512, 512)
    stride: tuple[int, int] = (341, 341)
    flip: bool = False
    scales: list[float] = Field(default_factory=lambda: [1.0])


class TrainSpec(_Strict):
    iters: int = Field(160000, gt=0)
    batch_size: int = Field(16, gt=0)
    crop_size: tuple[int, int] = (512, 512)
    scale: tuple[int, int] = (2048, 512)
    ratio_range: tuple[float, float] = (0.5, 2.0)
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
    path = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    more = f" (+{err.error_count() - 1} more problems)" if err.error_count() > 1 else ""
    return f"{source}: {path}: {msg}{more}"


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
            raise VitsegError(f"{source}: preset: unknown preset {name!r} (allowed: {', '.join(SPEC_PRESETS)})")
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
        raise VitsegError(f"{path}: spec file not found (or give a preset: {', '.join(SPEC_PRESETS)})")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise VitsegError(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from None
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
        value = yaml.safe_load(raw)
    except yaml.YAMLError as err:
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
