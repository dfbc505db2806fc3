"""The test pipeline's image side, in numpy and cv2 only (no torch): the resize of one image, its normalized input,
and the slide windows over it. Shared by the torch inference loop and the ONNX backend's numpy loop."""

from __future__ import annotations

from typing import Optional, Sequence

import cv2
import numpy as np

from ..data.test_transforms import (check_resize, imrescale_size, pad_bottom_right, ratio_scale, round_up,
                                    setr_size)
from ..spec import ResizeSpec


def resized_shape(h: int, w: int, resize: Optional[ResizeSpec], ratio: float = 1.0, rule: str = "mmseg",
                  min_short_side: Optional[int] = None) -> tuple[int, int]:
    """(height, width) the test pipeline resizes an h×w image to, for one multi-scale ratio (mmcv rules), before any
    resize to a multiple of the size divisor."""
    if resize is None:
        if ratio == 1.0:
            return h, w
        nh, nw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    else:
        scale = ratio_scale(resize.scale, ratio)
        if rule == "setr":
            return setr_size(h, w, scale, int(min_short_side or 0))
        if resize.keep_ratio:
            return imrescale_size(h, w, scale)
        nw, nh = scale
    return max(nh, 1), max(nw, 1)


def preprocess(image: np.ndarray, resize: Optional[ResizeSpec], ratio: float,
               mean: Sequence[float], std: Sequence[float], *, rule: str = "mmseg",
               min_short_side: Optional[int] = None, flip: bool = False,
               pad_short_side: Optional[int] = None, pad_normalized: bool = False) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> normalized float32 (3, h, w): resize, resize up to the size divisor, mirror (`flip`),
    pad the short side with raw 0 (so the padding becomes -mean/std), normalize; `pad_normalized` pads with 0 after
    normalizing instead."""
    h, w = image.shape[:2]
    nh, nw = resized_shape(h, w, resize, ratio, rule, min_short_side)
    check_resize(h, w, nh, nw, resize.size_divisor if resize is not None else None, pad_short_side)
    if (nh, nw) != (h, w):
        image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    if resize is not None and resize.size_divisor:
        mh, mw = round_up(nh, nw, resize.size_divisor)
        if (mh, mw) != (nh, nw):
            image = cv2.resize(image, (mw, mh), interpolation=cv2.INTER_LINEAR)
    if flip:
        image = image[:, ::-1]
    if not pad_normalized:
        image = pad_bottom_right(image, pad_short_side)
    x = image.astype(np.float32)
    x -= np.asarray(mean, dtype=np.float32)
    x *= (1.0 / np.asarray(std, dtype=np.float64)).astype(np.float32)  # mmcv multiplies by 1/std
    if pad_normalized:
        x = pad_bottom_right(x, pad_short_side)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def slide_windows(h: int, w: int, crop: tuple[int, int], stride: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """(y1, y2, x1, x2) of the mmseg slide windows, row by row."""
    (ch, cw), (sh, sw) = crop, stride
    h_grids = max(h - ch + sh - 1, 0) // sh + 1
    w_grids = max(w - cw + sw - 1, 0) // sw + 1
    out = []
    for i in range(h_grids):
        for j in range(w_grids):
            y2, x2 = min(i * sh + ch, h), min(j * sw + cw, w)
            out.append((max(y2 - ch, 0), y2, max(x2 - cw, 0), x2))
    return out
