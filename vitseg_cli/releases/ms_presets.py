"""The official multi-scale + flip tests of the 22 releases, as `<name>_ms` presets (plain data, no torch import).

Each `<name>_ms` preset is the release's single-scale preset with the `test` section of its official `_ms` config in
czczup/ViT-Adapter `segmentation/configs/<dataset>/<name>_ms.py`:
- SETR_Resize (most BEiT-Adapter configs): ratios 0.5 .. 1.75 (2.0 too for Cityscapes) of img_scale, short side never
  below the crop, no multiple of 32, flip;
- PadShortSide (the BEiT-L / BEiTv2-L 896 ADE20K and BEiT-L 896 COCO-Stuff-164k configs): a few ratios of
  img_scale, keep-ratio resize, a multiple of 32, flip, padding to the crop (raw pixel 0 before Normalize; in the
  BEiTv2 config after it, so 0 in normalized values), and (their segmentor `EncoderDecoderMask2FormerAug`) the
  padded scores cut off before resizing back.
The UperNet releases of DeiT, AugReg and Uni-Perceiver publish no `_ms` config: their multi-scale numbers come from
the official `segmentation/test.py --aug-test`, which sets ratios 0.5 .. 1.75 and flip on the single-scale pipeline
(mmseg's MultiScaleFlipAug). Two releases publish neither a multi-scale number nor an `_ms` config: no preset.
"""

from __future__ import annotations

import copy
from typing import Any, Optional

from ..errors import VitsegError
from .presets import OFFICIAL_PRESETS

MS_SUFFIX = "_ms"
_RATIOS = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]


def _setr(min_short: int, ratios: list[float] = _RATIOS) -> dict[str, Any]:
    return {"scales": ratios, "flip": True, "resize_rule": "setr", "min_short_side": min_short,
            "resize": {"size_divisor": None}}


def _pad(ratios: list[float], normalized: bool = False) -> dict[str, Any]:
    return {"scales": ratios, "flip": True, "pad_short_side": 896, "crop_pad": True, "resize": {"size_divisor": 32},
            "pad_normalized": normalized}


_AUG_TEST = {"scales": _RATIOS, "flip": True}  # tools/test.py --aug-test on the single-scale pipeline

# release -> (the test fields its multi-scale test changes, where they come from); None: no multi-scale test
MS_TESTS: dict[str, Optional[tuple[dict[str, Any], str]]] = {
    "upernet_deit_adapter_tiny_512_160k_ade20k": (_AUG_TEST, "test.py --aug-test (no _ms config)"),
    "upernet_deit_adapter_small_512_160k_ade20k": (_AUG_TEST, "test.py --aug-test (no _ms config)"),
    "upernet_deit_adapter_base_512_160k_ade20k": (_AUG_TEST, "test.py --aug-test (no _ms config)"),
    "upernet_augreg_adapter_tiny_512_160k_ade20k": (_AUG_TEST, "test.py --aug-test (no _ms config)"),
    "upernet_augreg_adapter_base_512_160k_ade20k": (_AUG_TEST, "test.py --aug-test (no _ms config)"),
    "upernet_augreg_adapter_large_512_160k_ade20k": (_AUG_TEST, "test.py --aug-test (no _ms config)"),
    "upernet_uniperceiver_adapter_large_512_160k_ade20k": (_AUG_TEST, "test.py --aug-test (no _ms config)"),
    "upernet_beit_adapter_large_640_160k_ade20k": (_setr(640), "ade20k/*_ms.py, SETR_Resize"),
    "mask2former_beit_adapter_large_640_160k_ade20k": (_setr(640), "ade20k/*_ms.py, SETR_Resize"),
    "mask2former_beit_adapter_large_896_80k_ade20k": (_pad([640 / 896, 768 / 896, 1.0]),
                                                      "ade20k/*_ms.py, PadShortSide"),
    # its PadShortSide comes after Normalize: the padding is 0 in normalized values, the mean colour
    "mask2former_beitv2_adapter_large_896_80k_ade20k": (_pad([800 / 896, 832 / 896, 864 / 896, 1.0], True),
                                                        "ade20k/*_ms.py, PadShortSide after Normalize"),
    "mask2former_beit_adapter_large_896_80k_cityscapes": (_setr(896, _RATIOS + [2.0]),
                                                          "cityscapes/*_ms.py, SETR_Resize"),
    "mask2former_beit_adapter_large_896_80k_mapillary": None,
    "mask2former_beit_adapter_base_512_40k_cocostuff10k": (_setr(512), "coco_stuff10k/*_ms.py, SETR_Resize"),
    "upernet_beit_adapter_large_512_80k_cocostuff10k": (_setr(512), "coco_stuff10k/*_ms.py, SETR_Resize"),
    "mask2former_beit_adapter_large_512_40k_cocostuff10k": (_setr(512), "coco_stuff10k/*_ms.py, SETR_Resize"),
    "upernet_beit_adapter_large_640_80k_cocostuff164k": (_setr(640), "coco_stuff164k/*_ms.py, SETR_Resize"),
    "mask2former_beit_adapter_large_896_80k_cocostuff164k": (_pad([640 / 896, 768 / 896, 1.0]),
                                                             "coco_stuff164k/*_ms.py, PadShortSide"),
    "mask2former_beitv2_adapter_large_896_80k_cocostuff164k": None,
    "mask2former_beit_adapter_base_480_40k_pascal_context_59": (_setr(480), "pascal_context/*_ms.py, SETR_Resize"),
    "upernet_beit_adapter_large_480_80k_pascal_context_59": (_setr(480), "pascal_context/*_ms.py, SETR_Resize"),
    "mask2former_beit_adapter_large_480_40k_pascal_context_59": (_setr(480), "pascal_context/*_ms.py, SETR_Resize"),
}


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def ms_test(name: str) -> dict[str, Any]:
    """The whole `test` section of release `name`'s official multi-scale + flip test."""
    return _merged(OFFICIAL_PRESETS[name]["test"], MS_TESTS[name][0])


MS_PRESETS: dict[str, dict[str, Any]] = {
    name + MS_SUFFIX: {**copy.deepcopy(OFFICIAL_PRESETS[name]), "test": ms_test(name)}
    for name, ms in MS_TESTS.items() if ms is not None
}


def ms_source(name: str) -> str:
    """Where release `name`'s multi-scale settings come from, or why it has none (for `vitseg zoo`)."""
    ms = MS_TESTS.get(name)
    return "none: the release publishes no multi-scale config or number" if ms is None else \
        f"preset {name}{MS_SUFFIX} ({ms[1]})"


def tta_test(weights: Optional[str], spec: Optional[str]) -> dict[str, Any]:
    """`--tta`: the official multi-scale + flip `test` section for a zoo name (`--weights`) or an official preset
    (`--spec`, single- or multi-scale); a clear error when neither names a release that has one."""
    for given in (spec, weights):
        name = str(given) if given is not None else ""
        name = name[:-len(MS_SUFFIX)] if name.endswith(MS_SUFFIX) and name[:-len(MS_SUFFIX)] in MS_TESTS else name
        if name in MS_TESTS:
            if MS_TESTS[name] is None:
                raise VitsegError(f"--tta: release {name} has no official multi-scale test (no _ms config, no "
                                  "multi-scale number); use --scales/--flip")
            return ms_test(name)
    raise VitsegError("--tta selects a release's official multi-scale + flip test: give a zoo name as --weights or "
                      "an official preset as --spec (vitseg zoo lists them), or set --scales/--flip yourself")
