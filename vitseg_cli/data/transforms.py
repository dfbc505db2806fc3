"""The official (mmseg) training pipeline as pure functions on numpy arrays, driven by an explicit Generator.

Order (mmseg ADE20K/Cityscapes configs): random resize (ratio of the spec scale, keep ratio) -> random crop with
cat_max_ratio -> horizontal flip -> photometric distortion -> normalize -> pad to the crop size (0 for the image,
ignore_index for the label). Images are RGB uint8 (H, W, 3), labels int64 (H, W). Every random choice comes from the
`np.random.Generator` passed in, so a seed gives the same sample, in any worker, after any resume.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

Pair = tuple[int, int]


def rescale_size(h: int, w: int, scale: Pair) -> Pair:
    """mmcv `imrescale` size: factor = min(long / long side, short / short side), sides int(side * factor + 0.5)."""
    long_edge, short_edge = max(scale), min(scale)
    factor = min(long_edge / max(h, w), short_edge / min(h, w))
    return max(1, int(h * factor + 0.5)), max(1, int(w * factor + 0.5))


def random_resize(img: np.ndarray, label: np.ndarray, scale: Pair, ratio_range: Pair,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Resize keeping the aspect ratio to `scale` times a ratio drawn uniformly from `ratio_range` (mmseg Resize)."""
    ratio = rng.uniform(ratio_range[0], ratio_range[1])
    target = (int(scale[0] * ratio), int(scale[1] * ratio))
    nh, nw = rescale_size(img.shape[0], img.shape[1], target)
    img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    label = resize_label(label, nh, nw)
    return img, label


def resize_label(label: np.ndarray, h: int, w: int) -> np.ndarray:
    """Nearest-neighbour resize of an int64 label map (OpenCV cannot resize int64 directly)."""
    if label.shape == (h, w):
        return label
    small = label.astype(np.int32) if label.max(initial=0) > 65535 or label.min(initial=0) < 0 else \
        label.astype(np.uint16)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST).astype(np.int64)


def _crop_box(shape: Sequence[int], crop: Pair, rng: np.random.Generator) -> tuple[int, int, int, int]:
    margin_h = max(shape[0] - crop[0], 0)
    margin_w = max(shape[1] - crop[1], 0)
    y = int(rng.integers(0, margin_h + 1))
    x = int(rng.integers(0, margin_w + 1))
    return y, min(y + crop[0], shape[0]), x, min(x + crop[1], shape[1])


def crop_is_balanced(label: np.ndarray, cat_max_ratio: float, ignore_index: int) -> bool:
    """mmseg's test: at least two classes, and none above cat_max_ratio of the non-ignore pixels."""
    labels, counts = np.unique(label, return_counts=True)
    counts = counts[labels != ignore_index]
    return len(counts) > 1 and counts.max() / counts.sum() < cat_max_ratio


def random_crop(img: np.ndarray, label: np.ndarray, crop: Pair, cat_max_ratio: float, ignore_index: int,
                rng: np.random.Generator, tries: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """A crop of at most `crop` (h, w); with cat_max_ratio < 1 an unbalanced crop is redrawn up to `tries` times
    (mmseg RandomCrop: after the tries the last drawn box is used)."""
    box = _crop_box(img.shape, crop, rng)
    if cat_max_ratio < 1.0:
        for _ in range(tries):
            y1, y2, x1, x2 = box
            if crop_is_balanced(label[y1:y2, x1:x2], cat_max_ratio, ignore_index):
                break
            box = _crop_box(img.shape, crop, rng)
    y1, y2, x1, x2 = box
    return img[y1:y2, x1:x2], label[y1:y2, x1:x2]


def random_flip(img: np.ndarray, label: np.ndarray, prob: float,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal flip of image and label together with probability `prob`."""
    if rng.random() < prob:
        return img[:, ::-1], label[:, ::-1]
    return img, label


def _convert(img: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    return np.clip(img.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


def photometric_distortion(img: np.ndarray, rng: np.random.Generator, brightness_delta: int = 32,
                           contrast_range: Pair = (0.5, 1.5), saturation_range: Pair = (0.5, 1.5),
                           hue_delta: int = 18) -> np.ndarray:
    """mmseg PhotoMetricDistortion: random brightness, contrast (before or after), saturation and hue, each applied
    with probability 1/2, on a uint8 RGB image."""
    img = np.ascontiguousarray(img)
    if rng.integers(2):
        img = _convert(img, beta=rng.uniform(-brightness_delta, brightness_delta))
    contrast_first = bool(rng.integers(2))
    if contrast_first and rng.integers(2):
        img = _convert(img, alpha=rng.uniform(*contrast_range))
    if rng.integers(2):
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        hsv[..., 1] = _convert(hsv[..., 1], alpha=rng.uniform(*saturation_range))
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if rng.integers(2):
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        shift = int(rng.integers(-hue_delta, hue_delta))
        hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + shift) % 180).astype(np.uint8)
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if not contrast_first and rng.integers(2):
        img = _convert(img, alpha=rng.uniform(*contrast_range))
    return img


def normalize(img: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(img - mean) / std per RGB channel, float32 (H, W, 3)."""
    mean_arr = np.asarray(mean, np.float32)
    std_arr = np.asarray(std, np.float32)
    return (img.astype(np.float32) - mean_arr) / std_arr


def pad_to(img: np.ndarray, label: np.ndarray, size: Pair, ignore_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad bottom/right up to `size` (h, w): 0 for the (normalized) image, ignore_index for the label."""
    ph, pw = max(size[0] - img.shape[0], 0), max(size[1] - img.shape[1], 0)
    if ph or pw:
        img = np.pad(img, ((0, ph), (0, pw), (0, 0)), constant_values=0)
        label = np.pad(label, ((0, ph), (0, pw)), constant_values=ignore_index)
    return img, label


def train_transform(img: np.ndarray, label: np.ndarray, *, scale: Pair, ratio_range: Pair, crop_size: Pair,
                    cat_max_ratio: float, flip_prob: float, photometric: bool, mean: Sequence[float],
                    std: Sequence[float], ignore_index: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The whole training pipeline: (normalized float32 CHW image, int64 HW label), both of `crop_size`."""
    img, label = random_resize(img, label, scale, ratio_range, rng)
    img, label = random_crop(img, label, crop_size, cat_max_ratio, ignore_index, rng)
    img, label = random_flip(img, label, flip_prob, rng)
    if photometric:
        img = photometric_distortion(img, rng)
    img = normalize(img, mean, std)
    img, label = pad_to(img, label, crop_size, ignore_index)
    return np.ascontiguousarray(img.transpose(2, 0, 1)), np.ascontiguousarray(label, dtype=np.int64)
