"""Hostile and careless inputs: nothing written outside --out, no silent wrong result, no hang or
unbounded allocation, one line instead of a traceback. Each test states the input a user (or an attacker) gave."""

from __future__ import annotations

import json
import os
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from vitseg_cli.checkpoints import read_vitseg
from vitseg_cli.loading import load_model, save_model
from vitseg_cli.cli import app
from vitseg_cli.data import io
from vitseg_cli.data.datasets import load_classes_file, open_dataset
from vitseg_cli.data.synth import make_synthetic
from vitseg_cli.engine.evaluate import match_pred_gt
from vitseg_cli.engine.inference import InferenceSettings
from vitseg_cli.engine.train_state import check_run_folder
from vitseg_cli.errors import VitsegError
from vitseg_cli.model.segmentor import Segmentor
from vitseg_cli.spec import load_spec, spec_from_dict

runner = CliRunner()
UNWRITABLE = "/proc/vitseg-no-such-dir/out"  # mkdir fails there even for root (no read-only mount needed)


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result) -> str:
    """The error of a command that failed cleanly: exit code 2, no traceback, one `error:` line."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


def tiny_spec(num_classes: int = 6):
    return load_spec("nano").updated(model={"backbone": {"embed_dim": 48, "conv_inplane": 8},
                                            "decode_head": {"channels": 16}, "auxiliary_head": None,
                                            "num_classes": num_classes},
                                     test={"resize": None, "mode": "whole"})


def tiny_weights(path: Path, num_classes: int = 6) -> Path:
    torch.manual_seed(0)
    return save_model(Segmentor(tiny_spec(num_classes)).eval(), path)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return tiny_weights(tmp_path_factory.mktemp("w") / "tiny.safetensors")


def noise_image(path: Path, h: int = 24, w: int = 32, seed: int = 0) -> Path:
    io.write_image(path, np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))
    return path


def finishes(fn, fifo: Path, seconds: float = 20.0):
    """Run fn in a thread; if it is still blocked after `seconds` (on opening `fifo`), release it and fail."""
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - handed to the test
            outcome["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        try:  # give the blocked reader a writer, so it sees end-of-file and the thread ends
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
        pytest.fail(f"still blocked on the FIFO {fifo} after {seconds} s")
    return outcome


# ------------------------------------------------------------------------------ writes outside --out, data loss


def test_eval_save_predictions_keeps_coco_ids_with_dotdot_inside_out(tmp_path):
    """A COCO image id `../../../victim` must not become OUT/predictions/masks/../../../victim.png."""
    root = tmp_path / "coco"
    noise_image(root / "val2017" / "a.jpg", 20, 30)
    data = {"images": [{"id": "../../../victim", "file_name": "a.jpg", "height": 20, "width": 30}],
            "categories": [{"id": 1, "name": "thing"}],
            "annotations": [{"id": 1, "image_id": "../../../victim", "category_id": 1, "area": 80.0,
                             "segmentation": [[2, 2, 12, 2, 12, 10, 2, 10]]}]}
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(data))
    model = tiny_weights(tmp_path / "one.safetensors", num_classes=1)
    out = tmp_path / "work" / "report"
    res = cli("eval", root, "--format", "coco", "--weights", model, "--out", out, "--workers", 0, "--device", "cpu",
              "--save-predictions", "-q")
    assert res.exit_code == 0, res.output
    assert not list((tmp_path / "work").glob("victim*")) and not list(tmp_path.glob("victim*"))
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("victim*"))
    assert written == ["predictions/color/__/__/__/victim.png", "predictions/masks/__/__/__/victim.png",
                       "predictions/overlay/__/__/__/victim.jpg"]


def test_eval_save_predictions_keeps_a_voc_split_line_with_dotdot_inside_out(tmp_path):
    """The split line `../../../voc2/x` names a label that OUT/predictions/masks/../../../voc2/x.png would overwrite
    when OUT sits beside the dataset."""
    root = tmp_path / "a" / "b" / "voc"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("../../../voc2/x\n")
    noise_image(tmp_path / "a" / "voc2" / "x.jpg", 20, 30)
    label = tmp_path / "a" / "voc2" / "x.png"
    io.write_image(label, np.full((20, 30), 7, np.uint8))
    before = label.read_bytes()
    model = tiny_weights(tmp_path / "voc.safetensors", num_classes=21)
    out = tmp_path / "a" / "rep"
    res = cli("eval", root, "--format", "voc", "--weights", model, "--out", out, "--workers", 0, "--device", "cpu",
              "--save-predictions", "-q")
    assert res.exit_code == 0, res.output
    assert label.read_bytes() == before
    assert (out / "predictions" / "masks" / "__" / "__" / "__" / "voc2" / "x.png").is_file()


def test_safe_relpath_never_leaves_the_folder():
    assert io.safe_relpath("../../x") == "__/__/x"
    assert io.safe_relpath("/etc/passwd") == "etc/passwd"
    assert io.safe_relpath("a\\..\\b/./c") == "a/__/b/c"
    assert io.safe_relpath("..") == "__" and io.safe_relpath("") == "_"


def test_predict_refuses_a_source_inside_out(weights, tmp_path):
    """`predict DATASET/images/a.png --out DATASET` would overwrite (or, with --save masks, skip as done) the
    dataset's ground truth in DATASET/masks/."""
    root = tmp_path / "dataset"
    image = noise_image(root / "images" / "a.png")
    gt = root / "masks" / "a.png"
    io.write_image(gt, np.full((24, 32), 3, np.uint8))
    before = gt.read_bytes()
    for extra in ([], ["--save", "masks"]):
        msg = one_line_error(cli("predict", image, "--weights", weights, "--out", root, "--workers", 0, *extra))
        assert "inside --out" in msg
    msg = one_line_error(cli("predict", root / "images", "--weights", weights, "--out", root, "--workers", 0))
    assert "inside --out" in msg
    assert gt.read_bytes() == before and not (root / "color").exists()


