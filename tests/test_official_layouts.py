"""The layouts mmseg's dataset preparation leaves, evaluated end to end with a fixed tiny model.

Each fake dataset's labels are the model's own predictions written through the inverse of the format's label
treatment (class k stored as k+1 where the format reduces zero, as k elsewhere), so the right treatment scores
aAcc 1.0 and a shifted one about 0. Files that must not be read sit beside them (COCO's raw maps, Pascal Context's
training images, other splits), and the image count is checked.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from vitseg_cli.loading import load_model, save_model
from vitseg_cli.cli import app
from vitseg_cli.data.datasets import open_dataset
from vitseg_cli.data.io import read_image, write_image
from vitseg_cli.data.label_maps import MAPILLARY_TO_CITYSCAPES
from vitseg_cli.metrics import shifted_label_warning
from vitseg_cli.model.segmentor import build_model
from vitseg_cli.spec import load_spec

runner = CliRunner()
SIZES = [(32, 48), (48, 32)]  # (H, W) of the images of a split


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A saved nano model with K classes (the same weights for the same K); its spec states the label treatment
    given (None: states none)."""
    made: dict = {}

    def get(k: int, reduce_zero_label=None) -> Path:
        key = (k, reduce_zero_label)
        if key not in made:
            path = tmp_path_factory.mktemp("models") / f"nano{k}_{reduce_zero_label}.safetensors"
            spec = load_spec("nano").updated(model={"num_classes": k}, data={"reduce_zero_label": reduce_zero_label})
            torch.manual_seed(k)  # the same weights for the same K, whatever the spec states
            save_model(build_model(spec), path)
            made[key] = path
        return made[key]

    return get


def _predict(weights: Path, images: list[Path]) -> list[np.ndarray]:
    model = load_model(weights)
    from vitseg_cli import predict

    return [predict(model, read_image(p)).labels.astype(np.int64) for p in images]


def _images(folder: Path, names: list[str], seed: int, suffix: str = ".jpg") -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for name, (h, w) in zip(names, SIZES):
        path = folder / f"{name}{suffix}"
        write_image(path, rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        paths.append(path)
    return paths


def _labels(paths: list[Path], labels: list[np.ndarray]) -> None:
    for path, label in zip(paths, labels):
        assert label.max() <= 255
        write_image(path, label.astype(np.uint8))


def _eval(data: Path, weights: Path, out: Path, *extra: str):
    res = runner.invoke(app, ["eval", str(data), "-w", str(weights), "--out", str(out), "--device", "cpu",
                              "--workers", "0", "--quiet", *extra])
    metrics = json.loads((out / "metrics.json").read_text()) if res.exit_code == 0 else None
    return res, metrics


def _output(res) -> str:
    return " ".join(res.output.split())


# ------------------------------------------------------------------------------------------------- COCO-Stuff


def _coco_stuff164k(root: Path, weights: Path) -> Path:
    base = root / "coco_stuff164k"
    names = ["000000000139", "000000000285"]
    images = _images(base / "images" / "val2017", names, 0)
    preds = _predict(weights, images)
    _labels([base / "annotations" / "val2017" / f"{n}_labelTrainIds.png" for n in names], preds)
    for n in names:  # the raw stuffthingmaps the converter leaves beside: values 0..181, not labels
        write_image(base / "annotations" / "val2017" / f"{n}.png", np.full((8, 8), 181, np.uint8))
    _images(base / "images" / "train2017", ["000000000009"], 5)  # another split, no labels: never read
    return base


def test_coco_stuff164k_reads_the_converted_maps_only(tmp_path, model_file):
    weights = model_file(171)
    base = _coco_stuff164k(tmp_path, weights)
    ds = open_dataset(tmp_path, "coco_stuff164k", "val")
    assert len(ds) == 2 and ds.num_classes == 171 and ds.class_names[0] == "person" and not ds.reduce_zero_label
    assert all(s.label.name.endswith("_labelTrainIds.png") for s in ds.samples)
    res, m = _eval(tmp_path, weights, tmp_path / "r", "--format", "coco_stuff164k")
    assert res.exit_code == 0, res.output
    assert m["aAcc"] == 1.0 and m["num_images"] == 2 and m["run"]["split"] == "val2017"
    # the same labels under a spec stating reduce_zero_label: one error naming both, no report
    res, _ = _eval(base, weights, tmp_path / "r2", "--format", "coco_stuff164k",
                   "--set", "data.reduce_zero_label=true")
    assert res.exit_code == 2 and not (tmp_path / "r2").exists()
    text = _output(res)
    assert "states reduce_zero_label: true" in text and "coco_stuff164k format" in text
    assert "reduce_zero_label: false" in text and "Traceback" not in res.output


def test_coco_stuff10k_reduces_zero_label(tmp_path, model_file):
    weights = model_file(171)
    base = tmp_path / "coco_stuff10k"
    names = ["COCO_train2014_000000000077", "COCO_train2014_000000000078"]
    images = _images(base / "images" / "test2014", names, 1)
    preds = _predict(weights, images)
    _labels([base / "annotations" / "test2014" / f"{n}_labelTrainIds.png" for n in names], [p + 1 for p in preds])
    _images(base / "images" / "train2014", ["COCO_train2014_000000000009"], 6)
    res, m = _eval(base, weights, tmp_path / "r", "--format", "coco_stuff10k")
    assert res.exit_code == 0, res.output
    assert m["aAcc"] == 1.0 and m["num_images"] == 2 and m["run"]["reduce_zero_label"] is True
    # read as they are (a folder of the same files, no treatment stated): shifted by one, and eval says so
    folder = tmp_path / "as_folder"
    for img in images:
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "images" / img.name).symlink_to(img)
        (folder / "masks").mkdir(exist_ok=True)
        (folder / "masks" / f"{img.stem}.png").symlink_to(base / "annotations" / "test2014" /
                                                           f"{img.stem}_labelTrainIds.png")
    res, m = _eval(folder, weights, tmp_path / "r2", "--format", "folder")
    assert res.exit_code == 0, res.output
    assert m["aAcc"] < 0.05
    assert "shifted by one" in _output(res) and "reduce_zero_label" in _output(res)
    assert "shifted by one" in m["run"]["warning"]
    # the release preset's treatment through the spec: the same folder now scores 1.0 ...
    res, m = _eval(folder, model_file(171, True), tmp_path / "r3", "--format", "folder")
    assert res.exit_code == 0 and m["aAcc"] == 1.0 and "shifted" not in _output(res)
    # ... and a classes file that holds only the flag says the same
    (folder / "classes.yaml").write_text("reduce_zero_label: true\n")
    ds = open_dataset(folder, "folder", num_classes=171)
    assert ds.reduce_zero_label and ds.num_classes == 171
    assert np.array_equal(ds.read_label(0), preds[0])


