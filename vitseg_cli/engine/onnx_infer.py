"""Whole and slide inference for an ONNX model in numpy and cv2 only, the same computation as the torch loop.

`onnx_predict_image(model, image, settings)` gives the label map (and optionally the class probabilities) of one RGB
uint8 image: each TTA pass (scale, mirrored) is preprocessed like the torch loop, run window by window, the window
logits resized back with PyTorch's bilinear rule (align_corners=False) and averaged where windows overlap, resized to
the image and, with several passes, softmax-averaged. Only the mmseg test procedure without short-side padding is
covered here.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..errors import VitsegError
from .preprocess import preprocess, slide_windows


def _axis_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices i0, i1 and weight of i1 for each output position, as PyTorch's bilinear computes them."""
    scale = np.float32(n_in) / np.float32(n_out)
    pos = np.maximum(scale * (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5), 0)
    i0 = np.minimum(np.floor(pos).astype(np.int64), n_in - 1)
    i1 = np.where(i0 < n_in - 1, i0 + 1, i0)
    return i0, i1, np.clip(pos - i0, 0, 1).astype(np.float32)


def resize_bilinear(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`F.interpolate(x[None], size, mode='bilinear', align_corners=False)[0]` for a (K, H, W) float32 array."""
    h, w = size
    if x.shape[-1] != w:
        i0, i1, l1 = _axis_weights(x.shape[-1], w)
        x = x[..., i0] * (1 - l1) + x[..., i1] * l1
    if x.shape[-2] != h:
        i0, i1, l1 = _axis_weights(x.shape[-2], h)
        x = x[:, i0] * (1 - l1)[:, None] + x[:, i1] * l1[:, None]
    return np.ascontiguousarray(x, dtype=np.float32)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(0, keepdims=True))
    return e / e.sum(0, keepdims=True)


def pass_logits(model: Any, x: np.ndarray, settings: Any, out_size: tuple[int, int]) -> np.ndarray:
    """(K, *out_size) logits of one normalized (3, h, w) input: its windows run in batches and averaged."""
    h, w = x.shape[-2:]
    windows = [(0, h, 0, w)] if settings.mode == "whole" else slide_windows(h, w, tuple(settings.crop_size),
                                                                             tuple(settings.stride))
    total: Optional[np.ndarray] = None
    count = np.zeros((1, h, w), dtype=np.float32)
    step = max(1, int(settings.batch_size))
    for start in range(0, len(windows), step):
        batch = windows[start:start + step]
        logits = np.asarray(model(np.stack([x[:, y1:y2, x1:x2] for y1, y2, x1, x2 in batch])), dtype=np.float32)
        for (y1, y2, x1, x2), lg in zip(batch, logits):
            if total is None:
                total = np.zeros((lg.shape[0], h, w), dtype=np.float32)
            total[:, y1:y2, x1:x2] += resize_bilinear(lg, (y2 - y1, x2 - x1))
            count[:, y1:y2, x1:x2] += 1
    return resize_bilinear(total / count, out_size)


def onnx_predict_image(model: Any, image: np.ndarray, settings: Any,
                       want_probs: bool = False) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Labels (H, W) and, with `want_probs`, float16 probabilities (K, H, W) of one RGB uint8 image."""
    if settings.procedure != "mmseg" or settings.pad_short_side:
        raise VitsegError("the ONNX backend's numpy loop covers the mmseg test procedure without short-side padding")
    spec = model.spec
    out_size = tuple(int(s) for s in image.shape[:2])
    passes = []
    for ratio in settings.scales:
        for flip in ([False, True] if settings.flip else [False]):
            x = preprocess(image, settings.resize, ratio, spec.data.mean, spec.data.std, rule=settings.resize_rule,
                           min_short_side=settings.min_short_side, flip=flip)
            logits = pass_logits(model, x, settings, out_size)
            passes.append(logits[:, :, ::-1] if flip else logits)
    if len(passes) == 1 and not want_probs:
        total = passes[0]
    else:
        total = sum(softmax(p) for p in passes) / len(passes)
    k = total.shape[0]
    dtype = np.uint8 if k <= 255 else np.uint16 if k <= 65535 else np.int32
    labels = total.argmax(0).astype(dtype)
    return labels, (total.astype(np.float16) if want_probs else None)