def test_synth_refuses_a_non_empty_folder_without_overwrite(tmp_path):
    target = tmp_path / "real"
    (target / "masks").mkdir(parents=True)
    (target / "masks" / "00000.png").write_bytes(b"precious")
    with pytest.raises(VitsegError, match="not empty"):
        make_synthetic(target, 1, seed=0, size=(16, 16))
    assert (target / "masks" / "00000.png").read_bytes() == b"precious"
    msg = one_line_error(cli("data", "synth", target, "--num", 1, "--size", "16x16", "--workers", 1))
    assert "--overwrite" in msg
    # with --overwrite a larger earlier synth shrinks to exactly the new pairs
    make_synthetic(tmp_path / "s", 3, seed=0, size=(16, 16))
    res = cli("data", "synth", tmp_path / "s", "--num", 1, "--size", "16x16", "--workers", 1, "--overwrite")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "s" / "images").iterdir()) == ["00000.png"]


# ------------------------------------------------------------------------------------- silent wrong results


def test_slide_stride_larger_than_the_crop_is_refused():
    spec = tiny_spec()
    with pytest.raises(VitsegError, match="larger than the crop"):
        InferenceSettings.from_spec(spec, mode="slide", crop_size=(64, 64), stride=(100, 100))
    with pytest.raises(VitsegError, match="test: stride"):
        spec_from_dict({"test": {"mode": "slide", "crop_size": [64, 64], "stride": [65, 32]}})
    assert spec_from_dict({"test": {"mode": "whole", "crop_size": [64, 64], "stride": [65, 32]}})  # unused there


def _store(path: Path, state: dict, metadata: dict) -> Path:
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata=metadata)
    return path


@pytest.mark.parametrize("damage, message", [
    (lambda t: t.fill_(float("nan")), "NaN or infinite"),
    (lambda t: t.fill_(float("inf")), "NaN or infinite"),
    (lambda t: t.to(torch.int32), "not floating point"),
])
def test_nan_inf_or_integer_weights_are_refused(weights, tmp_path, damage, message):
    state, metadata = read_vitseg(weights)
    key = "decode_head.conv_seg.weight"
    state[key] = damage(state[key].clone())
    path = _store(tmp_path / "bad.safetensors", state, metadata)
    with pytest.raises(VitsegError, match=rf"bad.safetensors: weight {key} .*{message}"):
        load_model(path)


