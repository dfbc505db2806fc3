"""YAML spec -> typed, validated config, with the official ViT-Adapter argument names.

A spec is the one description of a model and how to feed it; train, eval and predict all build their model from it.
`load_spec` takes a YAML path, a dict, a preset name or a `Spec`; unknown keys and bad values raise `VitsegError`
naming the key path. The `model.backbone` / `decode_head` / `auxiliary_head` sections are the classes of
the families their `type` names (model/registry.py); the presets are in presets.py.
"""

from __future__ import annotations

import copy
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import yaml
from pydantic import BaseModel, Field, SerializeAsAny, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from .data.classes import default_palette
from .errors import VitsegError, did_you_mean, first_line
from .model.registry import DEFAULT_TYPES, section_types
from .presets import SPEC_PRESETS
from .safe_yaml import load_yaml, read_yaml_file
from .spec_base import MAX_CLASSES, MAX_SIDE, BackboneConfig, HeadConfig, Side, Size
from .spec_base import Strict as _Strict

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)

_SLOT_BASES = {"backbone": BackboneConfig, "decode_head": HeadConfig, "auxiliary_head": HeadConfig}


def _unknown_type(slot: str, kind: Any, allowed: dict[str, Any]) -> ValidationError:
    message = f"unknown type {kind!r}{did_you_mean(str(kind), allowed)} (allowed: {', '.join(allowed)})"
    error = PydanticCustomError("unknown_type", "{message}", {"message": message})
    return ValidationError.from_exception_data(slot, [InitErrorDetails(type=error, loc=("type",), input=kind)])


def _family_section(slot: str, value: Any, handler: Any) -> Any:
    """A mapping becomes the section class of the family its `type` names (the slot's default family when it has
    none), looked up in the model registry; errors inside keep their key path."""
    if not isinstance(value, dict):
        return handler(value)
    allowed = section_types(slot)
    kind = value.get("type", DEFAULT_TYPES[slot])
    if not isinstance(kind, str) or kind not in allowed:
        raise _unknown_type(slot, kind, allowed)
    return allowed[kind].model_validate({**value, "type": kind})


def _default_section(slot: str) -> Any:
    return section_types(slot)[DEFAULT_TYPES[slot]]()


class ModelSpec(_Strict):
    backbone: SerializeAsAny[BackboneConfig] = Field(default_factory=lambda: _default_section("backbone"))
    decode_head: Optional[SerializeAsAny[HeadConfig]] = None
    auxiliary_head: Optional[SerializeAsAny[HeadConfig]] = None
    num_classes: int = Field(150, gt=0, le=MAX_CLASSES)

    @field_validator("backbone", "decode_head", "auxiliary_head", mode="wrap")
    @classmethod
    def _by_type(cls, value: Any, handler: Any, info: ValidationInfo) -> Any:
        return _family_section(info.field_name, value, handler)


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


MAX_TEST_SCALE = 16.0  # a test scale ratio past this is a typo, not a test


