"""Labelled datasets in the common layouts, behind one interface: `open_dataset(root, fmt, split)`.

Formats:
- `folder`: `images/` and `masks/` (optionally `images/<split>/`, `masks/<split>/`), matched by relative path
  without extension (or, failing that, by a unique stem); classes from `classes.yaml|yml|json|txt` in the root or
  `classes_file`: a list of names, or a mapping with `classes` and optional `palette`, `ignore_index`,
  `reduce_zero_label`.
- `ade20k`: `ADEChallengeData2016/images|annotations/{training,validation}`; reduce_zero_label (0 → ignore).
- `cityscapes`: `leftImg8bit/<split>/<city>/*_leftImg8bit.png` + `gtFine/<split>/<city>/*_gtFine_labelTrainIds.png`
  (falls back to `*_gtFine_labelIds.png`, mapped to the 19 train ids).
- `voc`: `JPEGImages`, `SegmentationClass` (palette PNGs read as indices, 255 = ignore),
  `ImageSets/Segmentation/<split>.txt`.
- `coco`: an images folder + an instances or stuff JSON; labels rasterised with pycocotools: category ids mapped to
  contiguous ids in id order, larger areas painted first (small objects stay visible), unlabelled pixels = ignore (or
  a `background` class 0 with `coco_unlabeled="background"`).
- `coco_stuff164k`, `coco_stuff10k`, `pascal_context_59`, `mapillary`, `mmseg`: the layouts mmseg's preparation
  leaves (`official_layouts`).

Which reduce_zero_label a dataset is read with is decided by `label_treatment` (the model's spec against the layout).
`SegDataset.read_label(i)` returns int64 (H, W) class indices with reduce_zero_label applied and every value checked
(`check_label`), so training and evaluation see exactly the same targets.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Literal, Optional

import numpy as np

from ..errors import VitsegError, not_one_of
from ..safe_yaml import MAX_YAML_BYTES, load_yaml, read_regular_file
from ..spec import MAX_CLASSES
from . import io
from .classes import builtin_classes, check_palette, default_palette
from .dataset_base import (Palette, Sample, SegDataset, _image_files, _key, _require_dir, check_label,  # noqa: F401
                           check_same_size, match_by_key)
from .formats import FORMATS
from .official_layouts import (CustomLayout, open_coco_stuff, open_custom, open_mapillary,
                               open_pascal_context_59)

# Cityscapes labelIds -> trainIds (the 19 evaluated classes); every other id is ignored.
CITYSCAPES_ID_TO_TRAINID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
                            25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}


# --------------------------------------------------------------------------------------------------- class files


def load_classes_file(path: Path, names_optional: bool = False) -> dict:
    """{'classes': [...], 'palette': [...]|None, ...} from YAML/JSON (list or mapping) or a txt (one name a line).
    With `names_optional`, a mapping may hold no `classes` (e.g. only `reduce_zero_label`): 'classes' is then None.

    Every value is checked (names are strings or numbers, colours three integers in 0..255, ignore_index an integer
    in 0..65535, reduce_zero_label a boolean) and the YAML is read with `safe_yaml`'s caps: a bad file is one line."""
    path = Path(path)
    if not path.exists():
        raise VitsegError(f"{path}: classes file not found")
    raw = read_regular_file(path, MAX_YAML_BYTES)
    if path.suffix.lower() in (".txt", ".json"):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise VitsegError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason})") from None
    if path.suffix.lower() == ".txt":
        data: object = [line.strip() for line in text.splitlines() if line.strip()]
    elif path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise VitsegError(f"{path}: not valid JSON ({err})") from None
        except RecursionError:
            raise VitsegError(f"{path}: JSON nested too deeply") from None
    else:
        data = load_yaml(raw, str(path))
    if isinstance(data, list):
        data = {"classes": data}
    if names_optional and isinstance(data, dict) and "classes" not in data and data:
        return _class_options(data, {"classes": None, "palette": None}, path)
    if not isinstance(data, dict) or not isinstance(data.get("classes"), list) or not data["classes"]:
        raise VitsegError(f"{path}: expected a list of class names or a mapping with a 'classes' list")
    bad = next((c for c in data["classes"] if not isinstance(c, (str, int, float)) or isinstance(c, bool)), None)
    if bad is not None or None in data["classes"]:
        raise VitsegError(f"{path}: class names must be text, found {_short(bad)} (quote names such as yes, no, "
                          "null in YAML)")
    names = [str(c) for c in data["classes"]]
    if len(names) > MAX_CLASSES:
        raise VitsegError(f"{path}: {len(names)} classes, more than the {MAX_CLASSES} a uint16 mask can hold")
    palette = data.get("palette")
    if palette is not None:
        palette = check_palette(palette, len(names), path)
    return _class_options(data, {"classes": names, "palette": palette}, path)