# --------------------------------------------------------------------------------------------- Pascal Context


def test_pascal_context_59_uses_the_split_only(tmp_path, model_file):
    weights = model_file(59)
    voc = tmp_path / "VOCdevkit" / "VOC2010"
    val = ["2008_000002", "2008_000007"]
    images = _images(voc / "JPEGImages", val, 2)
    _images(voc / "JPEGImages", ["2008_000008", "2008_000015"], 7)  # training images, no context labels
    preds = _predict(weights, images)
    _labels([voc / "SegmentationClassContext" / f"{n}.png" for n in val], [p + 1 for p in preds])
    (voc / "ImageSets" / "SegmentationContext").mkdir(parents=True)
    (voc / "ImageSets" / "SegmentationContext" / "val.txt").write_text("\n".join(val) + "\n")
    (voc / "ImageSets" / "SegmentationContext" / "train.txt").write_text("2008_000008\n2008_000015\n")
    for root in (tmp_path, tmp_path / "VOCdevkit", voc):  # the data root or its parents
        ds = open_dataset(root, "pascal_context_59", "val")
        assert [s.key for s in ds.samples] == val and ds.reduce_zero_label and ds.num_classes == 59
    res, m = _eval(tmp_path, weights, tmp_path / "r", "--format", "pascal_context_59")
    assert res.exit_code == 0, res.output
    assert m["aAcc"] == 1.0 and m["num_images"] == 2
    # mmseg's CustomDataset on the same files, told nothing about the treatment: shifted, and the warning
    res, m = _eval(voc, weights, tmp_path / "r2", "--format", "mmseg", "--img-dir", "JPEGImages", "--ann-dir",
                   "SegmentationClassContext", "--seg-map-suffix", ".png",
                   "--split-file", "ImageSets/SegmentationContext/val.txt")
    assert res.exit_code == 0, res.output
    assert m["aAcc"] < 0.05 and m["num_images"] == 2 and "shifted by one" in _output(res)
    res, m = _eval(voc, weights, tmp_path / "r3", "--format", "mmseg", "--img-dir", "JPEGImages", "--ann-dir",
                   "SegmentationClassContext", "--split-file", "ImageSets/SegmentationContext/val.txt",
                   "--reduce-zero-label")
    assert res.exit_code == 0, res.output
    assert m["aAcc"] == 1.0 and m["num_images"] == 2
    # without the split file, mmseg reads every image in the folder: the training ones have no label
    res, _ = _eval(voc, weights, tmp_path / "r4", "--format", "mmseg", "--img-dir", "JPEGImages", "--ann-dir",
                   "SegmentationClassContext")
    assert res.exit_code == 2 and "2008_000008.jpg: no label" in _output(res)


