"""`vitseg train` with BEiT-Adapter + Mask2Former (the `nano_mask2former` family, shrunk to 64 px for CI): the loss
falls and validation mIoU rises far above chance on easy synthetic data, stop + resume equals a straight run, and
fine-tuning an official checkpoint onto other classes re-initialises only the class embedding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import PARITY
from test_train import vitseg
from vitseg_cli.loading import load_model
from vitseg_cli.data.io import read_label
from vitseg_cli.data.synth import make_synthetic
from vitseg_cli.engine.train_state import read_log


def write_m2f_spec(path: Path, img: int = 64, **train) -> Path:
    recipe = {"scale": [img, img], "crop_size": [img, img], "warmup_iters": 2, "batch_size": 2, "workers": 0,
              "photometric": False, **train}
    path.write_text(yaml.safe_dump({
        "preset": "nano_mask2former",
        "model": {"backbone": {"img_size": img}, "decode_head": {"loss": {"num_points": 256}}},
        "train": recipe, "test": {"crop_size": [img, img], "stride": [img * 2 // 3] * 2}}))
    return path


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("synth") / "data", 6, 0, size=(64, 64))


def test_mask2former_learns_easy_synthetic_data(tmp_path):
    # `vitseg data synth --easy` data (colour gives the class) shrunk to 64 px: within 40 steps of batch 4 the loss
    # falls and validation mIoU is far above chance (the run this is cut down from reached 0.50 at step 40)
    data = make_synthetic(tmp_path / "train", 32, 1, size=(64, 64), easy=True)
    val = make_synthetic(tmp_path / "val", 8, 2, size=(64, 64), easy=True)
    spec = write_m2f_spec(tmp_path / "spec.yaml", batch_size=4, warmup_iters=5)
    out = tmp_path / "run"
    res = vitseg("--spec", spec, "--data", data, "--format", "folder", "--val-data", val, "--out", out,
                 "--iters", 40, "--log-every", 10, "--eval-every", 40, "--lr", "1e-3", "--seed", 0)
    assert res.exit_code == 0, res.output
    rows = read_log(out / "log.csv")
    assert [int(r["iter"]) for r in rows] == [10, 20, 30, 40]
    losses = [float(r["loss"]) for r in rows]
    assert losses[-1] < 0.8 * losses[0], losses
    for r in rows:  # the total is the sum of the head's terms, each logged
        terms = float(r["loss_cls"]) + float(r["loss_mask"]) + float(r["loss_dice"])
        assert terms == pytest.approx(float(r["loss"]), rel=1e-4)
    assert float(rows[-1]["loss_cls"]) < 0.7 * float(rows[0]["loss_cls"])  # the class head learns, not only masks
    # chance: every pixel called background scores IoU = background share on that class, 0 on the other five
    background = np.mean([np.mean(read_label(p) == 0) for p in sorted((val / "masks").glob("*.png"))])
    assert float(rows[-1]["mIoU"]) > 2.5 * background / 6, (rows[-1], background)
    model = load_model(out / "last.safetensors")
    assert model.spec.model.decode_head.type == "mask2former"


def test_mask2former_stop_and_resume_equals_straight_run(tmp_path, synth):
    spec = write_m2f_spec(tmp_path / "spec.yaml")
    common = ["--spec", spec, "--data", synth, "--format", "folder", "--iters", 4, "--log-every", 1, "--seed", 3]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert vitseg(*common, "--out", straight).exit_code == 0
    assert vitseg(*common, "--out", resumed, "--stop-at", 2).exit_code == 0
    again = vitseg("--out", resumed, "--resume")
    assert again.exit_code == 0, again.output
    a, b = load_file(straight / "last.safetensors"), load_file(resumed / "last.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    la, lb = read_log(straight / "log.csv"), read_log(resumed / "log.csv")
    np.testing.assert_allclose([float(r["loss"]) for r in la], [float(r["loss"]) for r in lb], rtol=1e-5)


def test_init_from_an_official_mask2former_onto_other_classes(tmp_path):
    official = PARITY / "mini_m2f_checkpoint.pth"  # BEiT-Adapter + Mask2Former, 7 classes, img_size 128
    spec = load_model(official).spec.to_dict()
    spec["model"]["num_classes"] = 6
    spec["data"].update(classes=None, palette=None)
    spec["train"].update(scale=[128, 128], crop_size=[128, 128], warmup_iters=1, batch_size=2, workers=0,
                         photometric=False)
    spec["model"]["decode_head"]["loss"]["num_points"] = 256
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    data = make_synthetic(tmp_path / "data", 4, 1, size=(128, 128))
    out = tmp_path / "run"
    res = vitseg("--spec", tmp_path / "spec.yaml", "--data", data, "--out", out, "--iters", 1,
                 "--init-from", official)
    assert res.exit_code == 0, res.output
    assert "predicts 7 classes, this model 6" in res.output and "decode_head.cls_embed" in res.output
    state = torch.load(official, weights_only=True)["state_dict"]
    after = load_file(out / "last.safetensors")
    assert after["decode_head.cls_embed.weight"].shape == (7, 64 // 2)  # 6 classes + no-object, feat 32
    # one step at warmup lr moves weights by about lr: everything else came from the official file
    for key in ("backbone.blocks.0.attn.relative_position_bias_table", "decode_head.query_feat.weight",
                "decode_head.pixel_decoder.mask_feature.weight"):
        assert (after[key] - state[key]).abs().max() < 1e-3, key