class TestSpec(_Strict):
    resize: Optional[ResizeSpec] = Field(default_factory=ResizeSpec)
    mode: Literal["whole", "slide"] = "slide"
    crop_size: Size = (512, 512)
    stride: Size = (341, 341)
    flip: bool = False
    scales: list[Annotated[float, Field(gt=0, le=MAX_TEST_SCALE)]] = Field(default_factory=lambda: [1.0], min_length=1)
    # `dinov3`: the official DINOv3 test (views by short side at each of `scales`, flips, bf16 window scores)
    procedure: Literal["mmseg", "dinov3"] = "mmseg"
    short_side: Optional[Side] = None
    # how each scale's size is found: "mmseg" = keep-ratio Resize to resize.scale x ratio (long side capped);
    # "setr" = ViT-Adapter's SETR_Resize: short side max(min_short_side, int(short of resize.scale x ratio)), aspect
    # kept, long side uncapped
    resize_rule: Literal["mmseg", "setr"] = "mmseg"
    min_short_side: Optional[Side] = None  # setr only: the short side's floor (the config's crop_size[0])
    # PadShortSide: after the resize (and the flip), pad bottom/right with raw pixel 0 up to this, before normalizing
    pad_short_side: Optional[Side] = None
    pad_normalized: bool = False  # pad after normalizing instead (0 = the mean colour), as one released config does
    # slide mode with padding: cut the padded part off the scores before resizing them back
    # (the official EncoderDecoderMask2FormerAug segmentor of the PadShortSide configs)
    crop_pad: bool = False

    @model_validator(mode="after")
    def _check_coverage(self) -> "TestSpec":
        if self.procedure == "dinov3" and self.short_side is None:
            raise ValueError("procedure dinov3 needs short_side (the short side of the ratio-1 view)")
        # a stride past the crop leaves rows no window covers (mmseg asserts full coverage); whole mode ignores both
        if self.mode == "slide" and any(s > c for s, c in zip(self.stride, self.crop_size)):
            raise ValueError(f"stride {list(self.stride)} is larger than crop_size {list(self.crop_size)}: the slide "
                             "windows would leave gaps")
        return self

    @model_validator(mode="after")
    def _check_multi_scale(self) -> "TestSpec":
        if self.resize_rule == "setr":
            if self.resize is None or not self.resize.keep_ratio:
                raise ValueError("resize_rule setr needs a keep-ratio resize (resize.scale, resize.keep_ratio: true)")
            if self.min_short_side is None:
                raise ValueError("resize_rule setr needs min_short_side (the official SETR_Resize crop_size[0])")
        elif self.min_short_side is not None:
            raise ValueError("min_short_side is read only by resize_rule setr")
        if (self.crop_pad or self.pad_normalized) and self.pad_short_side is None:
            raise ValueError("crop_pad and pad_normalized need pad_short_side (there is no padding)")
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


def _format_error(err: ValidationError, source: str, data: Any = None) -> str:
    first = err.errors()[0]
    path = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key" + did_you_mean(str(first["loc"][-1]), _keys_at(first["loc"][:-1], data))
    more = f" (+{err.error_count() - 1} more problems)" if err.error_count() > 1 else ""
    return f"{source}: {path}: {msg}{more}"


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _keys_at(loc: tuple, data: Any) -> list[str]:
    """The keys a spec allows at `loc` (a pydantic error location), for 'did you mean'; a family section's keys are
    those of the family its `type` in `data` names."""
    models: list[type[BaseModel]] = [Spec]
    for part in loc:
        data = data.get(part) if isinstance(data, dict) else None
        inner = [m for model in models if part in model.model_fields
                 for m in _models_in(model.model_fields[part].annotation)]
        if part in _SLOT_BASES and any(m is _SLOT_BASES[part] for m in inner):
            kind = data.get("type", DEFAULT_TYPES[part]) if isinstance(data, dict) else DEFAULT_TYPES[part]
            inner = [section_types(part).get(kind, _SLOT_BASES[part])]
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
            raise VitsegError(f"{source}: preset: unknown preset {name!r}{did_you_mean(str(name), SPEC_PRESETS)}; "
                              f"{PRESETS_HINT}")
        data = _deep_merge(SPEC_PRESETS[name], {k: v for k, v in data.items() if k != "preset"})
    try:
        return Spec.model_validate(data)
    except ValidationError as err:
        raise VitsegError(_format_error(err, source, data)) from None


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


PRESETS_HINT = "`vitseg info --presets` lists the presets"


def read_spec_data(spec: "str | Path") -> dict[str, Any]:
    """What a user wrote as `--spec`, unvalidated and without defaults: a preset name gives `{'preset': NAME}`, a
    YAML file its mapping. Merged onto another spec, only the fields it names change."""
    text = str(spec)
    if text in SPEC_PRESETS:
        return {"preset": text}
    path = Path(text)
    if not path.exists():
        raise VitsegError(f"{path}: spec file not found, and not a preset{did_you_mean(text, SPEC_PRESETS)}; "
                          f"{PRESETS_HINT}")
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
        raise VitsegError(f"--set {key}: value {raw!r} is not valid YAML ({first_line(err, limit=10_000)})") from None
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