# ---------------------------------------------------------------------------------------------------- Mapillary


def _mapillary(root: Path, raw: list[np.ndarray], seed: int) -> list[Path]:
    base = root / "Mapillary"
    names = ["-0a1b2c", "zz9"]
    images = _images(base / "validation" / "images", names, seed)
    _labels([base / "validation" / "labels" / f"{n}.png" for n in names], raw)
    _images(base / "training" / "images", ["t0"], 8)
    return images


def test_mapillary_own_labels_and_the_cityscapes_map(tmp_path, model_file):
    weights = model_file(66)
    images = _mapillary(tmp_path / "a", [np.zeros((h, w), np.int64) for h, w in SIZES], 3)
    _labels([p.parent.parent / "labels" / f"{p.stem}.png" for p in images], _predict(weights, images))
    res, m = _eval(tmp_path / "a", weights, tmp_path / "r", "--format", "mapillary")
    assert res.exit_code == 0, res.output
    assert m["aAcc"] == 1.0 and m["num_images"] == 2 and m["per_class"][65]["class"] == "Unlabeled"

    # the official Mapillary -> Cityscapes mapping: each Cityscapes class c stored as a Mapillary value mapping to c
    weights19 = model_file(19)
    images = _mapillary(tmp_path / "b", [np.zeros((h, w), np.int64) for h, w in SIZES], 4)
    preds = _predict(weights19, images)
    inverse = np.array([values[-1] for values in MAPILLARY_TO_CITYSCAPES])
    raw = [inverse[p] for p in preds]
    raw[0][0, :] = 0  # "Bird": no Cityscapes class, ignored
    _labels([p.parent.parent / "labels" / f"{p.stem}.png" for p in images], raw)
    ds = open_dataset(tmp_path / "b", "mapillary", "val", label_map="mapillary_to_cityscapes")
    assert ds.num_classes == 19 and ds.class_names[0] == "road"
    assert (ds.read_label(0)[0] == 255).all()
    res, m = _eval(tmp_path / "b", weights19, tmp_path / "r2", "--format", "mapillary", "--label-map",
                   "mapillary_to_cityscapes")
    assert res.exit_code == 0, res.output
    assert m["aAcc"] == 1.0
    # the same mapping written as a file
    table = tmp_path / "map.yaml"
    table.write_text(json.dumps({"classes": ds.class_names, "map": MAPILLARY_TO_CITYSCAPES, "raw_values": 66}))
    mapped = open_dataset(tmp_path / "b", "mapillary", "val", label_map=table)
    assert all(np.array_equal(mapped.read_label(i), ds.read_label(i)) for i in range(2))


def test_mapillary_value_past_its_labels_is_an_error(tmp_path):
    _mapillary(tmp_path, [np.full((h, w), 66, np.int64) for h, w in SIZES], 3)
    ds = open_dataset(tmp_path, "mapillary", "validation")
    with pytest.raises(Exception, match="label value 66 outside the 0..65"):
        ds.read_label(0)


# -------------------------------------------------------------------------------------------------- the warning


def test_shifted_label_warning_from_the_confusion_matrix():
    conf = np.zeros((4, 4), np.int64)
    conf[1, 0], conf[2, 1], conf[3, 2] = 50, 30, 20  # every label one above its prediction
    assert "one too high" in shifted_label_warning(conf)
    conf[0, 0] = 11  # aAcc 11/111 > a tenth of 100/111: no warning
    assert shifted_label_warning(conf) is None
    up = np.zeros((3, 3), np.int64)
    up[0, 1], up[1, 2] = 10, 10
    assert "one too low" in shifted_label_warning(up)
    assert shifted_label_warning(np.eye(3, dtype=np.int64) * 5) is None
    assert shifted_label_warning(np.zeros((3, 3), np.int64)) is None


# ------------------------------------------------------------------------------------------ format from release


def test_release_names_pick_their_dataset_format():
    from vitseg_cli.commands.eval import default_format

    assert default_format(Path("mask2former_beit_adapter_large_512_40k_cocostuff10k"), None) == "coco_stuff10k"
    assert default_format(None, "upernet_beit_adapter_large_640_80k_cocostuff164k") == "coco_stuff164k"
    assert default_format(Path("x.pth"), "mask2former_beit_adapter_base_480_40k_pascal_context_59") == \
        "pascal_context_59"
    assert default_format(Path("mask2former_beit_adapter_large_896_80k_mapillary"), None) == "cityscapes"
    assert default_format(Path("upernet_deit_adapter_tiny_512_160k_ade20k"), None) == "ade20k"
    assert default_format(Path("model.safetensors"), "nano") == "folder"


# ------------------------------------------------------------------------- malformed labels: one line each


