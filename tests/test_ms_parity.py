"""The official multi-scale tests end to end: the mini_ms_setr / mini_ms_pad masks made by the official aug_test
(tests/data/parity/README.md), a dense re-computation of the official per-pass order on an official-layout
checkpoint, and the config reader refusing a test step it cannot translate.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import PARITY
from vitseg_cli.loading import load_model
from vitseg_cli.data.io import read_image, read_label
from vitseg_cli.engine.inference import InferenceSettings, predict_array, prepare_item, slide_windows
from vitseg_cli.model.official_config import ConfigRefused, parse_config_text, spec_from_config, spec_from_config_text

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def ms_models(tmp_path_factory):
    """mini_m2f_checkpoint.pth with each case's whole config as its meta['config'], as released files carry it."""
    folder = tmp_path_factory.mktemp("ms")
    checkpoint = torch.load(PARITY / "mini_m2f_checkpoint.pth", weights_only=True)
    models = {}
    for case in ("setr", "pad"):
        copy = {**checkpoint, "meta": {**checkpoint["meta"],
                                       "config": (PARITY / f"mini_ms_{case}_config.py").read_text()}}
        torch.save(copy, folder / f"{case}.pth")
        models[case] = load_model(folder / f"{case}.pth")
    return models


def test_config_reader_translates_both_multi_scale_pipelines(ms_models):
    setr, pad = ms_models["setr"].spec.test, ms_models["pad"].spec.test
    assert (setr.resize_rule, setr.min_short_side, setr.pad_short_side, setr.flip) == ("setr", 128, None, True)
    assert tuple(setr.resize.scale) == (410, 128) and setr.resize.size_divisor is None
    assert setr.scales == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
    assert (pad.resize_rule, pad.pad_short_side, pad.resize.size_divisor, pad.flip) == ("mmseg", 128, 32, True)
    assert pad.scales == [640 / 896, 768 / 896, 1.0]
    # the case's segmentor is EncoderDecoderMask2Former, which resizes the padded scores whole
    assert pad.crop_pad is False
    assert not any("ignored" in note for model in ms_models.values() for note in model.load_notes)


@pytest.mark.parametrize("case,index", [("setr", 0), ("setr", 1), ("pad", 0), ("pad", 1)])
def test_official_multi_scale_masks(ms_models, case, index):
    model = ms_models[case]
    record = json.loads((PARITY / f"mini_ms_{case}_pipeline.json").read_text())["images"][index]
    image = read_image(PARITY / record["image"])
    settings = InferenceSettings.from_spec(model.spec)
    item = prepare_item(image, settings, model.spec.data.mean, model.spec.data.std, False)
    flipped = item.get("flipped") or [None] * len(item["inputs"])
    shapes = []
    for x, mirrored in zip(item["inputs"], flipped):
        shapes += [list(x.shape[-2:]), list((x if mirrored is None else mirrored).shape[-2:])]
    assert shapes == [aug["tensor_hw"] for aug in record["augmentations"]]
    pred = predict_array(model, image, settings, CPU)
    expected = read_label(PARITY / f"mini_ms_{case}_{index}_expected_mask.png")
    assert pred.labels.shape == expected.shape == (record["height"], record["width"])
    assert (pred.labels == expected).mean() >= 0.999


# --------------------------------------------------------------------------- dense re-computation, official order


@pytest.fixture(scope="module")
def upernet():
    return load_model(PARITY / "mini_full_checkpoint.pth")


def _dense_pass(model, image, size, flip, pad, test, crop, stride):
    """One aug_test pass written out as the official code runs it: resize (and the multiple of 32 as a second
    resize), flip, raw-pixel pad, normalise (or normalise, then pad), slide with full-size accumulators, cut the
    padding off (the Aug segmentor), resize to the original size, softmax, flip back."""
    resized = image
    for h, w in size:
        resized = cv2.resize(resized, (w, h), interpolation=cv2.INTER_LINEAR)
    if flip:
        resized = resized[:, ::-1]
    h, w = resized.shape[:2]
    padding = ((0, max(pad - h, 0)), (0, max(pad - w, 0)), (0, 0)) if pad else ((0, 0), (0, 0), (0, 0))
    if not test.get("pad_normalized"):
        resized = np.pad(resized, padding)
    mean, std = np.array(model.spec.data.mean, np.float32), np.array(model.spec.data.std, np.float32)
    normalized = (resized.astype(np.float32) - mean) / std
    if test.get("pad_normalized"):
        normalized = np.pad(normalized, padding)
    x = torch.from_numpy(normalized.transpose(2, 0, 1).copy())[None]
    k = model.spec.model.num_classes
    preds = torch.zeros(1, k, *x.shape[-2:])
    count = torch.zeros(1, 1, *x.shape[-2:])
    for y1, y2, x1, x2 in slide_windows(x.shape[2], x.shape[3], crop, stride):
        logits = F.interpolate(model(x[:, :, y1:y2, x1:x2]), size=(y2 - y1, x2 - x1), mode="bilinear",
                               align_corners=False)
        preds += F.pad(logits, (x1, preds.shape[3] - x2, y1, preds.shape[2] - y2))
        count[:, :, y1:y2, x1:x2] += 1
    preds = preds / count
    if test.get("crop_pad"):
        preds = preds[:, :, :h, :w]
    out = F.interpolate(preds, size=image.shape[:2], mode="bilinear", align_corners=False).softmax(1)
    return out.flip(3) if flip else out


