"""Confusion-matrix segmentation metrics, numerically the same as mmseg's `IoUMetric`.

One int64 K×K matrix `conf[label, pred]` is accumulated over a dataset with `bincount` on flat indices (memory stays
flat whatever the image size); pixels whose label is `ignore_index` are left out. From it, per class:
I = diagonal, P = predicted count (column sum), L = label count (row sum), U = P + L − I and

    IoU = I/U   Acc = Recall = I/L   Dice = 2I/(P+L)   Precision = I/P   Fscore = 2·Prec·Rec/(Prec + Rec)

A 0/0 is NaN and left out of the means (mIoU, mAcc, ... are nanmeans), exactly as mmseg: a class absent from both
labels and predictions is NaN everywhere; a class predicted but never labelled has IoU 0 (counted in mIoU) and Acc
NaN. As in mmseg the F-score is computed from precision and recall, so it is NaN when both are 0 (or either is NaN).
aAcc = ΣI/ΣL; fwIoU = Σ_c (L_c/ΣL)·IoU_c over the classes that occur in the labels.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from .errors import VitsegError

METRIC_KEYS = ("aAcc", "mIoU", "mAcc", "mDice", "mFscore", "mPrecision", "mRecall", "fwIoU")
PER_CLASS_KEYS = ("IoU", "Acc", "Dice", "Fscore", "Precision", "Recall")


def reduce_zero_label(label: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    """mmseg's reduce_zero_label: 0 → ignore, k → k−1 (ignore stays ignore). Returns int64."""
    label = label.astype(np.int64, copy=True)
    ignored = (label == 0) | (label == ignore_index)
    label -= 1
    label[ignored] = ignore_index
    return label


