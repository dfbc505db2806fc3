"""Visualisation: label maps coloured with a palette, blended over their images, legends, error maps and panels.

One drawing implementation serves `vitseg predict --save overlay` and `vitseg visualize`. Text is drawn through
`drawable_text`: OpenCV's fonts are ASCII only, and a file name that is not UTF-8 (surrogate escapes) crashes it."""

from __future__ import annotations

import re
from typing import Sequence

import cv2
import numpy as np


_SURROGATE = re.compile("[\udc80-\udcff]")


def escape_undecodable(text: str) -> str:
    """`text` with the bytes a non-UTF-8 file name left as surrogate escapes written as \\xNN."""
    return _SURROGATE.sub(lambda m: f"\\x{ord(m.group()) - 0xDC00:02x}", str(text))


def drawable_text(text: str) -> str:
    """`text` as printable ASCII for OpenCV's fonts: the bytes of a non-UTF-8 file name as \\xNN, other non-ASCII
    characters as \\uNNNN escapes."""
    return escape_undecodable(text).encode("ascii", "backslashreplace").decode("ascii")


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
    return cv2.addWeighted(image, 1.0 - alpha, colorize(labels, palette), alpha, 0.0)  # rounds, saturates


# ------------------------------------------------------------------------------------ legends, panels, error maps

ERROR_COLORS = {"correct": (46, 160, 67), "wrong": (220, 50, 47), "ignored": (128, 128, 128)}
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_TEXT_SCALE, _LINE = 0.45, 18


def error_map(pred: np.ndarray, gt: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    """(H, W, 3): correct pixels green, wrong red, ignored grey (`ERROR_COLORS`)."""
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
    out = np.empty(gt.shape + (3,), np.uint8)
    out[...] = ERROR_COLORS["wrong"]
    out[pred == gt] = ERROR_COLORS["correct"]
    out[gt == ignore_index] = ERROR_COLORS["ignored"]
    return out


def legend(class_ids: Sequence[int], names: Sequence[str], palette: Sequence[Sequence[int]],
           height: int) -> np.ndarray:
    """A white column listing each class with its colour swatch; at least `height` pixels tall."""
    colors = palette_array(palette)
    labels = [drawable_text(names[i]) if i < len(names) else f"class_{i}" for i in class_ids]
    width = 28 + max([cv2.getTextSize(t, _FONT, _TEXT_SCALE, 1)[0][0] for t in labels] + [40]) + 8
    out = np.full((max(height, 8 + _LINE * len(labels)), width, 3), 255, np.uint8)
    for row, (i, text) in enumerate(zip(class_ids, labels)):
        y = 6 + row * _LINE
        color = tuple(int(v) for v in colors[i]) if i < len(colors) else (0, 0, 0)
        cv2.rectangle(out, (6, y), (20, y + 12), color, thickness=-1)
        cv2.rectangle(out, (6, y), (20, y + 12), (0, 0, 0), thickness=1)
        cv2.putText(out, text, (28, y + 11), _FONT, _TEXT_SCALE, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def with_legend(image: np.ndarray, labels: np.ndarray, names: Sequence[str],
                palette: Sequence[Sequence[int]]) -> np.ndarray:
    """`image` with a legend of the classes present in `labels` to its right."""
    present = [int(c) for c in np.unique(labels)]
    column = legend(present, names, palette, image.shape[0])
    canvas = np.full((column.shape[0], image.shape[1] + column.shape[1], 3), 255, np.uint8)
    canvas[:image.shape[0], :image.shape[1]] = image
    canvas[:, image.shape[1]:] = column
    return canvas


def _title_bar(text: str, width: int, height: int = 24) -> np.ndarray:
    bar = np.full((height, width, 3), 255, np.uint8)
    cv2.putText(bar, drawable_text(text), (6, height - 8), _FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return bar


def panel(tiles: Sequence[tuple[str, np.ndarray]], title: str, gap: int = 6) -> np.ndarray:
    """Tiles of equal height side by side, each under its caption, the whole under `title`."""
    h = max(t.shape[0] for _, t in tiles)
    columns = []
    for caption, tile in tiles:
        body = np.full((h, tile.shape[1], 3), 255, np.uint8)
        body[:tile.shape[0]] = tile
        columns.append(np.concatenate([_title_bar(caption, tile.shape[1]), body], axis=0))
        columns.append(np.full((columns[-1].shape[0], gap, 3), 255, np.uint8))
    row = np.concatenate(columns[:-1], axis=1)
    return np.concatenate([_title_bar(title, row.shape[1], 28), row], axis=0)


def thumbnail(image: np.ndarray, max_side: int = 320) -> np.ndarray:
    scale = max_side / max(image.shape[:2])
    if scale >= 1:
        return image
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)
