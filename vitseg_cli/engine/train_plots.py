"""Pictures of a training run in RUN/plots: loss, lr and mIoU curves from log.csv, and at each validation a confusion
matrix and a few sample panels (image, label, prediction, errors). Drawn with OpenCV, so no plotting package is
needed."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional, Sequence

import cv2
import numpy as np

from .. import viz
from ..data.io import write_image
from .eval_report import confusion_png
from .train_state import read_log

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]
CURVES = {"loss": "loss", "lr": "learning rate", "mIoU": "validation mIoU"}


def _number(text: Optional[str]) -> Optional[float]:
    try:
        value = float(text) if text not in (None, "") else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def _series(rows: list[dict[str, str]], column: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for row in rows:
        x, y = _number(row.get("iter")), _number(row.get(column))
        if x is not None and y is not None:
            xs.append(x)
            ys.append(y)
    return xs, ys


def line_plot(series: dict[str, tuple[Sequence[float], Sequence[float]]], title: str,
              size: tuple[int, int] = (640, 400)) -> np.ndarray:
    """Lines on white with a frame, the y range printed at its ends, the x range below and a legend (RGB uint8)."""
    w, h = size
    left, right, top, bottom = 70, 16, 34, 36
    img = np.full((h, w, 3), 255, np.uint8)
    cv2.putText(img, title, (left, 22), _FONT, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    points = [(x, y) for xs, ys in series.values() for x, y in zip(xs, ys)]
    cv2.rectangle(img, (left, top), (w - right, h - bottom), (0, 0, 0), 1)
    if not points:
        cv2.putText(img, "no data yet", (left + 10, h // 2), _FONT, 0.5, (90, 90, 90), 1, cv2.LINE_AA)
        return img
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + abs(y0) * 0.1 + 1e-12)

    def at(x: float, y: float) -> tuple[int, int]:
        px = left + (x - x0) / (x1 - x0) * (w - left - right)
        py = h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom)
        return int(round(px)), int(round(py))

    for k, (name, (xs, ys)) in enumerate(series.items()):
        colour = _COLOURS[k % len(_COLOURS)]
        pts = np.array([at(x, y) for x, y in zip(xs, ys)], np.int32)
        if len(pts) > 1:
            cv2.polylines(img, [pts], False, colour, 2, cv2.LINE_AA)
        for p in pts:
            cv2.circle(img, tuple(int(v) for v in p), 3, colour, -1, cv2.LINE_AA)
        cv2.putText(img, name, (w - right - 150, top + 18 + 18 * k), _FONT, 0.45, colour, 1, cv2.LINE_AA)
    for text, y in ((f"{y1:.3g}", top + 10), (f"{y0:.3g}", h - bottom)):
        cv2.putText(img, text, (4, y), _FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, f"iteration {x0:g}", (left, h - 12), _FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    end = f"{x1:g}"
    cv2.putText(img, end, (w - right - 8 * len(end), h - 12), _FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def write_curves(log_path: Path, plots: Path) -> list[Path]:
    """plots/loss.png (the total and each loss term), plots/lr.png and plots/mIoU.png (once validated)."""
    rows = read_log(log_path)
    columns = list(rows[0]) if rows else []
    groups = {"loss": [c for c in columns if c.startswith("loss")], "lr": ["lr"], "mIoU": ["mIoU"]}
    written = []
    for name, cols in groups.items():
        series = {c: _series(rows, c) for c in cols}
        if name == "mIoU" and not any(xs for xs, _ in series.values()):
            continue
        path = plots / f"{name}.png"
        write_image(path, line_plot(series, CURVES[name]))
        written.append(path)
    return written


def write_confusion(path: Path, matrix: np.ndarray, names: Sequence[str]) -> None:
    write_image(path, confusion_png(matrix, names))


class SampleCollector:
    """Keeps panels for the first `count` validation images: image, label over it, prediction over it, errors."""

    def __init__(self, dataset: Any, spec: Any, count: int):
        self.dataset, self.count = dataset, count
        self.palette, self.names = spec.palette, spec.class_names
        self.ignore_index = dataset.ignore_index
        self.panels: list[np.ndarray] = []

    def __call__(self, index: int, pred: Any, label: np.ndarray) -> None:
        if len(self.panels) >= self.count or pred.image is None:
            return
        shown = np.where(label == self.ignore_index, 0, label).astype(np.int64)
        tiles = [("image", pred.image), ("label", viz.overlay(pred.image, shown, self.palette)),
                 ("prediction", viz.overlay(pred.image, pred.labels.astype(np.int64), self.palette)),
                 ("errors", viz.error_map(pred.labels.astype(np.int64), label, self.ignore_index))]
        tiles = [(caption, viz.thumbnail(tile, 256)) for caption, tile in tiles]
        self.panels.append(viz.panel(tiles, str(self.dataset.samples[index].key)))

    def write(self, plots: Path, iteration: int) -> list[Path]:
        paths = []
        for k, image in enumerate(self.panels):
            path = plots / f"val_iter{iteration}_sample{k}.png"
            write_image(path, image)
            paths.append(path)
        return paths
