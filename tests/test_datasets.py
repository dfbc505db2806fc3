"""Each dataset format on tiny fixtures built here; label decoding and the errors that name the bad file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitseg_cli.data.datasets import check_label, open_dataset
from vitseg_cli.data.io import write_image
from vitseg_cli.errors import VitsegError


def _img(path: Path, h: int, w: int, seed: int = 0) -> None:
    write_image(path, np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))


def _mask(path: Path, values) -> None:
    write_image(path, np.asarray(values, np.uint8))


# --------------------------------------------------------------------------------------------------------- folder


def _folder(root: Path, classes="classes.yaml") -> Path:
    _img(root / "images" / "a.jpg", 2, 3)
    _img(root / "images" / "sub" / "b.png", 2, 2)
    _mask(root / "masks" / "a.png", [[0, 1, 2], [255, 1, 0]])
    _mask(root / "masks" / "sub" / "b.png", [[2, 2], [0, 1]])
    if classes == "classes.yaml":
        (root / classes).write_text("classes: [bg, x, y]\npalette: [[0,0,0],[1,2,3],[4,5,6]]\n")
    elif classes == "classes.txt":
        (root / classes).write_text("bg\nx\ny\n")
    return root


def test_folder_format_matches_by_relative_path(tmp_path):
    ds = open_dataset(_folder(tmp_path), "folder")
    assert [s.key for s in ds.samples] == ["a", "sub/b"]
    assert ds.class_names == ["bg", "x", "y"] and ds.palette[1] == (1, 2, 3) and ds.num_classes == 3
    image, label = ds.read_pair(0)
    assert image.shape == (2, 3, 3) and label.dtype == np.int64
    assert label.tolist() == [[0, 1, 2], [255, 1, 0]]
    assert len(ds) == 2 and ds.read_label(1).tolist() == [[2, 2], [0, 1]]


def test_folder_classes_txt_and_json(tmp_path):
    ds = open_dataset(_folder(tmp_path / "t", "classes.txt"), "folder")
    assert ds.class_names == ["bg", "x", "y"]
    root = _folder(tmp_path / "j", classes=None)
    (tmp_path / "c.json").write_text(json.dumps({"classes": ["p", "q", "r"], "reduce_zero_label": True}))
    ds = open_dataset(root, "folder", classes_file=tmp_path / "c.json")
    assert ds.class_names == ["p", "q", "r"] and ds.reduce_zero_label
    assert ds.read_label(0).tolist() == [[255, 0, 1], [255, 0, 255]]


def test_folder_errors(tmp_path):
    with pytest.raises(VitsegError, match="nowhere: dataset folder not found"):
        open_dataset(tmp_path / "nowhere", "folder")
    root = _folder(tmp_path / "d")
    _img(root / "images" / "lonely.png", 2, 2)
    with pytest.raises(VitsegError, match=r"lonely\.png: no label"):
        open_dataset(root, "folder")
    (root / "images" / "lonely.png").unlink()
    _mask(root / "masks" / "a.png", [[0, 1], [1, 0]])  # 2x2 label for a 2x3 image
    ds = open_dataset(root, "folder")
    with pytest.raises(VitsegError, match=r"a\.png: label is 2x2 \(WxH\) but its image is 3x2"):
        ds.read_pair(0)
    _mask(root / "masks" / "a.png", [[0, 7, 1], [1, 0, 0]])
    with pytest.raises(VitsegError, match=r"masks/a\.png: label value 7 outside \[0, 2\]"):
        ds.read_label(0)
    root2 = _folder(tmp_path / "e", classes=None)
    with pytest.raises(VitsegError, match="no classes file"):
        open_dataset(root2, "folder")
    assert open_dataset(root2, "folder", num_classes=4).class_names[3] == "class_3"


def test_check_label_reports_values():
    check_label(np.array([[0, 255], [2, 1]]), 3, 255, "ok.png")
    with pytest.raises(VitsegError, match=r"x\.png: label value -1, 3 outside"):
        check_label(np.array([[0, -1], [3, 255]]), 3, 255, "x.png")


# --------------------------------------------------------------------------------------------------------- ade20k


def test_ade20k_reduces_zero_label(tmp_path):
    base = tmp_path / "ADEChallengeData2016"
    _img(base / "images" / "validation" / "ADE_val_00000001.jpg", 2, 2)
    _mask(base / "annotations" / "validation" / "ADE_val_00000001.png", [[0, 1], [150, 2]])
    ds = open_dataset(tmp_path, "ade20k", "val")
    assert ds.num_classes == 150 and ds.class_names[0] == "wall" and ds.reduce_zero_label
    assert ds.read_label(0).tolist() == [[255, 0], [149, 1]]
    with pytest.raises(VitsegError, match="images/training"):
        open_dataset(tmp_path, "ade20k", "train")


# ----------------------------------------------------------------------------------------------------- cityscapes


def test_cityscapes_train_ids_and_label_ids_fallback(tmp_path):
    stem = "frankfurt_000000_000294"
    _img(tmp_path / "leftImg8bit" / "val" / "frankfurt" / f"{stem}_leftImg8bit.png", 2, 2)
    gt = tmp_path / "gtFine" / "val" / "frankfurt"
    _mask(gt / f"{stem}_gtFine_labelTrainIds.png", [[0, 18], [255, 13]])
    ds = open_dataset(tmp_path, "cityscapes", "val")
    assert ds.num_classes == 19 and ds.samples[0].key == f"frankfurt/{stem}"
    assert ds.read_label(0).tolist() == [[0, 18], [255, 13]]
    (gt / f"{stem}_gtFine_labelTrainIds.png").unlink()
    _mask(gt / f"{stem}_gtFine_labelIds.png", [[7, 33], [0, 26]])  # road, bicycle, unlabeled, car
    ds = open_dataset(tmp_path, "cityscapes", "val")
    assert ds.read_label(0).tolist() == [[0, 18], [255, 13]]


# ------------------------------------------------------------------------------------------------------------ voc


def test_voc_palette_png_read_as_indices(tmp_path):
    root = tmp_path / "VOCdevkit" / "VOC2012"
    _img(root / "JPEGImages" / "2007_000032.jpg", 2, 3)
    (root / "SegmentationClass").mkdir(parents=True)
    pal = Image.fromarray(np.array([[0, 1, 15], [255, 20, 0]], np.uint8), mode="P")
    pal.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
    pal.save(root / "SegmentationClass" / "2007_000032.png")
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000032\n")
    ds = open_dataset(tmp_path, "voc", "val")
    assert ds.num_classes == 21 and ds.class_names[15] == "person"
    assert ds.read_label(0).tolist() == [[0, 1, 15], [255, 20, 0]]
    with pytest.raises(VitsegError, match=r"train\.txt: split list not found \(available: val\)"):
        open_dataset(tmp_path, "voc", "train")


# ----------------------------------------------------------------------------------------------------------- coco


def _coco(tmp_path: Path, dog_area: float = 12.0) -> Path:
    from pycocotools import mask as mask_utils

    _img(tmp_path / "val2017" / "000000000001.jpg", 20, 30)
    rle_mask = np.zeros((20, 30), np.uint8, order="F")
    rle_mask[4:7, 8:12] = 1  # rows 4..6, cols 8..11: 12 pixels
    rle = mask_utils.encode(np.asfortranarray(rle_mask))
    rle["counts"] = rle["counts"].decode("ascii")
    data = {
        "images": [{"id": 1, "file_name": "000000000001.jpg", "height": 20, "width": 30}],
        "categories": [{"id": 5, "name": "dog"}, {"id": 1, "name": "cat"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 80.0, "bbox": [2, 2, 10, 8],
             "segmentation": [[2, 2, 12, 2, 12, 10, 2, 10]]},
            {"id": 11, "image_id": 1, "category_id": 5, "iscrowd": 0, "area": dog_area, "bbox": [8, 4, 4, 3],
             "segmentation": rle},
        ],
    }
    (tmp_path / "annotations").mkdir(exist_ok=True)
    (tmp_path / "annotations" / "instances_val2017.json").write_text(json.dumps(data))
    return tmp_path


def test_coco_polygon_and_rle_rasterised(tmp_path):
    ds = open_dataset(_coco(tmp_path), "coco", "val")
    assert ds.class_names == ["cat", "dog"]  # category ids 1, 5 -> contiguous 0, 1 in id order
    label = ds.read_label(0)
    assert label.shape == (20, 30) and label.dtype == np.int64
    assert label[3, 3] == 0 and label[9, 11] == 0  # inside the polygon (x 2..12, y 2..10)
    assert (label[4:7, 8:12] == 1).all()  # RLE: the smaller area is painted last, on top
    assert label[0, 0] == 255 and label[15, 20] == 255 and label[5, 25] == 255  # unlabelled = ignore
    ds_bg = open_dataset(tmp_path, "coco", "val", coco_unlabeled="background")
    lab = ds_bg.read_label(0)
    assert ds_bg.class_names == ["background", "cat", "dog"] and lab[0, 0] == 0 and lab[5, 9] == 2 and lab[3, 3] == 1


def test_coco_paints_larger_areas_first(tmp_path):
    ds = open_dataset(_coco(tmp_path, dog_area=500.0), "coco", "val")
    assert (ds.read_label(0)[4:7, 8:12] == 0).all()  # now the cat (smaller area) is on top


def test_coco_errors(tmp_path):
    with pytest.raises(VitsegError, match="instances_val2017.json"):
        open_dataset(tmp_path, "coco", "val")
    root = _coco(tmp_path)
    (root / "val2017" / "000000000001.jpg").unlink()
    with pytest.raises(VitsegError, match=r"000000000001\.jpg: image listed in .* not found"):
        open_dataset(root, "coco", "val")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(VitsegError, match="bad.json: not a COCO annotation file"):
        open_dataset(root, "coco", "val", coco_json=bad)


def test_unknown_format(tmp_path):
    with pytest.raises(VitsegError, match="--format 'kitti'"):
        open_dataset(tmp_path, "kitti")