def _class_options(data: dict, out: dict, path: Path) -> dict:
    """`out` plus the checked `ignore_index` / `reduce_zero_label` of a classes file (one without names may hold
    nothing else)."""
    unknown = sorted(set(data) - {"classes", "palette", "ignore_index", "reduce_zero_label"})
    if unknown and out["classes"] is None:
        raise VitsegError(f"{path}: unknown key {unknown[0]!r} (a classes file holds classes, palette, ignore_index, "
                          "reduce_zero_label)")
    if "ignore_index" in data:
        value = data["ignore_index"]
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_CLASSES:
            raise VitsegError(f"{path}: ignore_index must be an integer in 0..{MAX_CLASSES}, found {_short(value)}")
        out["ignore_index"] = value
    if "reduce_zero_label" in data:
        if not isinstance(data["reduce_zero_label"], bool):
            raise VitsegError(f"{path}: reduce_zero_label must be true or false, found "
                              f"{_short(data['reduce_zero_label'])}")
        out["reduce_zero_label"] = data["reduce_zero_label"]
    return out


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _find_classes_file(root: Path) -> Optional[Path]:
    for name in ("classes.yaml", "classes.yml", "classes.json", "classes.txt"):
        if (root / name).is_file():
            return root / name
    return None


# ------------------------------------------------------------------------------------------------------ formats


def _open_folder(root: Path, split: str, classes_file: Optional[Path], num_classes: Optional[int]) -> SegDataset:
    _require_dir(root, "dataset")
    images_dir = _require_dir(root / "images", "images")
    masks_dir = _require_dir(root / "masks", "masks")
    if split and (images_dir / split).is_dir():
        images_dir = images_dir / split
        masks_dir = _require_dir(masks_dir / split, f"masks/{split}")
    images = _image_files(images_dir)
    if not images:
        raise VitsegError(f"{images_dir}: no images found")
    keys = [_key(img, images_dir) for img in images]
    masks = match_by_key(keys, _image_files(masks_dir), masks_dir, "masks")
    samples = []
    for img, key, mask in zip(images, keys, masks):
        if mask is None:
            raise VitsegError(f"{img}: no label for this image in {masks_dir} (expected {key}.png)")
        samples.append(Sample(key, img, mask))
    classes_file = classes_file or _find_classes_file(root)
    meta: dict = {"classes": None, "palette": None}
    if classes_file is not None:
        meta = load_classes_file(Path(classes_file), names_optional=True)
    if meta["classes"] is None and num_classes:
        meta["classes"] = [f"class_{i}" for i in range(num_classes)]
    elif meta["classes"] is None and classes_file is None:
        raise VitsegError(f"{root}: no classes file (classes.yaml/.json/.txt) found: give one with --classes")
    elif meta["classes"] is None:
        raise VitsegError(f"{classes_file}: no class names in this classes file, and no model to take them from")
    if num_classes and len(meta["classes"]) != num_classes:
        raise VitsegError(f"{classes_file}: {len(meta['classes'])} classes but the model predicts {num_classes}")
    names = meta["classes"]
    fixed = meta.get("reduce_zero_label")
    return SegDataset(root, "folder", split, samples, names, meta["palette"] or default_palette(len(names)),
                      ignore_index=int(meta.get("ignore_index", 255)), reduce_zero_label=bool(fixed),
                      fixed_reduce=fixed, fixed_by=f"the classes file {classes_file}")


def _ade_split(split: str) -> str:
    return {"val": "validation", "validation": "validation", "train": "training", "training": "training"}.get(
        split, split)


