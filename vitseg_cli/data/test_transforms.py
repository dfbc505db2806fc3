"""The official test pipelines' size rules and raw-pixel padding, as pure functions on sizes and numpy arrays.

Three multi-scale procedures of the released configs, each for one ratio r of MultiScaleFlipAug (whose scale is
(int(long * r), int(short * r)) of img_scale, mmseg 0.20.2):
- mmseg `Resize(keep_ratio=True)`: mmcv `imrescale` to that scale (factor min(long / long side, short / short side),
  sides int(side * factor + 0.5)), then optionally `ResizeToMultiple` (each side rounded up to the divisor);
- ViT-Adapter `SETR_Resize(setr_multi_scale=True)`: target short side max(crop_size[0], short of that scale), the
  long side scaled by the same factor (no cap), through the same `imrescale` rounding;
- `PadShortSide`: after the resize (and the flip), pad bottom/right with 0 up to `size`: raw pixels where it comes
  before Normalize, normalized values (the mean colour) where it comes after.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from ..errors import VitsegError
from .io import MAX_PIXELS_ENV, max_pixels

Pair = tuple[int, int]


def ratio_scale(scale: Sequence[int], ratio: float) -> Pair:
    """MultiScaleFlipAug's scale for one ratio: (int(scale[0] * ratio), int(scale[1] * ratio))."""
    return int(scale[0] * ratio), int(scale[1] * ratio)


def imrescale_size(h: int, w: int, scale: Sequence[float]) -> Pair:
    """mmcv 1.4.2 `rescale_size` with a (long, short) pair (ints or floats): (height, width)."""
    factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return max(1, int(h * factor + 0.5)), max(1, int(w * factor + 0.5))


def setr_size(h: int, w: int, scale: Sequence[int], min_short: int) -> Pair:
    """ViT-Adapter's SETR_Resize (keep_ratio, setr_multi_scale) of an h x w image for the scale MultiScaleFlipAug gave
    it: the short side target is never below `min_short`, the long side follows the aspect ratio, uncapped."""
    short = min(scale)
    new_short = min_short if short < min_short else short
    if h > w:
        target = (new_short * h / w, new_short)
    else:
        target = (new_short, new_short * w / h)
    return imrescale_size(h, w, target)


def round_up(h: int, w: int, divisor: Optional[int]) -> Pair:
    """ResizeToMultiple: each side rounded up to a multiple of `divisor` (None: unchanged)."""
    if not divisor:
        return h, w
    return math.ceil(h / divisor) * divisor, math.ceil(w / divisor) * divisor


def padded_size(h: int, w: int, size: Optional[int]) -> Pair:
    """PadShortSide: each side at least `size` (None: unchanged)."""
    if not size:
        return h, w
    return max(h, size), max(w, size)


def check_resize(h: int, w: int, nh: int, nw: int, divisor: Optional[int] = None,
                 pad: Optional[int] = None) -> None:
    """Refuse, before anything is allocated, a test resize (then rounded up and padded) past the pixel limit that
    bounds the images read (a typo in a config's img_scale must not ask for gigabytes)."""
    mh, mw = padded_size(*round_up(nh, nw, divisor), pad)
    limit = max_pixels()
    if limit and mh * mw > limit:
        raise VitsegError(f"the test pipeline resizes a {w}x{h} image to {mw}x{mh}, more than the {limit} pixel "
                          f"limit (check test.resize.scale and test.scales, or raise {MAX_PIXELS_ENV})")


def pad_bottom_right(image: np.ndarray, size: Optional[int]) -> np.ndarray:
    """An (H, W, C) image padded at the bottom and right with 0 so that each side is at least `size`."""
    h, w = image.shape[:2]
    ph, pw = padded_size(h, w, size)
    if (ph, pw) == (h, w):
        return image
    return np.pad(image, ((0, ph - h), (0, pw - w), (0, 0)), constant_values=0)
