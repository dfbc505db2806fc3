"""The sizes of every multi-scale test step, against numbers worked out by hand from the official rules.

Rules (mmseg 0.20.2 MultiScaleFlipAug, mmcv 1.4.2 imrescale, ViT-Adapter SETR_Resize / PadShortSide):
- ratio r of img_scale (L, S): scale (int(L r), int(S r));
- mmseg Resize(keep_ratio): f = min(long(scale) / long side, short(scale) / short side), side -> int(side f + 0.5);
- SETR_Resize: t = max(crop, short(scale)); target (t, t * long side / short side), then the same imrescale, so the
  long side is never capped by L;
- ResizeToMultiple(32): each side rounded up to a multiple of 32; PadShortSide(896): each side at least 896.
Images are given as width x height; sizes below are (height, width).
"""

from __future__ import annotations

import pytest

from vitseg_cli.data.test_transforms import padded_size, round_up
from vitseg_cli.engine.inference import resized_shape
from vitseg_cli.spec import ResizeSpec

R6 = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
IMAGES = {"683x512": (512, 683), "1500x300": (300, 1500), "300x700": (700, 300)}

# SETR_Resize configs: (img_scale, crop, ratios) -> per image the (h, w) of each ratio.
SETR = {
    # ADE20K / COCO-Stuff-164k 640 (img_scale (2048, 640) and (2560, 640) give the same: the short side decides)
    # 683x512, r=0.5: scale (1024, 320), 320 < 640 -> t=640; target (640, 640*683/512=853.75);
    #   f = 640/512 = 1.25 -> (int(512*1.25+.5), int(683*1.25+.5)) = (640, int(854.25)) = (640, 854)
    # 683x512, r=1.25: scale (2560, 800) -> t=800, f=1.5625 -> (800, int(1067.6875)) = (800, 1067)
    # 1500x300, r=1.75: scale (3584, 1120) -> f=1120/300 -> (1120, 5600): past 3584, not capped
    ((2048, 640), 640, R6): {
        "683x512": [(640, 854), (640, 854), (640, 854), (800, 1067), (960, 1281), (1120, 1494)],
        "1500x300": [(640, 3200), (640, 3200), (640, 3200), (800, 4000), (960, 4800), (1120, 5600)],
        "300x700": [(1493, 640), (1493, 640), (1493, 640), (1867, 800), (2240, 960), (2613, 1120)]},
    ((2560, 640), 640, R6): {
        "683x512": [(640, 854), (640, 854), (640, 854), (800, 1067), (960, 1281), (1120, 1494)],
        "1500x300": [(640, 3200), (640, 3200), (640, 3200), (800, 4000), (960, 4800), (1120, 5600)],
        "300x700": [(1493, 640), (1493, 640), (1493, 640), (1867, 800), (2240, 960), (2613, 1120)]},
    # COCO-Stuff-10k 512. 300x700, r=1: t=512, target (512*700/300=1194.67, 512), f=512/300 ->
    #   (int(700*1.70667+.5), 512) = (int(1195.17), 512) = (1195, 512)
    ((2048, 512), 512, R6): {
        "683x512": [(512, 683), (512, 683), (512, 683), (640, 854), (768, 1025), (896, 1195)],
        "1500x300": [(512, 2560), (512, 2560), (512, 2560), (640, 3200), (768, 3840), (896, 4480)],
        "300x700": [(1195, 512), (1195, 512), (1195, 512), (1493, 640), (1792, 768), (2091, 896)]},
    # Pascal Context 480 (img_scale (4096, 520)). 683x512, r=1: scale (4096, 520) -> t=520, f=520/512=1.015625
    #   -> (520, int(693.67+.5)) = (520, 694); r=0.5: scale (2048, 260) -> t=480, f=0.9375 -> (480, 640)
    ((4096, 520), 480, R6): {
        "683x512": [(480, 640), (480, 640), (520, 694), (650, 867), (780, 1041), (910, 1214)],
        "1500x300": [(480, 2400), (480, 2400), (520, 2600), (650, 3250), (780, 3900), (910, 4550)],
        "300x700": [(1120, 480), (1120, 480), (1213, 520), (1517, 650), (1820, 780), (2123, 910)]},
    # Cityscapes 896 (img_scale (2048, 1024), ratios up to 2.0). 1500x300, r=2.0: scale (4096, 2048) -> t=2048,
    #   f=2048/300 -> (2048, 10240), where mmseg's Resize would cap the long side at 4096
    ((2048, 1024), 896, R6 + (2.0,)): {
        "683x512": [(896, 1195), (896, 1195), (1024, 1366), (1280, 1708), (1536, 2049), (1792, 2391), (2048, 2732)],
        "1500x300": [(896, 4480), (896, 4480), (1024, 5120), (1280, 6400), (1536, 7680), (1792, 8960),
                     (2048, 10240)],
        "300x700": [(2091, 896), (2091, 896), (2389, 1024), (2987, 1280), (3584, 1536), (4181, 1792),
                    (4779, 2048)]},
}