def _coco(root: Path, images: list[dict], segmentation) -> Path:
    write_image(root / "val2017" / "a.jpg", np.zeros((20, 30, 3), np.uint8))
    anns = [{"id": 7, "image_id": 1, "category_id": 1, "area": 80.0, "segmentation": segmentation}]
    data = {"images": images, "categories": [{"id": 1, "name": "thing"}], "annotations": anns}
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(data))
    return root


IMAGE = {"id": 1, "file_name": "a.jpg", "height": 20, "width": 30}


@pytest.mark.parametrize("images, segmentation, message", [
    ([IMAGE], {"size": [20, 30], "counts": [10, 20, 30]}, "RLE counts covering 60 pixels, not the image's 600"),
    ([IMAGE], {"size": [20, 30], "counts": "zzzz"}, "RLE counts that are not valid run lengths"),  # pycocotools
    ([IMAGE], {"size": [20, 30], "counts": "0000"}, "RLE counts covering 0 pixels"),  # decodes these two anyway
    ([IMAGE], {"size": [10, 30], "counts": [300]}, "RLE of size 30x10 on a 30x20 image"),
    ([IMAGE], [[2, 2, 12, 2, 12, 10, 2]], "polygon of 7 coordinates"),
    ([IMAGE, {**IMAGE, "id": "1"}], [[2, 2, 12, 2, 12, 10]], r"images\[1\] has the same id as another image"),
    ([{**IMAGE, "height": 65536, "width": 65536}], [[2, 2, 12, 2, 12, 10]], "declares more pixels than the"),
])
def test_malformed_coco_annotations_are_one_line_naming_the_file(tmp_path, images, segmentation, message):
    from vitseg_cli.errors import VitsegError

    root = _coco(tmp_path, images, segmentation)
    with pytest.raises(VitsegError, match=message) as err:
        open_dataset(root, "coco", "val").read_label(0)
    assert str(err.value).startswith(str(root / "annotations" / "instances_val2017.json"))
    assert "\n" not in str(err.value)


def test_coco_compressed_rle_is_read_as_pycocotools_writes_it(tmp_path):
    from pycocotools import mask as coco_mask

    truth = np.zeros((20, 30), np.uint8)
    truth[3:9, 4:25] = 1
    rle = coco_mask.encode(np.asfortranarray(truth))
    root = _coco(tmp_path, [IMAGE], {"size": [20, 30], "counts": rle["counts"].decode()})
    label = open_dataset(root, "coco", "val").read_label(0)
    assert np.array_equal(label == 0, truth == 1) and set(np.unique(label)) == {0, 255}


def test_cityscapes_16_bit_label_id_out_of_range(tmp_path):
    from vitseg_cli.errors import VitsegError

    write_image(tmp_path / "leftImg8bit" / "val" / "x" / "x_0_leftImg8bit.png", np.zeros((4, 5, 3), np.uint8))
    ids = np.full((4, 5), 7, np.uint16)
    ids[0, 0] = 263
    label = tmp_path / "gtFine" / "val" / "x" / "x_0_gtFine_labelIds.png"
    write_image(label, ids)
    ds = open_dataset(tmp_path, "cityscapes", "val")
    with pytest.raises(VitsegError, match="label value 263 outside the 0..255"):
        ds.read_label(0)
    ids[0, 0] = 33  # "bicycle": train id 18
    write_image(label, ids)
    assert ds.read_label(0)[0, 0] == 18 and ds.read_label(0)[1, 1] == 0


# ------------------------------------------------------------------------------------------------------- train


def test_train_applies_and_records_the_label_treatment(tmp_path):
    import yaml

    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    for i in range(2):
        write_image(data / "images" / f"{i}.png", rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
        write_image(data / "masks" / f"{i}.png", rng.integers(0, 4, (32, 32)).astype(np.uint8))  # 0 = unlabelled
    (data / "classes.yaml").write_text("classes: [a, b, c]\nreduce_zero_label: true\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"preset": "nano", "train": {
        "scale": [32, 32], "crop_size": [32, 32], "warmup_iters": 0, "batch_size": 2, "workers": 0,
        "photometric": False}}))
    common = ["train", "--quiet", "--spec", str(spec), "--data", str(data), "--iters", "1", "--device", "cpu"]
    res = runner.invoke(app, [*common, "--out", str(tmp_path / "bad"), "--set", "data.reduce_zero_label=false"])
    assert res.exit_code == 2 and not (tmp_path / "bad").exists()
    assert "states reduce_zero_label: false" in _output(res) and "classes.yaml needs" in _output(res)
    res = runner.invoke(app, [*common, "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    saved = yaml.safe_load((tmp_path / "run" / "spec.yaml").read_text())
    assert saved["data"]["reduce_zero_label"] is True and saved["model"]["num_classes"] == 3
