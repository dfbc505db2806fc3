"""Visualisation: label maps coloured with a palette, and blended over their images."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def palette_array(palette: Sequence[Sequence[int]]) -> np.ndarray:
    """(K, 3) uint8 palette; a label past its end is drawn black."""
    return np.asarray(palette, dtype=np.uint8).reshape(-1, 3)


def colorize(labels: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """(H, W) class indices -> (H, W, 3) RGB uint8 in the palette's colours."""
    colors = palette_array(palette)
    lut = np.zeros((max(int(labels.max(initial=0)) + 1, len(colors)), 3), dtype=np.uint8)
    lut[:len(colors)] = colors
    return lut[labels]


def overlay(image: np.ndarray, labels: np.ndarray, palette: Sequence[Sequence[int]], alpha: float = 0.5) -> np.ndarray:
    """The image with its coloured label map blended over it: (1 - alpha) * image + alpha * colour."""
    if image.shape[:2] != labels.shape:
        raise ValueError(f"image {image.shape[:2]} and labels {labels.shape} differ in size")
    alpha = float(np.clip(alpha, 0.0, 1.0))
    blend = image.astype(np.float32) * (1.0 - alpha) + colorize(labels, palette).astype(np.float32) * alpha
    return (blend + 0.5).astype(np.uint8)