def _open_ade20k(root: Path, split: str) -> SegDataset:
    _require_dir(root, "dataset")
    if (root / "ADEChallengeData2016").is_dir():
        root = root / "ADEChallengeData2016"
    sub = _ade_split(split)
    images_dir = _require_dir(root / "images" / sub, f"ADE20K images/{sub}")
    labels_dir = _require_dir(root / "annotations" / sub, f"ADE20K annotations/{sub}")
    samples = []
    for img in _image_files(images_dir):
        key = _key(img, images_dir)
        label = labels_dir / f"{key}.png"
        if not label.is_file():
            raise VitsegError(f"{img}: no annotation {label}")
        samples.append(Sample(key, img, label))
    if not samples:
        raise VitsegError(f"{images_dir}: no images found")
    names, palette = builtin_classes("ade20k")
    return SegDataset(root, "ade20k", sub, samples, names, palette, reduce_zero_label=True, fixed_reduce=True,
                      fixed_by="the ade20k format (labels 1..150, 0 = other)")


def _open_cityscapes(root: Path, split: str) -> SegDataset:
    _require_dir(root, "dataset")
    images_dir = _require_dir(root / "leftImg8bit" / split, f"Cityscapes leftImg8bit/{split}")
    gt_dir = _require_dir(root / "gtFine" / split, f"Cityscapes gtFine/{split}")
    samples = []
    use_ids: Optional[bool] = None
    for img in sorted(images_dir.rglob("*_leftImg8bit.png")):
        rel = img.relative_to(images_dir)
        base = str(rel)[: -len("_leftImg8bit.png")]
        train_ids = gt_dir / f"{base}_gtFine_labelTrainIds.png"
        label_ids = gt_dir / f"{base}_gtFine_labelIds.png"
        if use_ids is None:
            use_ids = not train_ids.is_file() and label_ids.is_file()
        label = label_ids if use_ids else train_ids
        if not label.is_file():
            raise VitsegError(f"{img}: no label {label}")
        samples.append(Sample(Path(base).as_posix(), img, label))
    if not samples:
        raise VitsegError(f"{images_dir}: no *_leftImg8bit.png images found")
    names, palette = builtin_classes("cityscapes")
    label_map = None
    if use_ids:
        label_map = np.full(256, 255, np.int64)
        for k, v in CITYSCAPES_ID_TO_TRAINID.items():
            label_map[k] = v
    return SegDataset(root, "cityscapes", split, samples, names, palette, label_map=label_map, fixed_reduce=False,
                      fixed_by="the cityscapes format (train ids 0..18)")


def _open_voc(root: Path, split: str) -> SegDataset:
    _require_dir(root, "dataset")
    for sub in ("VOCdevkit/VOC2012", "VOC2012"):
        if (root / sub / "JPEGImages").is_dir():
            root = root / sub
            break
    images_dir = _require_dir(root / "JPEGImages", "VOC JPEGImages")
    labels_dir = _require_dir(root / "SegmentationClass", "VOC SegmentationClass")
    sets = root / "ImageSets" / "Segmentation"
    list_file = sets / f"{split}.txt"
    if not list_file.is_file():
        have = ", ".join(sorted(p.stem for p in sets.glob("*.txt"))) if sets.is_dir() else "none"
        raise VitsegError(f"{list_file}: split list not found (available: {have})")
    samples = []
    try:
        lines = read_regular_file(list_file, 64 << 20).decode("utf-8").split()
    except UnicodeDecodeError as err:
        raise VitsegError(f"{list_file}: not UTF-8 text (byte {err.start}: {err.reason})") from None
    for line in lines:
        img = images_dir / f"{line}.jpg"
        if not img.is_file():
            found = [p for p in images_dir.glob(f"{line}.*") if io.is_image_path(p)]
            if not found:
                raise VitsegError(f"{list_file}: image {line} not found in {images_dir}")
            img = found[0]
        label = labels_dir / f"{line}.png"
        if not label.is_file():
            raise VitsegError(f"{img}: no label {label}")
        samples.append(Sample(line, img, label))
    if not samples:
        raise VitsegError(f"{list_file}: lists no images")
    names, palette = builtin_classes("voc")
    return SegDataset(root, "voc", split, samples, names, palette, fixed_reduce=False,
                      fixed_by="the voc format (0 = background is a class)")