@pytest.mark.parametrize("section, message", [
    ({"data": {"std": [0, 57.12, 57.375]}}, "data.std.0"),
    ({"data": {"mean": [float("nan"), 1, 1]}}, "data.mean.0"),
    ({"test": {"resize": {"scale": [0, 512]}}}, "test.resize.scale.0"),
    ({"model": {"num_classes": 70000}}, "model.num_classes"),
])
def test_spec_values_that_give_all_zero_or_wrapped_masks_are_refused(section, message):
    with pytest.raises(VitsegError, match=message):
        spec_from_dict(section)


def test_a_class_list_past_uint16_is_refused(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("\n".join(f"c{i}" for i in range(65536)))
    with pytest.raises(VitsegError, match="65536 classes"):
        load_classes_file(path)


def test_pred_gt_pair_by_relative_path_and_ambiguity_is_an_error(tmp_path):
    mask = np.zeros((2, 2), np.uint8)
    for name in ("gt/a/x.png", "gt/b/x.png", "pred/a/x.png", "flat/x.png"):
        io.write_image(tmp_path / name, mask)
    # b/x has no prediction: it must not be scored against a/x's
    with pytest.raises(VitsegError, match=r"b/x\.png: no prediction"):
        match_pred_gt(tmp_path / "pred", tmp_path / "gt")
    # one flat x.png for two ground truths named x: ambiguous
    with pytest.raises(VitsegError, match="ambiguous"):
        match_pred_gt(tmp_path / "flat", tmp_path / "gt")
    # a unique stem still pairs across layouts
    io.write_image(tmp_path / "gt2" / "sub" / "y.png", mask)
    io.write_image(tmp_path / "pred2" / "y.png", mask)
    assert [k for k, _, _ in match_pred_gt(tmp_path / "pred2", tmp_path / "gt2")] == ["sub/y"]


def test_predict_json_tells_the_truth_after_a_write_failure(weights, tmp_path, monkeypatch):
    from vitseg_cli.engine import outputs
    from vitseg_cli.engine import predict as predict_engine

    for i in range(3):
        noise_image(tmp_path / "in" / f"{i}.png", seed=i)
    real = outputs.write_image
    calls = []

    def disk_full_after_one(path, img, *args, **kwargs):
        calls.append(path)
        if len(calls) > 1:
            raise VitsegError(f"{path}: cannot write (No space left on device)")
        return real(path, img, *args, **kwargs)

    monkeypatch.setattr(outputs, "write_image", disk_full_after_one)
    out = tmp_path / "out"
    opts = predict_engine.PredictOptions(sources=[str(tmp_path / "in")], out=out, weights=weights, device="cpu",
                                         save=("masks",), workers=0, quiet=True)
    with pytest.raises(VitsegError, match="No space left"):
        predict_engine.run_predict(opts)
    record = json.loads((out / "predict.json").read_text())
    assert record["processed"] == 1 == len(list((out / "masks").glob("*.png")))
    assert record["status"] == "failed" and "No space left" in record["error"]


# ------------------------------------------------------------------------------ hangs and unbounded resources


def test_a_fifo_as_weights_spec_or_list_entry_does_not_hang(weights, tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    for fn, message in ((lambda: load_model(fifo), "not a regular file"),
                        (lambda: load_spec(str(fifo)), "not a regular file"),
                        (lambda: io.read_image(fifo), "not a regular file")):
        outcome = finishes(fn, fifo)
        assert isinstance(outcome.get("error"), VitsegError) and message in str(outcome["error"]), outcome
    listing = tmp_path / "list.txt"
    listing.write_text(f"{fifo}\n")
    outcome = finishes(lambda: cli("predict", listing, "--weights", weights, "--out", tmp_path / "o", "--workers", 0,
                                   "--device", "cpu", "-q"), fifo)
    res = outcome["value"]
    assert res.exit_code == 1 and "not a regular file" in res.output  # the bad entry is counted as failed


def _laughs(levels: int) -> str:
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + f"\nclasses: [a, *l{levels - 1}]\n"


def test_billion_laughs_classes_yaml_is_refused(tmp_path):
    path = tmp_path / "classes.yaml"
    path.write_text(_laughs(7))  # 9^7 = 4.8 million strings once expanded
    with pytest.raises(VitsegError, match="expands to more than"):
        load_classes_file(path)


def test_deeply_nested_yaml_is_one_line(tmp_path):
    spec, classes = tmp_path / "spec.yaml", tmp_path / "classes.yaml"
    spec.write_text("model: " + "[" * 5000 + "]" * 5000 + "\n")
    classes.write_text("classes:\n  " + "- " * 3000 + "x\n")
    for fn, path in ((lambda: load_spec(str(spec)), spec), (lambda: load_classes_file(classes), classes)):
        with pytest.raises(VitsegError, match=rf"{path.name}: .*(nest|deep)"):
            fn()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG signature + IHDR (8-bit grayscale) + IEND: declares its size, holds no pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IEND", b""))


def test_images_above_the_pixel_limit_are_refused_from_the_header(tmp_path, monkeypatch):
    big = tmp_path / "big.png"
    big.write_bytes(_png_header_only(30000, 30000))
    assert io.max_pixels() == 1 << 28  # the documented default
    monkeypatch.setattr(io.cv2, "imdecode", lambda *a: pytest.fail("decoded before the size check"))
    for read in (io.read_image, io.read_label):
        with pytest.raises(VitsegError, match=r"big.png: 30000x30000 image is larger than the 268435456 pixel limit"):
            read(big)
    small = noise_image(tmp_path / "small.png", 20, 30)
    monkeypatch.undo()
    monkeypatch.setenv("VITSEG_MAX_PIXELS", "500")
    with pytest.raises(VitsegError, match="VITSEG_MAX_PIXELS"):
        io.read_image(small)
    monkeypatch.setenv("VITSEG_MAX_PIXELS", "0")  # no limit
    assert io.read_image(small).shape == (20, 30, 3)


def test_a_huge_yaml_in_safetensors_metadata_is_refused_unparsed(weights, tmp_path):
    state, metadata = read_vitseg(weights)
    metadata["spec"] = "# " + "x" * (5 << 20) + "\n" + metadata["spec"]
    path = _store(tmp_path / "padded.safetensors", state, metadata)
    with pytest.raises(VitsegError, match=r"padded.safetensors \(embedded spec\): YAML of 5.2 MB is larger"):
        load_model(path)


def test_visualize_refuses_a_mask_value_past_the_classes(tmp_path):
    noise_image(tmp_path / "img" / "a.png", 8, 8)
    mask = np.zeros((8, 8), np.uint16)
    mask[0, 0] = 60000  # drawn and scored, this sized tables by 60001 classes (27 GB with --gt)
    io.write_image(tmp_path / "masks" / "a.png", mask)
    (tmp_path / "classes.txt").write_text("a\nb\n")
    res = cli("visualize", tmp_path / "img", "--masks", tmp_path / "masks", "--classes", tmp_path / "classes.txt",
              "--out", tmp_path / "viz", "-q")
    assert res.exit_code == 1 and "mask holds class 60000 but there are 2 classes" in res.output
    assert not (tmp_path / "viz" / "overlay" / "a.jpg").exists()


# ------------------------------------------------------------------------------------ one line, no traceback


def test_every_command_fails_in_one_line_on_an_unwritable_out(weights, tmp_path, monkeypatch):
    from vitseg_cli.engine import evaluate as evaluate_engine

    image = noise_image(tmp_path / "img" / "a.png")
    data = make_synthetic(tmp_path / "data", 2, seed=0, size=(32, 32))
    io.write_image(tmp_path / "pm" / "a.png", np.zeros((24, 32), np.uint8))
    monkeypatch.setattr(evaluate_engine, "evaluate_model",
                        lambda *a, **k: pytest.fail("evaluated before checking --out"))
    commands = [
        ("predict", image, "--weights", weights, "--out", UNWRITABLE, "--workers", 0, "--device", "cpu"),
        ("eval", data, "--weights", weights, "--out", UNWRITABLE, "--workers", 0, "--device", "cpu"),
        ("eval", "--pred", tmp_path / "pm", "--gt", tmp_path / "pm", "--num-classes", 6, "--out", UNWRITABLE),
        ("train", "--spec", "nano", "--data", data, "--out", UNWRITABLE, "--device", "cpu"),
        ("visualize", image, "--masks", tmp_path / "pm", "--classes", data / "classes.yaml", "--out", UNWRITABLE),
        ("data", "synth", UNWRITABLE, "--num", 1, "--size", "16x16", "--workers", 1),
        ("convert", weights, "--out", f"{UNWRITABLE}/m.safetensors"),
        ("export", weights, "--out", f"{UNWRITABLE}/m.onnx", "--size", 32),
    ]
    for args in commands:
        msg = one_line_error(cli(*args))
        assert "/proc/vitseg-no-such-dir" in msg and ("cannot write" in msg), (args, msg)


def test_a_250_character_file_name_is_predicted(weights, tmp_path):
    name = "n" * 246 + ".png"  # 250 characters: the temporary output name used to pass NAME_MAX
    noise_image(tmp_path / "in" / name)
    out = tmp_path / "out"
    res = cli("predict", tmp_path / "in", "--weights", weights, "--out", out, "--workers", 0, "--device", "cpu", "-q")
    assert res.exit_code == 0, res.output
    assert (out / "masks" / name).is_file() and (out / "overlay" / ("n" * 246 + ".jpg")).is_file()


@pytest.mark.parametrize("section, key", [
    ({"model": {"backbone": {"embed_dim": 1e9}}}, "model.backbone.embed_dim"),
    ({"model": {"num_classes": 1e29}}, "model.num_classes"),
    ({"model": {"num_classes": 10**29}}, "model.num_classes"),
    ({"model": {"decode_head": {"pool_scales": [0]}}}, "model.decode_head.pool_scales.0"),
    ({"train": {"crop_size": [0, 0]}}, "train.crop_size.0"),
    ({"test": {"scales": [0.0]}}, "test.scales.0"),
])
def test_absurd_spec_sizes_are_one_line_naming_the_key(section, key):
    with pytest.raises(VitsegError) as info:
        spec_from_dict(section, source="s.yaml")
    assert str(info.value).startswith(f"s.yaml: {key}:") and "\n" not in str(info.value)


def test_absurd_sizes_in_a_spec_file(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("preset: nano\nmodel:\n  backbone: {embed_dim: 1000000000}\n")
    with pytest.raises(VitsegError, match="big.yaml: model.backbone.embed_dim: Input should be less than or equal"):
        load_spec(str(path))


@pytest.mark.parametrize("drop, message", [
    ("backbone.pos_embed", r"cannot infer the vit_adapter spec .*pos_embed"),
    ("reshape", "cannot infer the vit_adapter spec"),
])
def test_infer_spec_on_a_malformed_official_file(tmp_path, drop, message):
    state = Segmentor(tiny_spec()).state_dict()
    state = {f"backbone.{k}" if not k.startswith(("decode_head.", "auxiliary_head.")) else k: v
             for k, v in state.items()} if not any(k.startswith("backbone.") for k in state) else state
    if drop == "reshape":
        state["backbone.level_embed"] = state["backbone.level_embed"].flatten()
    else:
        del state[drop]
    path = tmp_path / "official.pth"
    torch.save({"state_dict": state, "meta": {"CLASSES": "not a list", "PALETTE": [["x"]]}}, path)
    with pytest.raises(VitsegError, match=message):
        load_model(path)


def _coco_root(tmp_path: Path, image: dict, category: dict, annotation: dict) -> Path:
    noise_image(tmp_path / "val2017" / "a.jpg", 20, 30)
    base_image = {"id": 1, "file_name": "a.jpg", "height": 20, "width": 30}
    base_ann = {"id": 1, "image_id": 1, "category_id": 1, "area": 80.0, "segmentation": [[2, 2, 12, 2, 12, 10, 2, 10]]}
    data = {"images": [{**base_image, **image}], "categories": [{"id": 1, "name": "thing", **category}],
            "annotations": [{**base_ann, **annotation}]}
    data = {k: [{kk: vv for kk, vv in item.items() if vv is not ...} for item in v] for k, v in data.items()}
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_val2017.json").write_text(json.dumps(data))
    return tmp_path


@pytest.mark.parametrize("image, category, annotation, message", [
    ({"height": "20"}, {}, {}, r"images\[0\] has no positive integer 'height'"),
    ({"width": ...}, {}, {}, r"images\[0\] has no positive integer 'width'"),
    ({"file_name": 5}, {}, {}, r"images\[0\] has no text 'file_name'"),
    ({"id": [1]}, {}, {}, r"images\[0\] has no integer or text 'id'"),
    ({}, {"id": "1"}, {}, r"categories\[0\] has no integer 'id'"),
    ({}, {}, {"category_id": None}, r"annotations\[0\] has no integer 'category_id'"),
    ({}, {}, {"segmentation": "abc"}, r"annotations\[0\] has no 'segmentation'"),
    ({}, {}, {"area": "big"}, r"annotations\[0\] has an 'area' that is not a number"),
])
def test_coco_files_with_missing_or_odd_fields(tmp_path, image, category, annotation, message):
    root = _coco_root(tmp_path, image, category, annotation)
    with pytest.raises(VitsegError, match=message):
        ds = open_dataset(root, "coco", "val")
        ds.read_label(0)


def test_coco_category_without_a_name_takes_its_id(tmp_path):
    ds = open_dataset(_coco_root(tmp_path, {}, {"name": ...}, {}), "coco", "val")
    assert ds.class_names == ["1"] and ds.read_label(0).shape == (20, 30)


@pytest.mark.parametrize("text, message", [
    ("classes: [a, b]\npalette: [[300, 0, 0], [0, 0, 0]]\n", r"palette colour \[300, 0, 0\]"),
    ("classes: [a, b]\npalette: [[1, 2], [0, 0, 0]]\n", r"palette colour \[1, 2\]"),
    ("classes: [a, [1, 2]]\n", "class names must be text"),
    ("classes: [road, no]\n", "quote names"),
    ("classes: [a, b]\nignore_index: abc\n", "ignore_index must be an integer"),
    ("classes: [a, b]\nreduce_zero_label: maybe\n", "reduce_zero_label must be true or false"),
    (b"classes: [caf\xe9]\n", "not UTF-8"),
])
def test_classes_yaml_with_bad_values_or_encoding(tmp_path, text, message):
    path = tmp_path / "classes.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(VitsegError, match=message):
        load_classes_file(path)
    (tmp_path / "classes.txt").write_bytes(b"caf\xe9\n")
    with pytest.raises(VitsegError, match="classes.txt: not UTF-8"):
        load_classes_file(tmp_path / "classes.txt")


def test_a_truncated_run_json_is_one_line(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "state.pt").write_bytes(b"")
    (run / "run.json").write_text('{"data": "/somewhere", "form')
    msg = one_line_error(cli("train", "--out", run, "--resume", "--device", "cpu"))
    assert "run.json: not readable" in msg


def test_rich_markup_in_a_path_is_printed_literally(tmp_path):
    msg = one_line_error(cli("predict", "a[/b]", "--out", tmp_path / "o"))
    assert msg.endswith("a[/b]")  # the path, brackets and all


def test_temporary_files_of_a_killed_save_are_cleaned_on_the_next_run(weights, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".last.safetensors.k1ll3d.part").write_bytes(b"half a checkpoint")
    (run / ".state.pt.k1ll3d.part").write_bytes(b"half a state")
    assert check_run_folder(run, resume=False) is False  # not refused as "not empty": nothing was saved
    assert list(run.iterdir()) == []
    target = tmp_path / "m" / "model.safetensors"
    target.parent.mkdir()
    stale, other = target.parent / ".model.safetensors.x1.part", target.parent / ".other.bin.x2.part"
    stale.write_bytes(b"partial")
    other.write_bytes(b"someone else's")
    save_model(load_model(weights), target)
    assert not stale.exists() and other.exists() and target.is_file()


def test_an_abandoned_prediction_stream_leaves_grad_mode_alone(weights, tmp_path):
    """A consumer that stops early (an error while writing, say) must not leave its thread in inference mode."""
    from vitseg_cli.engine.inference import iter_predictions

    model = load_model(weights)
    paths = [noise_image(tmp_path / f"{i}.png", seed=i) for i in range(2)]
    stream = iter_predictions(model, paths, InferenceSettings.from_spec(model.spec), torch.device("cpu"))
    assert next(stream).ok
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
    stream.close()