class ConfusionMatrix:
    """An int64 `conf[label, pred]` of shape (K, K); `update` adds one (pred, label) pair, `+=`/`merge` add matrices."""

    def __init__(self, num_classes: int, ignore_index: int = 255):
        if num_classes < 1:
            raise VitsegError(f"num_classes must be at least 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.matrix = np.zeros((num_classes, num_classes), np.int64)

    @staticmethod
    def compute(pred: np.ndarray, label: np.ndarray, num_classes: int, ignore_index: int = 255,
                source: Optional[str] = None) -> np.ndarray:
        """The (K, K) matrix of one prediction/label pair; bad shapes or values raise `VitsegError`."""
        where = f"{source}: " if source else ""
        pred = np.asarray(pred)
        label = np.asarray(label)
        if pred.shape != label.shape:
            raise VitsegError(f"{where}prediction is {_hw(pred)} but the label is {_hw(label)}")
        k = num_classes
        label = label.reshape(-1).astype(np.int64, copy=False)
        pred = pred.reshape(-1).astype(np.int64, copy=False)
        keep = label != ignore_index
        if not keep.all():
            label = label[keep]
            pred = pred[keep]
        if label.size:
            lo, hi = int(label.min()), int(label.max())
            if lo < 0 or hi >= k:
                bad = lo if lo < 0 else hi
                raise VitsegError(f"{where}label value {bad} is outside [0, {k - 1}] and is not the ignore index "
                                  f"{ignore_index}")
            lo, hi = int(pred.min()), int(pred.max())
            if lo < 0 or hi >= k:
                bad = lo if lo < 0 else hi
                raise VitsegError(f"{where}predicted class {bad} is outside [0, {k - 1}]")
        return np.bincount(label * k + pred, minlength=k * k).reshape(k, k)

    def update(self, pred: np.ndarray, label: np.ndarray, source: Optional[str] = None) -> np.ndarray:
        """Add one image; returns that image's own matrix (for per-image scores)."""
        one = self.compute(pred, label, self.num_classes, self.ignore_index, source)
        self.matrix += one
        return one

    def merge(self, other: "ConfusionMatrix | np.ndarray") -> "ConfusionMatrix":
        m = other.matrix if isinstance(other, ConfusionMatrix) else np.asarray(other)
        if m.shape != self.matrix.shape:
            raise VitsegError(f"cannot merge a {m.shape} confusion matrix into a {self.matrix.shape} one")
        self.matrix += m.astype(np.int64)
        return self

    def __iadd__(self, other: "ConfusionMatrix | np.ndarray") -> "ConfusionMatrix":
        return self.merge(other)

    def summarize(self, class_names: Optional[Sequence[str]] = None) -> dict:
        return summarize(self.matrix, class_names)


def _hw(a: np.ndarray) -> str:
    return "x".join(str(s) for s in a.shape[:2]) if a.ndim >= 2 else str(a.shape)


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num/den elementwise with 0/0 → NaN (and x/0 → NaN; den 0 implies num 0 here)."""
    num = np.asarray(num, np.float64)
    den = np.asarray(den, np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _nanmean(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else math.nan


def per_class_scores(conf: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class arrays: IoU, Acc, Dice, Fscore, Precision, Recall, label_pixels, pred_pixels, intersect."""
    conf = np.asarray(conf, np.int64)
    inter = np.diag(conf).astype(np.float64)
    label_px = conf.sum(1).astype(np.float64)
    pred_px = conf.sum(0).astype(np.float64)
    union = pred_px + label_px - inter
    precision = _div(inter, pred_px)
    recall = _div(inter, label_px)
    with np.errstate(invalid="ignore", divide="ignore"):
        fscore = 2.0 * precision * recall / (precision + recall)  # beta = 1; NaN where mmseg gives NaN
    return {
        "IoU": _div(inter, union),
        "Acc": recall,
        "Dice": _div(2 * inter, pred_px + label_px),
        "Fscore": fscore,
        "Precision": precision,
        "Recall": recall,
        "label_pixels": label_px.astype(np.int64),
        "pred_pixels": pred_px.astype(np.int64),
        "intersect": inter.astype(np.int64),
    }


def summarize(conf: np.ndarray, class_names: Optional[Sequence[str]] = None) -> dict:
    """Summary + per-class metrics of a confusion matrix, as fractions; NaN where undefined (see module doc)."""
    conf = np.asarray(conf, np.int64)
    k = conf.shape[0]
    names = list(class_names) if class_names is not None else [f"class_{i}" for i in range(k)]
    if len(names) != k:
        raise VitsegError(f"{len(names)} class names for a {k}-class confusion matrix")
    s = per_class_scores(conf)
    total = float(s["label_pixels"].sum())
    a_acc = float(s["intersect"].sum()) / total if total else math.nan
    present = s["label_pixels"] > 0
    fw = float(np.sum(s["label_pixels"][present] / total * s["IoU"][present])) if total else math.nan
    out = {
        "aAcc": a_acc,
        "mIoU": _nanmean(s["IoU"]),
        "mAcc": _nanmean(s["Acc"]),
        "mDice": _nanmean(s["Dice"]),
        "mFscore": _nanmean(s["Fscore"]),
        "mPrecision": _nanmean(s["Precision"]),
        "mRecall": _nanmean(s["Recall"]),
        "fwIoU": fw,
        "num_classes": k,
        "total_pixels": int(total),
        "per_class": [
            {"class": names[c], **{key: float(s[key][c]) for key in PER_CLASS_KEYS},
             "label_pixels": int(s["label_pixels"][c]), "pred_pixels": int(s["pred_pixels"][c])}
            for c in range(k)
        ],
    }
    return out


def image_scores(conf: np.ndarray) -> tuple[float, float]:
    """(pixel accuracy, mIoU) of one image's matrix; mIoU over the classes labelled or predicted in it."""
    s = per_class_scores(conf)
    total = float(s["label_pixels"].sum())
    acc = float(s["intersect"].sum()) / total if total else math.nan
    return acc, _nanmean(s["IoU"])


def nan_to_none(obj):
    """A copy of nested dicts/lists with float NaN (and inf) replaced by None, for strict JSON."""
    if isinstance(obj, float):
        return None if not math.isfinite(obj) else obj
    if isinstance(obj, dict):
        return {k: nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [nan_to_none(v) for v in obj]
    return obj


def shifted_label_warning(conf: np.ndarray) -> Optional[str]:
    """A one-line warning when the agreement looks like labels shifted by one (a wrong reduce_zero_label): aAcc
    below a tenth of what reading every label one higher or one lower would give. None otherwise."""
    conf = np.asarray(conf, np.int64)
    total = int(conf.sum())
    if total == 0 or conf.shape[0] < 2:
        return None
    acc = float(np.trace(conf)) / total
    down = float(np.trace(conf, offset=-1)) / total  # label k predicted as k-1: labels read one too high
    up = float(np.trace(conf, offset=1)) / total  # label k predicted as k+1: labels read one too low
    shifted = max(down, up)
    if shifted == 0 or acc >= shifted / 10:
        return None
    how = "one too high (reduce_zero_label missing?)" if down >= up else "one too low (reduce_zero_label extra?)"
    return (f"warning: aAcc {acc:.4f}, but predictions match the labels shifted by one ({shifted:.4f}): the labels "
            f"look read {how}; check the dataset format and the spec's data.reduce_zero_label")