@pytest.mark.parametrize("procedure", ["setr", "pad_crop", "pad_normalized", "aug_test"])
def test_multi_scale_flip_matches_the_dense_official_computation(upernet, procedure):
    image = cv2.resize(read_image(PARITY / "mini_full_image.png"), (120, 90), interpolation=cv2.INTER_AREA)
    base = {"mode": "slide", "crop_size": [64, 64], "stride": [43, 43], "flip": True}
    if procedure == "setr":
        test = {**base, "resize": {"scale": [160, 64], "size_divisor": None}, "scales": [0.5, 1.0, 1.5],
                "resize_rule": "setr", "min_short_side": 64}
        # 120x90: r=0.5 scale (80, 32) -> t=64, f=64/90 -> (64, int(85.33+.5)) = (64, 85); r=1 the same (64, 85);
        # r=1.5 scale (240, 96) -> t=96, f=96/90 -> (96, 128)
        passes = [([(64, 85)], None), ([(64, 85)], None), ([(96, 128)], None)]
    elif procedure.startswith("pad"):
        test = {**base, "resize": {"scale": [160, 64], "size_divisor": 32}, "scales": [0.5, 1.0],
                "pad_short_side": 64, "crop_pad": procedure == "pad_crop",
                "pad_normalized": procedure == "pad_normalized"}
        # r=0.5 scale (80, 32): f=min(80/120, 32/90) -> (32, int(42.67+.5)) = (32, 43) -> multiple (32, 64) -> pad
        # (64, 64); r=1 scale (160, 64): f=64/90 -> (64, 85) -> (64, 96), no pad
        passes = [([(32, 43), (32, 64)], 64), ([(64, 85), (64, 96)], 64)]
    else:
        test = {**base, "resize": {"scale": [160, 64], "size_divisor": 32}, "scales": [0.75, 1.25]}
        # r=0.75 scale (120, 48): f=min(1, 48/90) -> (48, 64) -> multiple (64, 64); r=1.25 scale (200, 80):
        # f=80/90 -> (80, int(106.67+.5)) = (80, 107) -> (96, 128)
        passes = [([(48, 64), (64, 64)], None), ([(80, 107), (96, 128)], None)]
    settings = InferenceSettings.from_spec(upernet.spec.updated(test=test))
    pred = predict_array(upernet, image, settings, CPU, want_probs=True)
    with torch.inference_mode():
        total = sum(_dense_pass(upernet, image, size, flip, pad, test, (64, 64), (43, 43))
                    for size, pad in passes for flip in (False, True)) / (2 * len(passes))
    assert np.abs(pred.probs.astype(np.float32) - total[0].numpy()).max() < 2e-3  # probs are kept in float16
    assert (pred.labels == total[0].argmax(0).numpy()).mean() >= 0.999


# ------------------------------------------------------------------------------------- untranslatable test steps


@pytest.mark.parametrize("change,words", [
    (("type='SETR_Resize'", "type='AlignResize'"), "'AlignResize' has no vitseg translation"),
    (("dict(type='RandomFlip'),", "dict(type='RandomFlip'), dict(type='PhotoMetricDistortion'),"),
     "'PhotoMetricDistortion' has no vitseg translation"),
    (("setr_multi_scale=True", "setr_multi_scale=True, keep_ratio=False"), "keep_ratio=False"),
])
def test_an_untranslatable_setr_pipeline_step_is_an_error(change, words):
    text = (PARITY / "mini_ms_setr_config.py").read_text()
    assert change[0] in text
    with pytest.raises(ConfigRefused, match=words):
        spec_from_config_text(text.replace(*change))


@pytest.mark.parametrize("change,words", [
    (("pad_val=0,", "pad_val=1,"), "pad_val 1"),
    (("type='PadShortSide',", "type='Pad',"), "'Pad' has no vitseg translation"),
    (("dict(type='RandomFlip'),\n                    dict(\n                        type='PadShortSide',",
      "dict(\n                        type='PadShortSide',"), "PadShortSide before RandomFlip"),
])
def test_an_untranslatable_pad_pipeline_step_is_an_error(change, words):
    text = (PARITY / "mini_ms_pad_config.py").read_text()
    assert change[0] in text
    with pytest.raises(ConfigRefused, match=words):
        spec_from_config_text(text.replace(*change))


def test_the_unpadding_segmentor_sets_crop_pad():
    text = (PARITY / "mini_ms_pad_config.py").read_text().replace("type='EncoderDecoderMask2Former'",
                                                                  "type='EncoderDecoderMask2FormerAug'")
    spec, _ = spec_from_config_text(text)
    assert spec["test"]["crop_pad"] is True and spec["test"]["pad_short_side"] == 128
    assert "pad_normalized" not in spec["test"]


def test_padding_after_normalize_pads_normalized_values():
    """The BEiTv2-L 896 ADE20K _ms config puts PadShortSide after Normalize: its padding is the mean colour."""
    cfg = parse_config_text((PARITY / "mini_ms_pad_config.py").read_text())
    for pipeline in (cfg["test_pipeline"], cfg["data"]["test"]["pipeline"]):
        steps = pipeline[1]["transforms"]
        kinds = [step["type"] for step in steps]
        pad = steps.pop(kinds.index("PadShortSide"))
        steps.insert(kinds.index("Normalize"), pad)  # right after Normalize
        assert [step["type"] for step in steps][3:5] == ["Normalize", "PadShortSide"]
    spec, _ = spec_from_config(cfg)
    assert spec["test"]["pad_normalized"] is True and spec["test"]["pad_short_side"] == 128
