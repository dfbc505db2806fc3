"""`eval --save-predictions --label-offset 1` on ADE20K writes the benchmark's 1-based labels (0 = other), as mmseg's
format_only with reduce_zero_label does; colours and metrics do not change."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from vitseg_cli.loading import save_model
from vitseg_cli.cli import app
from vitseg_cli.data.io import read_image, read_label, write_image
from vitseg_cli.model.segmentor import build_model
from vitseg_cli.spec import load_spec

runner = CliRunner()


def test_ade20k_masks_in_the_1_based_label_space(tmp_path):
    base = tmp_path / "ADEChallengeData2016"
    rng = np.random.default_rng(0)
    for i in (1, 2):
        write_image(base / "images" / "validation" / f"ADE_val_{i:08d}.jpg",
                    rng.integers(0, 255, (32, 48, 3), dtype=np.uint8))
        write_image(base / "annotations" / "validation" / f"ADE_val_{i:08d}.png",
                    rng.integers(0, 151, (32, 48), dtype=np.uint8))
    weights = tmp_path / "ade_nano.safetensors"
    save_model(build_model(load_spec("nano").updated(model={"num_classes": 150}, test={"mode": "whole"})), weights)

    def run(out, *extra):
        res = runner.invoke(app, ["eval", str(tmp_path), "--format", "ade20k", "-w", str(weights), "--out", str(out),
                                  "--device", "cpu", "--workers", "0", "--quiet", "--save-predictions", *extra])
        assert res.exit_code == 0, res.output
        return out / "predictions"

    plain, submit = run(tmp_path / "plain"), run(tmp_path / "submit", "--label-offset", "1")
    for i in (1, 2):
        name = f"ADE_val_{i:08d}.png"
        zero_based = read_label(plain / "masks" / name)
        one_based = read_label(submit / "masks" / name)
        assert one_based.dtype == np.uint8 and 1 <= one_based.min() and one_based.max() <= 150
        np.testing.assert_array_equal(one_based.astype(int), zero_based.astype(int) + 1)
        np.testing.assert_array_equal(read_image(submit / "color" / name), read_image(plain / "color" / name))
    m0 = json.loads((tmp_path / "plain" / "metrics.json").read_text())
    m1 = json.loads((tmp_path / "submit" / "metrics.json").read_text())
    assert m1["run"]["label_offset"] == 1 and m0["mIoU"] == m1["mIoU"]

    alone = runner.invoke(app, ["eval", str(tmp_path), "--format", "ade20k", "-w", str(weights), "--out",
                                str(tmp_path / "x"), "--label-offset", "1", "--device", "cpu"])
    assert alone.exit_code == 2 and "--save-predictions" in alone.output