# PadShortSide configs (img_scale (3584, 896), keep-ratio Resize, ResizeToMultiple 32, pad 896):
# per image and ratio ((h, w) after the multiple of 32, (h, w) after the pad).
PAD = {
    # ADE20K / COCO-Stuff-164k BEiT-L 896. 683x512, r=640/896: scale (2560, 640), f=min(2560/683, 640/512)=1.25
    #   -> (640, 854) -> multiple of 32 (640, 864) -> pad (896, 896)
    # 1500x300, r=1: f=min(3584/1500, 896/300)=2.38933 -> (int(717.3), 3584) = (717, 3584) -> (736, 3584) -> (896, 3584)
    (640 / 896, 768 / 896, 1.0): {
        "683x512": [((640, 864), (896, 896)), ((768, 1056), (896, 1056)), ((896, 1216), (896, 1216))],
        "1500x300": [((512, 2560), (896, 2560)), ((640, 3072), (896, 3072)), ((736, 3584), (896, 3584))],
        "300x700": [((1504, 640), (1504, 896)), ((1792, 768), (1792, 896)), ((2112, 896), (2112, 896))]},
    # ADE20K BEiTv2-L 896
    (800 / 896, 832 / 896, 864 / 896, 1.0): {
        "683x512": [((800, 1088), (896, 1088)), ((832, 1120), (896, 1120)), ((864, 1184), (896, 1184)),
                    ((896, 1216), (896, 1216))],
        "1500x300": [((640, 3200), (896, 3200)), ((672, 3328), (896, 3328)), ((704, 3456), (896, 3456)),
                     ((736, 3584), (896, 3584))],
        "300x700": [((1888, 800), (1888, 896)), ((1952, 832), (1952, 896)), ((2016, 864), (2016, 896)),
                    ((2112, 896), (2112, 896))]},
}

# mmseg MultiScaleFlipAug as test.py --aug-test runs it on the 512 UperNet releases (img_scale (2048, 512),
# keep-ratio Resize, ResizeToMultiple 32): (h, w) after the Resize, then after the multiple of 32.
# 1500x300, r=1: f=min(2048/1500, 512/300)=1.36533 -> (int(410.1), 2048) = (410, 2048) -> (416, 2048)
AUG_TEST = {
    "683x512": ([(256, 342), (384, 512), (512, 683), (640, 854), (768, 1025), (896, 1195)],
                [(256, 352), (384, 512), (512, 704), (640, 864), (768, 1056), (896, 1216)]),
    "1500x300": ([(205, 1024), (307, 1536), (410, 2048), (512, 2560), (614, 3072), (717, 3584)],
                 [(224, 1024), (320, 1536), (416, 2048), (512, 2560), (640, 3072), (736, 3584)]),
    "300x700": ([(597, 256), (896, 384), (1195, 512), (1493, 640), (1792, 768), (2091, 896)],
                [(608, 256), (896, 384), (1216, 512), (1504, 640), (1792, 768), (2112, 896)]),
}


@pytest.mark.parametrize("config", list(SETR), ids=lambda c: f"{c[0][0]}x{c[0][1]}-crop{c[1]}")
def test_setr_resize_sizes(config):
    scale, crop, ratios = config
    resize = ResizeSpec(scale=scale, keep_ratio=True, size_divisor=None)
    for image, want in SETR[config].items():
        h, w = IMAGES[image]
        got = [resized_shape(h, w, resize, r, "setr", crop) for r in ratios]
        assert got == want, image


@pytest.mark.parametrize("ratios", list(PAD), ids=lambda r: f"{len(r)}-ratios")
def test_pad_short_side_sizes(ratios):
    resize = ResizeSpec(scale=(3584, 896), keep_ratio=True, size_divisor=32)
    for image, want in PAD[ratios].items():
        h, w = IMAGES[image]
        multiple = [round_up(*resized_shape(h, w, resize, r), 32) for r in ratios]
        assert [(m, padded_size(*m, 896)) for m in multiple] == want, image


def test_mmseg_multi_scale_flip_aug_sizes():
    resize = ResizeSpec(scale=(2048, 512), keep_ratio=True, size_divisor=32)
    for image, (resized, multiple) in AUG_TEST.items():
        h, w = IMAGES[image]
        got = [resized_shape(h, w, resize, r) for r in R6]
        assert got == resized, image
        assert [round_up(*s, 32) for s in got] == multiple, image


def test_the_setr_rule_differs_from_mmseg_where_it_should():
    """At ratio 1 the SETR short side equals mmseg's unless the long side caps mmseg's resize (1500x300) or the
    scaled short side is below the crop (Pascal Context's 520 vs 480 is not)."""
    resize = ResizeSpec(scale=(2048, 640), keep_ratio=True, size_divisor=None)
    assert resized_shape(512, 683, resize, 1.0) == resized_shape(512, 683, resize, 1.0, "setr", 640) == (640, 854)
    assert resized_shape(300, 1500, resize, 1.0) == (410, 2048)  # f = 2048/1500: capped by the long side
    assert resized_shape(300, 1500, resize, 1.0, "setr", 640) == (640, 3200)


def test_pad_and_multiple_leave_big_enough_sides_alone():
    assert padded_size(900, 1000, 896) == (900, 1000)
    assert padded_size(100, 1000, None) == (100, 1000)
    assert round_up(640, 854, None) == (640, 854)
    assert round_up(641, 854, 32) == (672, 864)
