"""The dataset interface every format returns (`SegDataset` of `Sample`s) and the checks all formats share: label
values in range, label and image of one size, images matched to labels by relative path."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..errors import VitsegError
from ..metrics import reduce_zero_label as _reduce_zero_label
from . import io
from .label_maps import apply_label_map

Palette = list[tuple[int, int, int]]


@dataclass(frozen=True)
class Sample:
    """One image and its label file (`None` when the label comes from elsewhere, e.g. a COCO JSON)."""

    key: str
    image: Path
    label: Optional[Path]


@dataclass
class SegDataset:
    """A list of samples plus what it takes to read them: class names, palette, ignore index, label decoding."""

    root: Path
    fmt: str
    split: str
    samples: list[Sample]
    class_names: list[str]
    palette: Palette
    ignore_index: int = 255
    reduce_zero_label: bool = False
    label_map: Optional[np.ndarray] = field(default=None, repr=False)  # lookup table applied to raw label values
    # the treatment this layout's labels need (None: the layout does not say; the model's spec decides), and what
    # fixes it, for messages (`label_treatment.apply_label_treatment` checks the two against each other)
    fixed_reduce: Optional[bool] = None
    fixed_by: str = ""
    coco: Optional[Any] = field(default=None, repr=False)  # a datasets.CocoLabels

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.samples)

    def read_image(self, i: int) -> np.ndarray:
        """RGB uint8 (H, W, 3)."""
        return io.read_image(self.samples[i].image)

    def read_label(self, i: int) -> np.ndarray:
        """int64 (H, W) class indices in [0, K−1] or ignore_index (reduce_zero_label and id maps applied)."""
        sample = self.samples[i]
        if self.coco is not None:
            return self.coco.rasterize(sample.key)
        if sample.label is None:
            raise VitsegError(f"{sample.image}: this dataset has no label for it")
        raw = io.read_label(sample.label)
        label = raw.astype(np.int64)
        if self.label_map is not None:
            label = apply_label_map(label, self.label_map, sample.label)
        if self.reduce_zero_label:
            label = _reduce_zero_label(label, self.ignore_index)
        check_label(label, self.num_classes, self.ignore_index, sample.label)
        return label

    def read_pair(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(image, label), with their sizes checked against each other."""
        image = self.read_image(i)
        label = self.read_label(i)
        check_same_size(label, image.shape[:2], self.label_source(i))
        return image, label

    def label_source(self, i: int) -> str:
        """What to name in a message about sample i's label."""
        s = self.samples[i]
        if self.coco is not None:
            return f"{self.coco.json_path} (image {s.key})"
        return str(s.label or s.image)

    def describe(self) -> str:
        return f"{self.fmt} dataset {self.root} ({self.split}): {len(self)} images, {self.num_classes} classes"


# ------------------------------------------------------------------------------------------------------ checks


def check_label(label: np.ndarray, num_classes: int, ignore_index: int, path: "str | Path") -> None:
    """Raise `VitsegError` naming `path` and the value when a label holds a value outside [0, K−1] that isn't ignore."""
    if label.size == 0:
        raise VitsegError(f"{path}: empty label map")
    if int(label.min()) >= 0 and int(label.max()) < num_classes:
        return
    bad_mask = ((label < 0) | (label >= num_classes)) & (label != ignore_index)
    if bad_mask.any():
        bad = np.unique(label[bad_mask])
        shown = ", ".join(str(int(v)) for v in bad[:5]) + (", ..." if bad.size > 5 else "")
        raise VitsegError(f"{path}: label value {shown} outside [0, {num_classes - 1}] and not the ignore index "
                          f"{ignore_index}")


def check_same_size(label: np.ndarray, image_hw: Sequence[int], path: "str | Path") -> None:
    if tuple(label.shape[:2]) != tuple(image_hw[:2]):
        raise VitsegError(f"{path}: label is {label.shape[1]}x{label.shape[0]} (WxH) but its image is "
                          f"{image_hw[1]}x{image_hw[0]}")


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise VitsegError(f"{path}: {what} folder not found")
    return path


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and io.is_image_path(p) and not p.name.startswith("."))


def _key(path: Path, folder: Path) -> str:
    return path.relative_to(folder).with_suffix("").as_posix()


def match_by_key(keys: Sequence[str], files: Sequence[Path], root: Path, what: str) -> list[Optional[Path]]:
    """For each key (a path relative to its folder, without extension) the file under `root` with the same relative
    path; failing that, the only file with the key's stem, if no other key has that stem and no key claims the file
    by path. Anything else that could pair one file with two keys (or two files with one key) is an error."""
    by_key: dict[str, list[Path]] = {}
    by_stem: dict[str, list[Path]] = {}
    for f in files:
        by_key.setdefault(_key(f, root), []).append(f)
        by_stem.setdefault(f.stem, []).append(f)
    claimed = {f for k in keys for f in by_key.get(k, [])}
    stems: dict[str, int] = {}
    for k in keys:
        stems[Path(k).name] = stems.get(Path(k).name, 0) + 1
    out: list[Optional[Path]] = []
    for k in keys:
        hits = by_key.get(k, [])
        if len(hits) > 1:
            raise VitsegError(f"{hits[0]} and {hits[1]}: two {what} for {k}; keep one")
        if hits:
            out.append(hits[0])
            continue
        stem = Path(k).name
        loose = [f for f in by_stem.get(stem, []) if f not in claimed]
        if len(loose) > 1 or (loose and stems[stem] > 1):
            raise VitsegError(f"{root}: cannot tell which {what} belongs to {k}: no {k}.* there, and the name "
                              f"{stem} is ambiguous ({', '.join(str(f) for f in loose[:3])}); keep the same "
                              "sub-folders on both sides")
        out.append(loose[0] if loose else None)
    return out
