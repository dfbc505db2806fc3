"""Test procedures other than mmseg's: how an image becomes the views the model sees and how window scores are
asked for. The engine knows procedures by name (`test.procedure`); it never asks which family a model is.

`dinov3` is the official DINOv3 segmentation test: for each ratio r the short side goes to int(short_side * r)
(for r < 1 rounded up to a multiple of 32), the long side to int(short * long / short_side_of_image + 0.5), resized
bilinearly on the PIL image (PIL's antialiased filter, what torchvision's Resize does to a PIL image); sliding windows
are clamped to the view (a view smaller than the crop on both sides uses square windows of its short side); each
window's scores are taken at the window's size and combined in bfloat16 as the official `slide_inference` does.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image

from ..data.test_transforms import check_resize

PROCEDURES = ("mmseg", "dinov3")


def dinov3_view_size(h: int, w: int, short_side: int, ratio: float) -> tuple[int, int]:
    """(height, width) of the official DINOv3 test view of an h x w image at one TTA ratio."""
    short = int(short_side * ratio)
    if ratio < 1:
        short = int(math.ceil(short / 32)) * 32
    if h > w:
        return int(short * h / w + 0.5), short
    return short, int(short * w / h + 0.5)


def dinov3_view(image: np.ndarray, short_side: int, ratio: float, mean: Sequence[float],
                std: Sequence[float]) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> the normalized float32 (3, h, w) view."""
    h, w = image.shape[:2]
    nh, nw = dinov3_view_size(h, w, short_side, ratio)
    check_resize(h, w, nh, nw)
    if (nh, nw) != (h, w):
        image = np.asarray(Image.fromarray(image).resize((nw, nh), Image.BILINEAR))
    x = image.astype(np.float32)
    x -= np.asarray(mean, dtype=np.float32)
    x /= np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def window_crop(procedure: str, h: int, w: int, crop: tuple[int, int]) -> tuple[int, int]:
    """The crop the slide windows use on an h x w view."""
    if procedure == "dinov3" and crop[0] > h and crop[1] > w:
        return min(h, w), min(h, w)
    return crop


def score_request(procedure: str) -> Optional[dict]:
    """Keyword arguments the model's forward gets for each window: `dinov3` wants scores at the window's size,
    their per-query product taken in bfloat16."""
    if procedure == "dinov3":
        return {"scores_at_input_size": True, "score_dtype": torch.bfloat16}
    return None
