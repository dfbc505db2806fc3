"""An official config's test procedure (`test_cfg` + the test pipeline) -> the spec's `test` section and mean/std.

Every step of the test pipelines of the released configs, single- and multi-scale, has a translation: LoadImageFromFile
and one MultiScaleFlipAug (img_scale, img_ratios, flip) whose transforms are mmseg's Resize (keep ratio or not),
ResizeToMultiple, ViT-Adapter's SETR_Resize, RandomFlip, ViT-Adapter's PadShortSide (before Normalize: raw pixels;
after it: normalized values), Normalize (RGB), ImageToTensor and Collect. The segmentor type says whether padded scores are cut off before they are
resized back (`EncoderDecoderMask2FormerAug`). Any other step, or one of these with settings or in an order that
vitseg would compute differently, is an error (`ConfigRefused`), never a note: a spec read from a config
tests the way the config does or not at all.
"""

from __future__ import annotations

import reprlib
from typing import Any, Optional

from .official_fields import ConfigRefused

_show = reprlib.repr
_NO_OPS = {"RandomFlip", "ImageToTensor", "Collect", "DefaultFormatBundle"}
_OUTER_NO_OPS = {"LoadImageFromFile"}
# segmentors whose slide inference cuts the PadShortSide padding off the scores before resizing them back
_UNPADDING_SEGMENTORS = {"EncoderDecoderMask2FormerAug"}


def _pair(value: Any, where: str) -> list[int]:
    if isinstance(value, int):
        return [value, value]
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return list(value)
    raise ConfigRefused(f"config: {where} {_show(value)} is not an int or a pair of ints")


