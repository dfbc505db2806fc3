"""Confusion-matrix metrics against hand-computed numbers (mmseg's NaN policy, ignore pixels, reduce_zero_label)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vitseg_cli.errors import VitsegError
from vitseg_cli.metrics import ConfusionMatrix, image_scores, nan_to_none, reduce_zero_label, summarize


def _pc(summary, name):
    return {row["class"]: row[name] for row in summary["per_class"]}


def test_three_classes_with_an_ignored_pixel():
    label = np.array([[0, 0, 1], [1, 255, 2]])
    pred = np.array([[0, 1, 1], [1, 0, 1]])  # the pixel under 255 predicts 0: must not count
    cm = ConfusionMatrix(3, ignore_index=255)
    cm.update(pred, label)
    assert cm.matrix.tolist() == [[1, 1, 0], [0, 2, 0], [0, 1, 0]]
    s = summarize(cm.matrix, ["a", "b", "c"])
    # I=[1,2,0] L=[2,2,1] P=[1,4,0] U=[2,4,1]
    assert s["aAcc"] == pytest.approx(3 / 5)
    assert _pc(s, "IoU") == pytest.approx({"a": 0.5, "b": 0.5, "c": 0.0})
    assert s["mIoU"] == pytest.approx(1 / 3)
    assert s["mAcc"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert s["mDice"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert math.isnan(_pc(s, "Precision")["c"])  # never predicted: 0/0
    assert s["mPrecision"] == pytest.approx((1 + 0.5) / 2)
    assert s["mRecall"] == pytest.approx(0.5)
    assert math.isnan(_pc(s, "Fscore")["c"])  # mmseg: F from P=NaN, R=0 is NaN
    assert s["mFscore"] == pytest.approx(2 / 3)
    assert s["fwIoU"] == pytest.approx(0.4 * 0.5 + 0.4 * 0.5 + 0.2 * 0.0)
    assert _pc(s, "label_pixels") == {"a": 2, "b": 2, "c": 1}
    assert _pc(s, "pred_pixels") == {"a": 1, "b": 4, "c": 0}


def test_absent_class_is_nan_and_predicted_only_class_counts_as_zero_iou():
    label = np.array([0, 0, 1, 1])
    pred = np.array([0, 2, 1, 1])  # class 2 predicted, never labelled; class 3 nowhere
    cm = ConfusionMatrix(4)
    cm.update(pred, label)
    s = cm.summarize()
    iou, acc = _pc(s, "IoU"), _pc(s, "Acc")
    assert iou["class_2"] == 0.0 and math.isnan(acc["class_2"])
    assert math.isnan(iou["class_3"]) and math.isnan(acc["class_3"]) and math.isnan(_pc(s, "Dice")["class_3"])
    assert s["mIoU"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)  # NaN left out, the 0 counts
    assert s["mAcc"] == pytest.approx((0.5 + 1.0) / 2)
    assert s["mDice"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert s["aAcc"] == pytest.approx(3 / 4)
    assert s["fwIoU"] == pytest.approx(0.5 * 0.5 + 0.5 * 1.0)


def test_f1_equals_dice_where_defined():
    rng = np.random.default_rng(0)
    cm = ConfusionMatrix(5)
    cm.update(rng.integers(0, 5, (40, 40)), rng.integers(0, 5, (40, 40)))
    s = cm.summarize()
    assert _pc(s, "Fscore") == pytest.approx(_pc(s, "Dice"))


def test_merge_equals_one_pass_and_iadd():
    rng = np.random.default_rng(1)
    preds = [rng.integers(0, 4, (9, 7)) for _ in range(3)]
    labels = [np.where(rng.random((9, 7)) < 0.1, 255, rng.integers(0, 4, (9, 7))) for _ in range(3)]
    whole = ConfusionMatrix(4)
    whole.update(np.stack(preds), np.stack(labels))
    parts = [ConfusionMatrix(4) for _ in range(3)]
    for cm, p, l in zip(parts, preds, labels):
        cm.update(p, l)
    total = ConfusionMatrix(4)
    for cm in parts:
        total += cm
    assert np.array_equal(total.matrix, whole.matrix)
    assert total.matrix.dtype == np.int64 and total.matrix.sum() == sum((l != 255).sum() for l in labels)


def test_reduce_zero_label():
    out = reduce_zero_label(np.array([[0, 1, 2], [150, 255, 3]], np.uint8))
    assert out.tolist() == [[255, 0, 1], [149, 255, 2]]
    assert out.dtype == np.int64


def test_bad_label_value_and_shape_name_the_source():
    cm = ConfusionMatrix(3)
    with pytest.raises(VitsegError, match=r"masks/a\.png: label value 7 is outside \[0, 2\]"):
        cm.update(np.zeros((2, 2)), np.array([[0, 7], [1, 2]]), source="masks/a.png")
    with pytest.raises(VitsegError, match="b.png: prediction is 2x3 but the label is 2x2"):
        cm.update(np.zeros((2, 3)), np.zeros((2, 2)), source="b.png")
    with pytest.raises(VitsegError, match="predicted class 5"):
        cm.update(np.full((2, 2), 5), np.zeros((2, 2)))
    assert cm.matrix.sum() == 0  # nothing half-added


def test_image_scores_and_json_nan():
    conf = np.array([[3, 1], [0, 0]])  # class 1 predicted once, never labelled
    acc, miou = image_scores(conf)
    assert acc == pytest.approx(3 / 4) and miou == pytest.approx((3 / 4 + 0) / 2)
    assert nan_to_none({"a": [1.0, float("nan")]}) == {"a": [1.0, None]}


def test_empty_matrix_is_all_nan():
    s = summarize(np.zeros((2, 2), np.int64))
    assert all(math.isnan(s[k]) for k in ("aAcc", "mIoU", "mAcc", "fwIoU"))
