"""The layouts mmseg's dataset preparation leaves (its `tools/convert_datasets/*` and dataset classes), read as its
`CustomDataset` reads them: the images of `img_dir` ending in `img_suffix` (or the names of a split file), each with
the file of the same name ending in `seg_map_suffix` in `ann_dir`. Nothing else in those folders is read.

- `coco_stuff164k`: `images/{train2017,val2017}/*.jpg` + `annotations/<split>/*_labelTrainIds.png`; 171 classes,
  255 = ignore. The raw `<id>.png` maps the converter leaves beside them are not labels.
- `coco_stuff10k`: `images/{train2014,test2014}/*.jpg` + `annotations/<split>/*_labelTrainIds.png`; 0 = unlabelled,
  1..171 = the classes (the official configs' reduce_zero_label).
- `pascal_context_59`: `VOC2010/JPEGImages/*.jpg` + `SegmentationClassContext/*.png`, only the images listed in
  `ImageSets/SegmentationContext/<split>.txt`; 0 = background (ignored), 1..59 = the classes (reduce_zero_label).
- `mapillary`: Mapillary Vistas v1.2 `{training,validation}/{images/*.jpg,labels/*.png}`; the 66 labels 0..65 as
  they are ("Unlabeled" = 65 is a class), or mapped by a label map (`label_maps`).
- `mmseg`: any CustomDataset layout: `img_dir`, `ann_dir`, suffixes and an optional split file, relative to the root.

Each takes the data root or its parent (`data/` holding `coco_stuff164k/`, `VOCdevkit/`, `Mapillary/`, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..errors import VitsegError
from ..safe_yaml import read_regular_file
from .classes import builtin_classes, default_palette
from .dataset_base import Sample, SegDataset, _require_dir
from .label_maps import MAPILLARY_RAW_VALUES, load_label_map

MAX_SPLIT_FILE = 64 << 20


@dataclass(frozen=True)
class CustomLayout:
    """mmseg CustomDataset's arguments (paths relative to the data root)."""

    img_dir: str
    ann_dir: str
    img_suffix: str = ".jpg"
    seg_map_suffix: str = ".png"
    split_file: Optional[str] = None


def _locate(root: Path, marker: str, parents: Sequence[str]) -> Path:
    """`root` when it holds `marker`, else the sub-folder of `root` (one of `parents`) that does."""
    _require_dir(root, "dataset")
    for candidate in ("", *parents):
        if (root / candidate / marker).exists():
            return root / candidate if candidate else root
    tried = ", ".join(str(root / p / marker) for p in ("", *parents))
    raise VitsegError(f"{root}: not this layout: none of {tried} exists")


def _split_names(split_file: Path) -> list[str]:
    if not split_file.is_file():
        have = ", ".join(sorted(p.name for p in split_file.parent.glob("*.txt"))) if split_file.parent.is_dir() \
            else "none"
        raise VitsegError(f"{split_file}: split file not found (there: {have or 'none'})")
    try:
        names = read_regular_file(split_file, MAX_SPLIT_FILE).decode("utf-8").split()
    except UnicodeDecodeError as err:
        raise VitsegError(f"{split_file}: not UTF-8 text (byte {err.start}: {err.reason})") from None
    if not names:
        raise VitsegError(f"{split_file}: lists no images")
    return names


def custom_samples(root: Path, layout: CustomLayout) -> list[Sample]:
    """CustomDataset's samples: every `img_suffix` file under img_dir (recursive, sorted), or the split file's names;
    each must have its `seg_map_suffix` label in ann_dir."""
    img_dir = _require_dir(root / layout.img_dir, "image")
    ann_dir = _require_dir(root / layout.ann_dir, "annotation")
    if layout.split_file:
        split_file = root / layout.split_file
        keys = _split_names(split_file)
        for key in keys:
            if not (img_dir / f"{key}{layout.img_suffix}").is_file():
                raise VitsegError(f"{split_file}: image {key}{layout.img_suffix} not found in {img_dir}")
    else:
        keys = sorted(p.relative_to(img_dir).as_posix()[: -len(layout.img_suffix)] for p in img_dir.rglob(
            f"*{layout.img_suffix}") if p.is_file() and not p.name.startswith("."))
        if not keys:
            raise VitsegError(f"{img_dir}: no *{layout.img_suffix} images found")
    samples = []
    for key in keys:
        label = ann_dir / f"{key}{layout.seg_map_suffix}"
        if not label.is_file():
            raise VitsegError(f"{img_dir / (key + layout.img_suffix)}: no label {label}")
        samples.append(Sample(key, img_dir / f"{key}{layout.img_suffix}", label))
    return samples