def _dict(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigRefused(f"config: {where} must be a dict(...), got {type(value).__name__}")
    return value


def test_pipeline(cfg: dict[str, Any]) -> list:
    """The pipeline the official test actually ran: data.test.pipeline (the top-level test_pipeline is only a name)."""
    data = _dict(cfg.get("data", {}), "data")
    pipeline = _dict(data.get("test", {}), "data.test").get("pipeline")
    if pipeline is None:
        pipeline = cfg.get("test_pipeline")
    if not isinstance(pipeline, (list, tuple)):
        raise ConfigRefused("config: no test pipeline (data.test.pipeline or test_pipeline)")
    return list(pipeline)


def _slide(model: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    test_cfg = model.get("test_cfg") or cfg.get("test_cfg") or {}
    mode = test_cfg.get("mode", "whole")
    if mode not in ("whole", "slide"):
        raise ConfigRefused(f"config: model.test_cfg.mode {_show(mode)} is not whole or slide")
    test: dict[str, Any] = {"mode": mode}
    if mode == "slide":
        for key in ("crop_size", "stride"):
            if key not in test_cfg:
                raise ConfigRefused(f"config: model.test_cfg.{key} is missing")
            test[key] = _pair(test_cfg[key], f"model.test_cfg.{key}")
    return test


def _multi_scale_flip(pipeline: list) -> dict[str, Any]:
    """The one MultiScaleFlipAug; any other outer step than loading the image is refused."""
    augs = []
    for step in pipeline:
        kind = _dict(step, "a test pipeline step").get("type")
        if kind == "MultiScaleFlipAug":
            augs.append(step)
        elif kind not in _OUTER_NO_OPS:
            raise ConfigRefused(f"config: test pipeline step {_show(kind)} has no vitseg translation")
    if len(augs) != 1:
        raise ConfigRefused(f"config: the test pipeline has {len(augs)} MultiScaleFlipAug steps, vitseg "
                                  "reads one")
    aug = augs[0]
    if aug.get("flip_direction", "horizontal") not in ("horizontal", ["horizontal"]):
        raise ConfigRefused("config: only horizontal test flips are supported")
    return aug


def _scale(aug: dict[str, Any]) -> Optional[list[int]]:
    scale = aug.get("img_scale")
    if isinstance(scale, list) and len(scale) == 1:
        scale = scale[0]
    if scale is not None and (not isinstance(scale, (list, tuple)) or len(scale) != 2
                              or not all(isinstance(s, int) for s in scale)):
        raise ConfigRefused(f"config: test img_scale {_show(scale)} is not one (long, short) pair")
    return list(scale) if scale is not None else None


def _setr(step: dict[str, Any], scale: Optional[list[int]], test: dict[str, Any]) -> dict[str, Any]:
    if not step.get("keep_ratio", True):
        raise ConfigRefused("config: SETR_Resize with keep_ratio=False has no vitseg translation")
    resize = {"scale": scale, "keep_ratio": True, "size_divisor": None}
    if step.get("setr_multi_scale", False):
        crop = step.get("crop_size")
        if crop is None:
            raise ConfigRefused("config: SETR_Resize with setr_multi_scale needs its crop_size")
        test["resize_rule"], test["min_short_side"] = "setr", _pair(crop, "SETR_Resize crop_size")[0]
    return resize  # without setr_multi_scale it is mmcv's plain keep-ratio imrescale, as Resize


def _pad(step: dict[str, Any], seen: set[str], test: dict[str, Any]) -> int:
    if step.get("pad_val", 0) != 0:
        raise ConfigRefused(f"config: PadShortSide pad_val {_show(step.get('pad_val'))}: vitseg pads with 0")
    if "Normalize" in seen:
        test["pad_normalized"] = True  # the BEiTv2-L 896 ADE20K config: its padding is the mean colour
    if "RandomFlip" not in seen:
        raise ConfigRefused("config: PadShortSide before RandomFlip has no vitseg translation (vitseg pads "
                                  "after the flip)")
    size = step.get("size")
    if not isinstance(size, int) or size < 1:
        raise ConfigRefused(f"config: PadShortSide size {_show(size)} is not a positive int")
    return size


def _transforms(aug: dict[str, Any], scale: Optional[list[int]], test: dict[str, Any],
                data: dict[str, Any]) -> Optional[dict[str, Any]]:
    """Walk MultiScaleFlipAug's transforms in order, filling `test` and `data`; the resize section or None."""
    resize: Optional[dict[str, Any]] = None
    seen: set[str] = set()
    for step in aug.get("transforms", []):
        kind = _dict(step, "a test transform").get("type")
        if kind in ("Resize", "SETR_Resize") and ({"RandomFlip", "PadShortSide", "Normalize"} & seen or resize):
            raise ConfigRefused(f"config: {kind} after another resize, a flip, a pad or Normalize has no "
                                      "vitseg translation")
        if kind == "Resize":
            resize = {"scale": scale, "keep_ratio": step.get("keep_ratio", True), "size_divisor": None}
        elif kind == "SETR_Resize":
            resize = _setr(step, scale, test)
        elif kind == "ResizeToMultiple":
            if resize is None or {"RandomFlip", "PadShortSide", "Normalize"} & seen:
                raise ConfigRefused("config: ResizeToMultiple must follow the test Resize directly")
            if step.get("interpolation") not in (None, "bilinear"):
                raise ConfigRefused(f"config: ResizeToMultiple interpolation {_show(step['interpolation'])}: "
                                          "vitseg resizes bilinearly")
            resize["size_divisor"] = step.get("size_divisor", 32)
        elif kind == "PadShortSide":
            test["pad_short_side"] = _pad(step, seen, test)
        elif kind == "Normalize":
            if not step.get("to_rgb", True):
                raise ConfigRefused("config: Normalize with to_rgb=False (a BGR model) is not supported")
            if "mean" not in step or "std" not in step:
                raise ConfigRefused("config: the test Normalize has no mean/std")
            data["mean"], data["std"] = list(step["mean"]), list(step["std"])
        elif kind not in _NO_OPS:
            raise ConfigRefused(f"config: test transform {_show(kind)} has no vitseg translation")
        seen.add(kind)
    return resize


def test_section(cfg: dict[str, Any], model: dict[str, Any], notes: list[str]) -> tuple[dict, dict]:
    """(spec.test, the normalisation part of spec.data) from the config's test_cfg, segmentor type and test
    pipeline."""
    test = _slide(model, cfg)
    aug = _multi_scale_flip(test_pipeline(cfg))
    scale = _scale(aug)
    ratios = aug.get("img_ratios")
    test["scales"] = [float(r) for r in (ratios if isinstance(ratios, (list, tuple)) else [ratios or 1.0])]
    test["flip"] = bool(aug.get("flip", False))
    data: dict[str, Any] = {}
    resize = _transforms(aug, scale, test, data)
    if resize is not None and resize["scale"] is None:
        raise ConfigRefused("config: the test Resize has no img_scale")
    test["resize"] = resize
    if test.get("pad_short_side") and model.get("type") in _UNPADDING_SEGMENTORS:
        test["crop_pad"] = True
    if "mean" not in data:
        notes.append("config: the test pipeline has no Normalize; vitseg's default mean/std are used")
    return test, data
