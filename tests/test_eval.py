"""`vitseg eval` end to end: --pred/--gt against hand-computed numbers, the reports, errors, torchrun with 2 ranks,
and the model path on a tiny model (its saved predictions must score the same through --pred/--gt)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from vitseg_cli.cli import app
from vitseg_cli.data.io import read_image, write_image
from vitseg_cli.errors import VitsegError

runner = CliRunner()


def _write(path: Path, values) -> None:
    write_image(path, np.asarray(values, np.uint8))


@pytest.fixture
def pred_gt(tmp_path):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    _write(gt / "a.png", [[0, 0, 1], [1, 255, 2]])
    _write(pred / "a.png", [[0, 1, 1], [1, 0, 1]])  # the pixel under 255 must not count
    _write(gt / "sub" / "b.png", [[2, 2], [0, 1]])
    _write(pred / "sub" / "b.png", [[2, 0], [0, 1]])
    (tmp_path / "classes.txt").write_text("road\ncar\nsky\n")
    return pred, gt, tmp_path / "classes.txt"


# Hand computation for the fixture: conf[label][pred] = [[2,1,0],[0,3,0],[1,1,1]]
# I=[2,3,1] L=[3,3,3] P=[3,5,1] U=[4,5,3]
EXPECTED = {
    "aAcc": 6 / 9,
    "mIoU": (2 / 4 + 3 / 5 + 1 / 3) / 3,
    "mAcc": (2 / 3 + 1 + 1 / 3) / 3,
    "mDice": (4 / 6 + 6 / 8 + 2 / 4) / 3,
    "mPrecision": (2 / 3 + 3 / 5 + 1) / 3,
    "mRecall": (2 / 3 + 1 + 1 / 3) / 3,
    "fwIoU": (2 / 4 + 3 / 5 + 1 / 3) / 3,
}


def _check_expected(metrics: dict) -> None:
    for key, value in EXPECTED.items():
        assert metrics[key] == pytest.approx(value), key
    assert metrics["mFscore"] == pytest.approx(metrics["mDice"])  # no P=R=0 class here, so F1 = Dice
    assert [r["class"] for r in metrics["per_class"]] == ["road", "car", "sky"]
    assert [r["IoU"] for r in metrics["per_class"]] == pytest.approx([0.5, 0.6, 1 / 3])
    assert [r["label_pixels"] for r in metrics["per_class"]] == [3, 3, 3]
    assert [r["pred_pixels"] for r in metrics["per_class"]] == [3, 5, 1]


def test_pred_gt_cli_matches_hand_computation(pred_gt, tmp_path):
    pred, gt, classes = pred_gt
    out = tmp_path / "report"
    res = runner.invoke(app, ["eval", "--pred", str(pred), "--gt", str(gt), "--num-classes", "3",
                              "--classes", str(classes), "--out", str(out)])
    assert res.exit_code == 0, res.output
    metrics = json.loads((out / "metrics.json").read_text())
    _check_expected(metrics)
    assert metrics["num_images"] == 2
    assert "47.78" in res.output  # the terminal table is in percent with 2 decimals (mIoU)
    with open(out / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["key"] for r in rows] == ["a", "sub/b"]
    assert float(rows[0]["pixel_acc"]) == pytest.approx(3 / 5) and float(rows[0]["mIoU"]) == pytest.approx(1 / 3)
    assert float(rows[1]["pixel_acc"]) == pytest.approx(3 / 4) and float(rows[1]["mIoU"]) == pytest.approx(2 / 3)
    conf = list(csv.reader(open(out / "confusion.csv")))
    assert conf[0] == ["label \\ pred", "road", "car", "sky"]
    assert [row[1:] for row in conf[1:]] == [["2", "1", "0"], ["0", "3", "0"], ["1", "1", "1"]]
    with open(out / "per_class.csv") as f:
        pc = list(csv.DictReader(f))
    assert pc[1]["class"] == "car" and float(pc[1]["IoU"]) == pytest.approx(0.6)
    png = read_image(out / "confusion.png")
    assert png.shape[0] > 100 and png.shape[1] > 100
    assert "| road |" in (out / "report.md").read_text()
    assert not list(out.glob(".*.part"))


def test_nan_is_null_in_json_and_empty_in_csv(tmp_path):
    _write(tmp_path / "gt" / "x.png", [[0, 0], [1, 1]])
    _write(tmp_path / "pred" / "x.png", [[0, 2], [1, 1]])  # class 2 predicted, never labelled; class 3 nowhere
    out = tmp_path / "r"
    res = runner.invoke(app, ["eval", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"),
                              "--num-classes", "4", "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["per_class"][2]["IoU"] == 0.0 and m["per_class"][2]["Acc"] is None
    assert m["per_class"][3]["IoU"] is None
    assert m["mIoU"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    pc = list(csv.DictReader(open(out / "per_class.csv")))
    assert pc[3]["IoU"] == "" and pc[2]["IoU"] == "0.000000"


def test_reduce_zero_label(tmp_path):
    _write(tmp_path / "gt" / "x.png", [[0, 1, 2, 2]])  # -> [ignore, 0, 1, 1]
    _write(tmp_path / "pred" / "x.png", [[1, 0, 1, 0]])
    out = tmp_path / "r"
    res = runner.invoke(app, ["eval", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"),
                              "--num-classes", "2", "--reduce-zero-label", "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())
    # pairs (0,0) (1,1) (1,0): I=[1,1] L=[1,2] P=[2,1] U=[2,2]
    assert m["aAcc"] == pytest.approx(2 / 3)
    assert m["mIoU"] == pytest.approx(0.5)
    assert m["mAcc"] == pytest.approx((1 + 0.5) / 2)


@pytest.mark.parametrize("case, message", [
    ("missing", "b.png: no prediction for it"),
    ("bad_value", "a.png: label value 9 outside [0, 2]"),
    ("size", "prediction is 2x1 (WxH) but its label"),
])
def test_pred_gt_errors_name_the_file_and_write_nothing(pred_gt, tmp_path, case, message):
    pred, gt, _ = pred_gt
    if case == "missing":
        (pred / "sub" / "b.png").unlink()
    elif case == "bad_value":
        _write(gt / "a.png", [[0, 9, 1], [1, 255, 2]])
    else:
        _write(pred / "a.png", [[0, 1]])
    out = tmp_path / "report"
    res = runner.invoke(app, ["eval", "--pred", str(pred), "--gt", str(gt), "--num-classes", "3", "--out", str(out)])
    assert res.exit_code == 2
    assert message in " ".join(res.output.split())
    assert not out.exists()


def test_usage_errors(tmp_path):
    res = runner.invoke(app, ["eval", "--pred", str(tmp_path)])
    assert res.exit_code == 2 and "--pred and --gt go together" in res.output
    res = runner.invoke(app, ["eval", str(tmp_path / "nothing"), "--format", "folder"])
    assert res.exit_code == 2 and "nothing: dataset folder not found" in res.output
    res = runner.invoke(app, ["eval", str(tmp_path), "--format", "kitti"])
    assert res.exit_code == 2 and "--format 'kitti'" in res.output


def test_torchrun_two_ranks_equal_one_process(pred_gt, tmp_path):
    pred, gt, classes = pred_gt
    _write(gt / "c.png", [[1, 1, 0]])  # three images: uneven shards
    _write(pred / "c.png", [[1, 0, 0]])
    args = ["-m", "vitseg_cli", "eval", "--pred", str(pred), "--gt", str(gt), "--num-classes", "3", "--classes",
            str(classes), "-q"]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    one = runner.invoke(app, [*args[2:], "--out", str(tmp_path / "one")])  # one process, in-process
    assert one.exit_code == 0, one.output
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          str(29500 + os.getpid() % 1000), *args, "--out", str(tmp_path / "two")],
                         env=env, capture_output=True, text=True, timeout=180)
    assert two.returncode == 0, two.stderr[-3000:]
    m1 = json.loads((tmp_path / "one" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert m2["run"]["world_size"] == 2 and m1["run"]["world_size"] == 1
    for key in ("aAcc", "mIoU", "mAcc", "mDice", "fwIoU", "per_class", "num_images", "total_pixels"):
        assert m1[key] == m2[key], key
    assert m1["num_images"] == 3
    rows1 = (tmp_path / "one" / "per_image.csv").read_text()
    assert rows1 == (tmp_path / "two" / "per_image.csv").read_text()


# --------------------------------------------------------------------------------------------------- model path


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    import torch

    from vitseg_cli.loading import save_model
    from vitseg_cli.data.synth import SYNTH_CLASSES, SYNTH_PALETTE
    from vitseg_cli.model.segmentor import Segmentor
    from vitseg_cli.spec import load_spec

    torch.manual_seed(0)
    spec = load_spec("nano").updated(
        model={"backbone": {"embed_dim": 48, "conv_inplane": 8}, "decode_head": {"channels": 16},
               "auxiliary_head": None},
        data={"classes": SYNTH_CLASSES, "palette": [list(c) for c in SYNTH_PALETTE]},
        test={"resize": None, "mode": "whole"})
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_model(Segmentor(spec).eval(), path)
    return path


def test_model_eval_on_synthetic_folder(tiny_model, tmp_path):
    from vitseg_cli.data.synth import make_synthetic

    data = make_synthetic(tmp_path / "data", 3, seed=0, size=(32, 32))
    out = tmp_path / "report"
    res = runner.invoke(app, ["eval", str(data), "--format", "folder", "--weights", str(tiny_model), "--out",
                              str(out), "--workers", "0", "--device", "cpu", "--save-predictions", "-q"])
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["num_images"] == 3 and m["total_pixels"] == 3 * 32 * 32
    assert [r["class"] for r in m["per_class"]][:2] == ["background", "disc"]
    assert m["run"]["format"] == "folder" and m["run"]["settings"]["mode"] == "whole"
    masks = sorted((out / "predictions" / "masks").glob("*.png"))
    assert [p.name for p in masks] == ["00000.png", "00001.png", "00002.png"]
    assert (out / "predictions" / "overlay" / "00000.jpg").is_file()
    # scoring the saved predictions against the labels gives the very same numbers
    res = runner.invoke(app, ["eval", "--pred", str(out / "predictions" / "masks"), "--gt", str(data / "masks"),
                              "--num-classes", "6", "--out", str(tmp_path / "again"), "-q"])
    assert res.exit_code == 0, res.output
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    for key in ("aAcc", "mIoU", "mAcc", "fwIoU"):
        assert again[key] == pytest.approx(m[key]), key


def test_model_eval_class_count_mismatch(tiny_model, tmp_path):
    root = tmp_path / "d"
    write_image(root / "images" / "a.png", np.zeros((8, 8, 3), np.uint8))
    _write(root / "masks" / "a.png", np.zeros((8, 8)))
    (root / "classes.txt").write_text("a\nb\n")
    res = runner.invoke(app, ["eval", str(root), "--weights", str(tiny_model), "--workers", "0", "--device", "cpu",
                              "--out", str(tmp_path / "r")])
    assert res.exit_code == 2
    assert "2 classes but the model predicts 6" in " ".join(res.output.split())
    assert not (tmp_path / "r").exists()


def test_torchrun_error_on_one_rank_stops_all_without_hanging(pred_gt, tmp_path):
    pred, gt, _ = pred_gt
    _write(gt / "sub" / "b.png", [[2, 9], [0, 1]])  # second sample: rank 1's shard
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          str(30500 + os.getpid() % 1000), "-m", "vitseg_cli", "eval", "--pred", str(pred), "--gt",
                          str(gt), "--num-classes", "3", "-q", "--out", str(tmp_path / "out")],
                         env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode != 0
    assert run.stderr.count("b.png: label value 9 outside [0, 2]") == 1  # one line for the job (rank 0 says it)
    assert not (tmp_path / "out").exists()


def test_half_on_a_device_without_half_precision_fails_before_writing(tiny_model, tmp_path, monkeypatch):
    from vitseg_cli.data.synth import make_synthetic
    from vitseg_cli.engine import inference

    def no_half(device):
        raise VitsegError(f"--half: no native half precision on {device.type} here")

    monkeypatch.setattr(inference, "half_dtype", no_half)
    data = make_synthetic(tmp_path / "data", 1, seed=0, size=(32, 32))
    res = runner.invoke(app, ["eval", str(data), "--format", "folder", "--weights", str(tiny_model), "--out",
                              str(tmp_path / "report"), "--device", "cpu", "--half", "-q"])
    assert res.exit_code == 2 and "--half: no native half precision on cpu" in res.output
    assert not (tmp_path / "report").exists()
