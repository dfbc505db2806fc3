"""A prediction's label map in the forms other tools take: class areas, COCO RLE, OpenCV polygons, a JSON summary and
a one-line description. Each function reads an (H, W) array of class indices and the model's class names; classes
are listed in the order of their index, and only those present in the map.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

import cv2
import numpy as np

from .rle import encode_classes


def class_name(names: Sequence[str], index: int) -> str:
    """The name of class `index` (its number as text where the model has no name for it)."""
    return names[index] if 0 <= index < len(names) else str(index)


def class_areas(labels: np.ndarray, names: Sequence[str], fraction: bool = False) -> dict[str, float]:
    """Class name -> its pixel count in the map (or, with `fraction`, that count over the map's H x W pixels), for
    each class present, in class-index order."""
    ids, counts = np.unique(labels, return_counts=True)
    total = labels.size
    return {class_name(names, int(i)): (int(c) / total if fraction else int(c)) for i, c in zip(ids, counts)}


def class_rles(labels: np.ndarray, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Class name -> the COCO RLE of its mask (pycocotools `mask.encode` of the Fortran-ordered uint8 mask, counts as
    text, as `--save rle` writes them). Decode one with
    `pycocotools.mask.decode({"size": r["size"], "counts": r["counts"].encode()})`."""
    return {class_name(names, int(i)): rle for i, rle in encode_classes(labels).items()}


def class_polygons(labels: np.ndarray, names: Sequence[str]) -> dict[str, list[list[tuple[int, int]]]]:
    """Class name -> the outlines of its regions: `cv2.findContours` (outer contours, RETR_EXTERNAL, with
    CHAIN_APPROX_SIMPLE's corner points), each a list of (x, y) pixel coordinates. Holes are not outlined (the RLE is
    exact)."""
    out = {}
    for i in np.unique(labels):
        mask = (labels == i).astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        out[class_name(names, int(i))] = [[(int(x), int(y)) for x, y in c.reshape(-1, 2)] for c in contours]
    return out


def summary(labels: Optional[np.ndarray], names: Sequence[str], path: Optional[Path], *, error: Optional[str] = None,
            frame: Optional[int] = None, rle: bool = False) -> dict[str, Any]:
    """What `to_json` writes: the source path (null for an array), the size as [height, width], and per class
    present its index, name, pixel count and fraction of the image (and its RLE, when asked); or the error."""
    data: dict[str, Any] = {"path": str(path) if path is not None else None}
    if frame is not None:
        data["frame"] = frame
    if labels is None:
        data["error"] = error
        return data
    data["size"] = [int(s) for s in labels.shape]
    ids, counts = np.unique(labels, return_counts=True)
    rles = encode_classes(labels) if rle else {}
    data["classes"] = [{"id": int(i), "name": class_name(names, int(i)), "pixels": int(c),
                        "fraction": int(c) / labels.size, **({"rle": rles[str(int(i))]} if rle else {})}
                       for i, c in zip(ids, counts)]
    return data


def to_json(labels: Optional[np.ndarray], names: Sequence[str], path: Optional[Path], *, rle: bool = False,
            indent: Optional[int] = None, **extra: Any) -> str:
    return json.dumps(summary(labels, names, path, rle=rle, **extra), indent=indent)


def describe(labels: Optional[np.ndarray], names: Sequence[str], path: Optional[Path], error: Optional[str],
             probs: bool, top: int = 3) -> str:
    """A one-line repr: where it came from, its size and its largest classes (never the arrays)."""
    where = f"path={str(path)!r}" if path is not None else "array"
    if labels is None:
        return f"Prediction({where}, error={error!r})"
    areas = sorted(class_areas(labels, names, fraction=True).items(), key=lambda kv: -kv[1])
    shown = ", ".join(f"{name} {share:.0%}" for name, share in areas[:top])
    more = f", +{len(areas) - top} more" if len(areas) > top else ""
    h, w = labels.shape
    return (f"Prediction({where}, {w}x{h}, {len(areas)} classes: {shown}{more}"
            f"{', with probs' if probs else ''})")