class CocoLabels:
    """Rasterises semantic labels from a COCO instances/stuff JSON with pycocotools."""

    def __init__(self, json_path: Path, unlabeled: Literal["ignore", "background"] = "ignore",
                 ignore_index: int = 255):
        try:
            from pycocotools.coco import COCO
        except ImportError:  # pragma: no cover - a declared dependency
            raise VitsegError("the coco format needs pycocotools (pip install pycocotools)") from None
        import contextlib
        import io as _io

        self.json_path = json_path
        if not json_path.exists():
            raise VitsegError(f"{json_path}: COCO annotation file not found")
        data = _load_coco_json(json_path)
        self.coco = COCO()
        self.coco.dataset = data
        try:
            with contextlib.redirect_stdout(_io.StringIO()):  # pycocotools prints progress
                self.coco.createIndex()
        except (KeyError, TypeError, ValueError) as err:
            raise VitsegError(f"{json_path}: not a COCO annotation file ({type(err).__name__}: {err})") from None
        cats = sorted(self.coco.loadCats(self.coco.getCatIds()), key=lambda c: c["id"])
        if not cats:
            raise VitsegError(f"{json_path}: no categories")
        offset = 1 if unlabeled == "background" else 0
        self.cat_to_label = {c["id"]: i + offset for i, c in enumerate(cats)}
        self.class_names = (["background"] if offset else []) + [str(c.get("name", c["id"])) for c in cats]
        self.fill = 0 if offset else ignore_index
        self.ignore_index = ignore_index
        if len(self.class_names) > 65535:
            raise VitsegError(f"{json_path}: too many categories ({len(self.class_names)})")
        self.images = {str(img["id"]): img for img in self.coco.dataset.get("images", [])}

    def rasterize(self, key: str) -> np.ndarray:
        info = self.images[key]
        h, w = int(info["height"]), int(info["width"])
        label = np.full((h, w), self.fill, np.int64)
        anns = self.coco.loadAnns(self.coco.getAnnIds(imgIds=[info["id"]], iscrowd=None))

        def area(ann) -> float:
            return float(ann.get("area") or 0.0)

        for ann in sorted(anns, key=area, reverse=True):  # larger first: smaller objects painted over them
            cls = self.cat_to_label.get(ann.get("category_id"))
            if cls is None:
                raise VitsegError(f"{self.json_path}: annotation {ann.get('id')} has unknown category_id "
                                  f"{ann.get('category_id')}")
            try:
                with warnings.catch_warnings():  # pycocotools vs numpy 2 copy-keyword notice
                    warnings.simplefilter("ignore", DeprecationWarning)
                    mask = self.coco.annToMask(ann)
            except Exception as err:  # malformed segmentation
                raise VitsegError(f"{self.json_path}: annotation {ann.get('id')} has an unreadable segmentation "
                                  f"({type(err).__name__}: {err})") from None
            if mask.shape != (h, w):
                raise VitsegError(f"{self.json_path}: annotation {ann.get('id')} mask is {mask.shape[1]}x"
                                  f"{mask.shape[0]} but image {key} is {w}x{h}")
            label[mask.astype(bool)] = cls
        return label


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _load_coco_json(path: Path) -> dict:
    """The COCO JSON, with every field the rasteriser reads checked for presence and type (one line per problem,
    instead of a KeyError or TypeError from pycocotools later)."""
    raw = read_regular_file(path, 8 << 30)
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise VitsegError(f"{path}: not a COCO annotation file (not valid JSON: {err})") from None
    except RecursionError:
        raise VitsegError(f"{path}: JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise VitsegError(f"{path}: not a COCO annotation file (expected a JSON object)")
    for key in ("images", "categories", "annotations"):
        if not isinstance(data.get(key, []), list):
            raise VitsegError(f"{path}: '{key}' must be a list, found {type(data[key]).__name__}")

    def bad(what: str, index: int, item: object, problem: str) -> VitsegError:
        return VitsegError(f"{path}: {what}[{index}] {problem} ({_short(item)})")

    sizes: dict[str, tuple[int, int]] = {}
    for i, img in enumerate(data.get("images", [])):
        if not isinstance(img, dict):
            raise bad("images", i, img, "is not an object")
        if not (_is_int(img.get("id")) or isinstance(img.get("id"), str)):
            raise bad("images", i, img.get("id"), "has no integer or text 'id'")
        if not isinstance(img.get("file_name"), str) or not img["file_name"]:
            raise bad("images", i, img.get("file_name"), "has no text 'file_name'")
        for side in ("height", "width"):
            if not _is_int(img.get(side)) or not 0 < img[side] <= 1 << 16:
                raise bad("images", i, img.get(side), f"has no positive integer '{side}'")
        limit = io.max_pixels()
        if limit and img["height"] * img["width"] > limit:  # refused before a label of that size is allocated
            raise bad("images", i, f"{img['width']}x{img['height']}", f"declares more pixels than the {limit} limit "
                      f"(raise it with {io.MAX_PIXELS_ENV}=N, 0 for none)")
        if str(img["id"]) in sizes:
            raise bad("images", i, img["id"], "has the same id as another image (ids 1 and \"1\" are one image)")
        sizes[str(img["id"])] = (img["height"], img["width"])
    for i, cat in enumerate(data.get("categories", [])):
        if not isinstance(cat, dict) or not _is_int(cat.get("id")):
            raise bad("categories", i, cat, "has no integer 'id'")
        if not isinstance(cat.get("name", ""), (str, int)):
            raise bad("categories", i, cat.get("name"), "has a 'name' that is not text")
    for i, ann in enumerate(data.get("annotations", [])):
        if not isinstance(ann, dict):
            raise bad("annotations", i, ann, "is not an object")
        if not (_is_int(ann.get("image_id")) or isinstance(ann.get("image_id"), str)):
            raise bad("annotations", i, ann.get("image_id"), "has no integer or text 'image_id'")
        if not _is_int(ann.get("category_id")):
            raise bad("annotations", i, ann.get("category_id"), "has no integer 'category_id'")
        if not isinstance(ann.get("segmentation"), (list, dict)):
            raise bad("annotations", i, ann.get("segmentation"), "has no 'segmentation' (polygons or RLE)")
        if ann.get("area") is not None and not isinstance(ann["area"], (int, float)):
            raise bad("annotations", i, ann.get("area"), "has an 'area' that is not a number")
        size = sizes.get(str(ann["image_id"]))
        problem = coco_segmentation_problem(ann["segmentation"], size) if size else None
        if problem:
            raise bad("annotations", i, ann.get("id"), problem)
    return data


def coco_segmentation_problem(seg: "list | dict", size: tuple[int, int]) -> Optional[str]:
    """Why a COCO segmentation cannot be rasterised exactly on an image of `size` (H, W), or None.

    Polygons: lists of an even number (at least 6) of numbers. RLE: `size` equal to the image's, and `counts` (a
    list of run lengths, or COCO's compressed string) that are non-negative and cover the image exactly; pycocotools
    checks neither and reads past the runs or paints nothing."""
    if isinstance(seg, list):
        for poly in seg:
            if not isinstance(poly, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                     for v in poly):
                return "has a polygon that is not a list of numbers"
            if len(poly) % 2 or len(poly) < 6:
                return f"has a polygon of {len(poly)} coordinates (an even number, at least 6, is needed)"
        return None
    rle_size, counts = seg.get("size"), seg.get("counts")
    if not (isinstance(rle_size, list) and len(rle_size) == 2 and all(_is_int(v) for v in rle_size)):
        return "has an RLE without an integer [height, width] 'size'"
    if tuple(rle_size) != tuple(size):
        return f"has an RLE of size {rle_size[1]}x{rle_size[0]} on a {size[1]}x{size[0]} image"
    if isinstance(counts, list):
        runs = counts if all(_is_int(v) for v in counts) else None
    elif isinstance(counts, str):
        runs = _compressed_rle_runs(counts)
    else:
        runs = None
    if runs is None or any(r < 0 for r in runs):
        return "has RLE counts that are not valid run lengths"
    if sum(runs) != size[0] * size[1]:
        return f"has RLE counts covering {sum(runs)} pixels, not the image's {size[0] * size[1]}"
    return None


def _compressed_rle_runs(text: str) -> Optional[list[int]]:
    """The run lengths of COCO's compressed RLE string (6-bit groups from ASCII 48, 5 value bits and a continue bit,
    the last group's bit 4 the sign; from the third run on, each value is a difference to the run two before).
    None when the text holds characters outside that alphabet or ends inside a number."""
    runs: list[int] = []
    pos = 0
    while pos < len(text):
        value, shift, more = 0, 0, True
        while more:
            if pos >= len(text):
                return None
            c = ord(text[pos]) - 48
            if not 0 <= c < 64:
                return None
            value |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            pos += 1
            shift += 5
            if not more and c & 0x10:
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def _open_coco(root: Path, split: str, coco_json: Optional[Path], unlabeled: str, ignore_index: int) -> SegDataset:
    _require_dir(root, "dataset")
    split_dir = split if split[-4:].isdigit() else f"{split}2017"
    if coco_json is None:
        ann_dir = root / "annotations"
        candidates = [ann_dir / f"{kind}_{split_dir}.json" for kind in ("stuff", "instances")]
        coco_json = next((c for c in candidates if c.is_file()), None)
        if coco_json is None:
            raise VitsegError(f"{ann_dir}: no {candidates[0].name} or {candidates[1].name} (give one with --coco-json)")
    if unlabeled not in ("ignore", "background"):
        raise VitsegError(f"coco unlabeled pixels: {unlabeled!r} is not one of ignore, background")
    labels = CocoLabels(Path(coco_json), unlabeled, ignore_index)  # type: ignore[arg-type]
    images_dir = root / split_dir if (root / split_dir).is_dir() else root
    samples = []
    for key, info in sorted(labels.images.items(), key=lambda kv: str(kv[1].get("file_name"))):
        name = info.get("file_name")
        if not name:
            raise VitsegError(f"{coco_json}: image {key} has no file_name")
        img = images_dir / name
        if not img.is_file():
            raise VitsegError(f"{img}: image listed in {coco_json} not found")
        samples.append(Sample(key, img, None))
    if not samples:
        raise VitsegError(f"{coco_json}: lists no images")
    names = labels.class_names
    palette = default_palette(len(names))
    return SegDataset(root, "coco", split, samples, names, palette, ignore_index=ignore_index, coco=labels,
                      fixed_reduce=False, fixed_by="the coco format (labels rasterised from 0)")


def open_dataset(root: "str | Path", fmt: str = "folder", split: str = "val", *,
                 classes_file: "str | Path | None" = None, coco_json: "str | Path | None" = None,
                 coco_unlabeled: str = "ignore", num_classes: Optional[int] = None,
                 label_map: "str | Path | None" = None, layout: Optional[CustomLayout] = None) -> SegDataset:
    """Open a labelled dataset of format `fmt` (one of FORMATS). `num_classes` lets a folder or mmseg dataset without
    class names take generic ones (class_0, ...) from the model; it is checked against a classes file if any.
    `label_map` (mapillary, mmseg): a file or built-in name (`label_maps`); `layout`: the mmseg format's folders."""
    root = Path(root)
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise not_one_of("--format", fmt, FORMATS)
    if not root.exists():
        raise VitsegError(f"{root}: dataset folder not found")
    if label_map is not None and fmt not in ("mapillary", "mmseg"):
        raise VitsegError(f"--label-map applies to the mapillary and mmseg formats, not {fmt}")
    if layout is not None and fmt != "mmseg":
        raise VitsegError(f"--img-dir/--ann-dir/--split-file describe the mmseg format, not {fmt}")
    if fmt == "folder":
        return _open_folder(root, split, Path(classes_file) if classes_file else None, num_classes)
    openers = {"ade20k": lambda: _open_ade20k(root, split), "cityscapes": lambda: _open_cityscapes(root, split),
               "voc": lambda: _open_voc(root, split),
               "coco": lambda: _open_coco(root, split, Path(coco_json) if coco_json else None, coco_unlabeled, 255),
               "coco_stuff164k": lambda: open_coco_stuff(root, split, "164k"),
               "coco_stuff10k": lambda: open_coco_stuff(root, split, "10k"),
               "pascal_context_59": lambda: open_pascal_context_59(root, split),
               "mapillary": lambda: open_mapillary(root, split, label_map),
               "mmseg": lambda: open_custom(root, split, layout, label_map, num_classes)}
    ds = openers[fmt]()
    if classes_file:
        _apply_classes_file(ds, Path(classes_file))
    return ds


def _apply_classes_file(ds: SegDataset, classes_file: Path) -> None:
    """Rename a format's classes (e.g. a translated list; the count must match) and state its label treatment."""
    meta = load_classes_file(classes_file, names_optional=True)
    if meta["classes"] is not None:
        if len(meta["classes"]) != ds.num_classes:
            raise VitsegError(f"{classes_file}: {len(meta['classes'])} classes but {ds.fmt} has {ds.num_classes}")
        ds.class_names = meta["classes"]
        ds.palette = meta["palette"] or ds.palette
    stated = meta.get("reduce_zero_label")
    if stated is not None and ds.fixed_reduce is not None and stated != ds.fixed_reduce:
        raise VitsegError(f"{classes_file}: reduce_zero_label: {str(stated).lower()} but {ds.fixed_by} needs "
                          f"reduce_zero_label: {str(ds.fixed_reduce).lower()}")
    if stated is not None:
        ds.fixed_reduce, ds.fixed_by, ds.reduce_zero_label = stated, f"the classes file {classes_file}", stated
