"""Label maps: lookup tables from a dataset's raw label values to the class indices a model predicts.

A map is given as a built-in name or a YAML/JSON file:

    classes: [road, sidewalk, ...]      # the classes after mapping (optional `palette`, one [r, g, b] per class)
    map: [[13, 24, 41], [2, 15], ...]   # for each class in order, the raw values that become it

Raw values listed nowhere become the ignore index; a raw value past the table (`raw_values`, default the largest
listed value + 1, at least 256) is reported as out of range, never clipped.

Built-in: `mapillary_to_cityscapes` (alias `cityscapes`), the official ViT-Adapter mapping of the 66 Mapillary
Vistas v1.2 labels onto the 19 Cityscapes classes (its `MapillaryHack` training transform); every other Mapillary
label, "Unlabeled" included, is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import VitsegError
from ..safe_yaml import MAX_YAML_BYTES, load_yaml, read_regular_file
from .classes import builtin_classes, check_palette, default_palette

Palette = list[tuple[int, int, int]]

# Cityscapes train id -> the Mapillary Vistas v1.2 label values mapped to it (official `MapillaryHack`).
MAPILLARY_TO_CITYSCAPES = [[13, 24, 41], [2, 15], [17], [6], [3], [45, 47], [48], [50], [30], [29], [27], [19],
                           [20, 21, 22], [55], [61], [54], [58], [57], [52]]
MAPILLARY_RAW_VALUES = 66


@dataclass
class LabelMap:
    """A lookup table (raw value -> class index or ignore) with the class names and palette it maps onto."""

    name: str
    table: np.ndarray
    classes: list[str]
    palette: Palette


def _table(groups: list[list[int]], size: int, ignore_index: int, source: str) -> np.ndarray:
    table = np.full(size, ignore_index, np.int64)
    seen: dict[int, int] = {}
    for cls, raws in enumerate(groups):
        for raw in raws:
            if not isinstance(raw, int) or isinstance(raw, bool) or not 0 <= raw < size:
                raise VitsegError(f"{source}: raw label value {raw!r} of class {cls} is not an integer in "
                                  f"0..{size - 1}")
            if raw in seen and seen[raw] != cls:
                raise VitsegError(f"{source}: raw label value {raw} is mapped to both class {seen[raw]} and {cls}")
            seen[raw] = cls
            table[raw] = cls
    return table


def builtin_label_map(name: str, ignore_index: int = 255) -> Optional[LabelMap]:
    if name.lower().replace("-", "_") in ("mapillary_to_cityscapes", "cityscapes"):
        names, palette = builtin_classes("cityscapes")
        table = _table(MAPILLARY_TO_CITYSCAPES, MAPILLARY_RAW_VALUES, ignore_index, name)
        return LabelMap("mapillary_to_cityscapes", table, names, palette)
    return None


def load_label_map(text: "str | Path", ignore_index: int = 255) -> LabelMap:
    """The built-in map of that name, or the map in that YAML/JSON file (see the module text)."""
    builtin = builtin_label_map(str(text), ignore_index)
    if builtin is not None:
        return builtin
    path = Path(text)
    if not path.is_file():
        raise VitsegError(f"--label-map {text}: neither a file nor a built-in map (built-in: mapillary_to_cityscapes)")
    data = load_yaml(read_regular_file(path, MAX_YAML_BYTES), str(path))  # JSON is YAML too
    if not isinstance(data, dict) or not isinstance(data.get("map"), list) or not data["map"]:
        raise VitsegError(f"{path}: a label map is a mapping with a 'map' list (for each class, its raw values)")
    groups = data["map"]
    if not all(isinstance(g, list) for g in groups):
        raise VitsegError(f"{path}: each entry of 'map' must be a list of raw label values")
    classes = data.get("classes") or [f"class_{i}" for i in range(len(groups))]
    if not isinstance(classes, list) or len(classes) != len(groups):
        raise VitsegError(f"{path}: 'classes' must list one name per entry of 'map' ({len(groups)})")
    listed = [v for g in groups for v in g if isinstance(v, int)]
    size = data.get("raw_values", max(256, max(listed, default=0) + 1))
    if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= 1 << 16:
        raise VitsegError(f"{path}: raw_values must be an integer in 1..65536")
    palette = check_palette(data["palette"], len(groups), path) if data.get("palette") else default_palette(
        len(groups))
    return LabelMap(str(path), _table(groups, size, ignore_index, str(path)), [str(c) for c in classes], palette)


def apply_label_map(raw: np.ndarray, table: np.ndarray, source: "str | Path") -> np.ndarray:
    """The mapped labels; a raw value the table does not cover is one error naming the file and the value."""
    top = int(raw.max()) if raw.size else 0
    if top >= len(table) or (raw.size and int(raw.min()) < 0):
        bad = np.unique(raw[(raw >= len(table)) | (raw < 0)])
        shown = ", ".join(str(int(v)) for v in bad[:5]) + (", ..." if bad.size > 5 else "")
        raise VitsegError(f"{source}: label value {shown} outside the 0..{len(table) - 1} this format's labels hold")
    return table[raw]