def _sub(split: str, names: dict[str, str], fmt: str) -> str:
    sub = names.get(split, split)
    if sub not in names.values():
        raise VitsegError(f"{fmt} split {split!r}: one of {', '.join(sorted(set(names) | set(names.values())))}")
    return sub


def open_coco_stuff(root: Path, split: str, version: str) -> SegDataset:
    """COCO-Stuff 164k (`version` "164k") or 10k ("10k") as mmseg's converters leave it."""
    fmt = f"coco_stuff{version}"
    root = _locate(root, "annotations", (fmt,))
    if version == "164k":
        sub = _sub(split, {"train": "train2017", "val": "val2017"}, fmt)
    else:
        sub = _sub(split, {"train": "train2014", "val": "test2014", "test": "test2014"}, fmt)
    layout = CustomLayout(f"images/{sub}", f"annotations/{sub}", ".jpg", "_labelTrainIds.png")
    names, palette = builtin_classes(fmt)
    reduce = version == "10k"
    what = ("labels 0..170, 255 = ignore" if version == "164k" else "labels 1..171, 0 = unlabelled")
    return SegDataset(root, fmt, sub, custom_samples(root, layout), names, palette, reduce_zero_label=reduce,
                      fixed_reduce=reduce, fixed_by=f"the {fmt} format ({what})")


def open_pascal_context_59(root: Path, split: str) -> SegDataset:
    root = _locate(root, "SegmentationClassContext", ("VOC2010", "VOCdevkit/VOC2010"))
    layout = CustomLayout("JPEGImages", "SegmentationClassContext", ".jpg", ".png",
                          f"ImageSets/SegmentationContext/{split}.txt")
    names, palette = builtin_classes("pascal_context_59")
    return SegDataset(root, "pascal_context_59", split, custom_samples(root, layout), names, palette,
                      reduce_zero_label=True, fixed_reduce=True,
                      fixed_by="the pascal_context_59 format (labels 1..59, 0 = background)")


def open_mapillary(root: Path, split: str, label_map: "str | Path | None" = None) -> SegDataset:
    sub = _sub(split, {"train": "training", "val": "validation"}, "mapillary")
    root = _locate(root, f"{sub}/labels", ("Mapillary", "mapillary", "mapillary-vistas"))
    samples = custom_samples(root, CustomLayout(f"{sub}/images", f"{sub}/labels", ".jpg", ".png"))
    names, palette = builtin_classes("mapillary")
    ds = SegDataset(root, "mapillary", sub, samples, names, palette, fixed_reduce=False,
                    fixed_by="the mapillary format (labels 0..65)")
    if label_map is None:
        ds.label_map = np.arange(MAPILLARY_RAW_VALUES, dtype=np.int64)  # values past 65 are out of range
    else:
        _use_label_map(ds, label_map)
    return ds


def _use_label_map(ds: SegDataset, label_map: "str | Path") -> None:
    mapping = load_label_map(label_map, ds.ignore_index)
    ds.label_map, ds.class_names, ds.palette = mapping.table, mapping.classes, mapping.palette


def open_custom(root: Path, split: str, layout: Optional[CustomLayout], label_map: "str | Path | None",
                num_classes: Optional[int]) -> SegDataset:
    """mmseg's CustomDataset: classes from a label map, else generic names for the model's classes (a classes file
    renames them); its label treatment is the spec's unless a classes file states it."""
    if layout is None:
        raise VitsegError("--format mmseg needs --img-dir and --ann-dir (relative to the dataset root)")
    _require_dir(root, "dataset")
    samples = custom_samples(root, layout)
    if label_map is None and not num_classes:
        raise VitsegError(f"{root}: the mmseg format takes its class count from the model or a --label-map")
    names = [f"class_{i}" for i in range(num_classes or 0)]
    ds = SegDataset(root, "mmseg", split, samples, names, default_palette(len(names)))
    if label_map is not None:
        _use_label_map(ds, label_map)
    return ds
