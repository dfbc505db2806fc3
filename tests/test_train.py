"""`vitseg train` in one process on CPU: it learns, it resumes exactly, it refuses bad input with one line.

Everything is tiny (nano model, 64 px crops, a handful of images, a few dozen iterations) to keep CI fast.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from vitseg_cli.loading import load_model
from vitseg_cli.cli import app
from vitseg_cli.data.io import write_image
from vitseg_cli.data.synth import make_synthetic
from vitseg_cli.engine.train_state import load_state, read_log

runner = CliRunner()

# bright, distinct class colours: a dataset a nano model learns in a few dozen iterations
EASY_COLOURS = [(90, 90, 90), (220, 40, 40), (40, 200, 40), (40, 40, 220), (230, 230, 40), (200, 40, 200)]


def make_easy(root: Path, n: int = 8, size: int = 64, seed: int = 0) -> Path:
    """Rectangles whose colour gives the class, with noise; folder format with classes.yaml."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        lab = np.zeros((size, size), np.uint8)
        for c in rng.permutation(np.arange(1, 6))[:3]:
            h, w = rng.integers(size // 4, size // 2, 2)
            y, x = rng.integers(0, size - h), rng.integers(0, size - w)
            lab[y:y + h, x:x + w] = c
        img = np.array(EASY_COLOURS, np.uint8)[lab].astype(int) + rng.integers(-20, 20, (size, size, 3))
        write_image(root / "images" / f"{i:03d}.png", np.clip(img, 0, 255).astype(np.uint8))
        write_image(root / "masks" / f"{i:03d}.png", lab)
    (root / "classes.yaml").write_text(yaml.safe_dump({"classes": ["bg", "a", "b", "c", "d", "e"]}))
    return root


def write_spec(path: Path, **train) -> Path:
    recipe = {"scale": [64, 64], "crop_size": [64, 64], "warmup_iters": 2, "batch_size": 2, "workers": 0,
              "photometric": False, **train}
    path.write_text(yaml.safe_dump({"preset": "nano", "train": recipe, "test": {"crop_size": [64, 64]}}))
    return path


def vitseg(*args) -> "CliRunner.invoke":
    return runner.invoke(app, ["train", "--quiet", *map(str, args)])


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("synth") / "data", 6, 0, size=(64, 64))


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory) -> Path:
    return write_spec(tmp_path_factory.mktemp("spec") / "spec.yaml")


def test_loss_falls_and_miou_rises(tmp_path):
    data = make_easy(tmp_path / "easy")
    spec = write_spec(tmp_path / "spec.yaml", batch_size=4, warmup_iters=5)
    out = tmp_path / "run"
    res = vitseg("--spec", spec, "--data", data, "--format", "folder", "--out", out, "--iters", 30,
                 "--log-every", 5, "--val-data", data, "--eval-every", 30, "--lr", "1e-3", "--seed", 0)
    assert res.exit_code == 0, res.output
    rows = read_log(out / "log.csv")
    assert [int(r["iter"]) for r in rows] == [5, 10, 15, 20, 25, 30]
    losses = [float(r["loss"]) for r in rows]
    assert losses[-1] < 0.85 * losses[0], losses
    assert all(float(r["loss_aux"]) < float(r["loss"]) for r in rows)
    miou = float(rows[-1]["mIoU"])
    # chance: all background gives mIoU ~ 0.12 on this data
    assert miou > 0.25, rows[-1]
    assert float(rows[0]["lr"]) < float(rows[1]["lr"]) > float(rows[-1]["lr"])  # warmup, then poly decay
    for name in ("spec.yaml", "run.json", "log.csv", "last.safetensors", "best.safetensors", "state.pt"):
        assert (out / name).is_file(), name
    info = json.loads((out / "run.json").read_text())
    assert info["world_size"] == 1 and info["seed"] == 0 and info["device"] == "cpu"
    assert "torch" in info["versions"]
    assert info["command"].split()[1:] == sys.argv[1:]  # the process's own command line
    model = load_model(out / "best.safetensors")  # loadable by predict/eval as is
    assert model.spec.class_names == ["bg", "a", "b", "c", "d", "e"]
    assert load_state(out / "state.pt")["iteration"] == 30
    assert "best mIoU" in res.output


def test_stop_and_resume_equals_straight_run(tmp_path, synth, spec_file):
    common = ["--spec", spec_file, "--data", synth, "--format", "folder", "--iters", 6, "--log-every", 1,
              "--seed", 3]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert vitseg(*common, "--out", straight).exit_code == 0
    first = vitseg(*common, "--out", resumed, "--stop-at", 3)
    assert first.exit_code == 0, first.output
    assert load_state(resumed / "state.pt")["iteration"] == 3
    again = vitseg("--out", resumed, "--resume")  # spec, data and format come from the run folder
    assert again.exit_code == 0, again.output
    assert "resuming" in again.output and "iteration 3/6" in again.output
    a, b = load_file(straight / "last.safetensors"), load_file(resumed / "last.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    la, lb = read_log(straight / "log.csv"), read_log(resumed / "log.csv")
    assert [r["iter"] for r in lb] == [str(i) for i in range(1, 7)]
    assert [r["lr"] for r in la] == [r["lr"] for r in lb]
    np.testing.assert_allclose([float(r["loss"]) for r in la], [float(r["loss"]) for r in lb], rtol=1e-5)
    sa, sb = load_state(straight / "state.pt"), load_state(resumed / "state.pt")
    assert sa["scheduler"] == sb["scheduler"] and sb["iteration"] == 6
    assert torch.equal(sa["rng"][0]["torch"], sb["rng"][0]["torch"])
    info = json.loads((resumed / "run.json").read_text())
    assert [r["iteration"] for r in info["resumes"]] == [3]

    # a finished run resumed again has nothing to do; recipe changes on resume are refused
    done = vitseg("--out", resumed, "--resume")
    assert done.exit_code == 0 and "already trained" in done.output
    changed = vitseg("--out", resumed, "--resume", "--lr", "0.5")
    assert changed.exit_code == 2 and "train.lr" in changed.output
    # a used folder without --resume
    used = vitseg(*common, "--out", resumed)
    assert used.exit_code == 2 and "--resume" in used.output and "not empty" in used.output


def test_init_from_other_class_count_and_pretrained(tmp_path, synth, spec_file):
    base = tmp_path / "base"
    assert vitseg("--spec", spec_file, "--data", synth, "--out", base, "--iters", 1).exit_code == 0
    spec8 = yaml.safe_load(spec_file.read_text())
    spec8["model"] = {"num_classes": 8}
    (tmp_path / "spec8.yaml").write_text(yaml.safe_dump(spec8))
    unnamed = tmp_path / "unnamed"  # no classes file: the spec's 8 classes stand (a named 6-class set would conflict)
    shutil.copytree(synth, unnamed)
    (unnamed / "classes.yaml").unlink()
    res = vitseg("--spec", tmp_path / "spec8.yaml", "--data", unnamed, "--out", tmp_path / "eight", "--iters", 1,
                 "--init-from", base / "last.safetensors")
    assert res.exit_code == 0, res.output
    assert "predicts 6 classes, this model 8" in res.output and "conv_seg" in res.output
    before = load_file(base / "last.safetensors")
    after = load_file(tmp_path / "eight" / "last.safetensors")
    assert after["decode_head.conv_seg.weight"].shape[0] == 8
    # one step at warmup lr moves weights by about lr: the backbone clearly came from `base`
    assert (after["backbone.spm.stem.0.weight"] - before["backbone.spm.stem.0.weight"]).abs().max() < 1e-3

    from vitseg_cli.model.segmentor import build_model

    vit = build_model("nano").backbone.state_dict()
    timm = {k: v for k, v in vit.items() if k == "pos_embed" or k.startswith(("patch_embed.", "blocks."))}
    timm.update({"cls_token": torch.zeros(1, 1, 96), "norm.weight": torch.ones(96), "head.weight": torch.zeros(5, 96)})
    torch.save({"model": timm}, tmp_path / "deit.pth")
    res = vitseg("--spec", spec_file, "--data", synth, "--out", tmp_path / "pre", "--iters", 1,
                 "--pretrained", tmp_path / "deit.pth")
    assert res.exit_code == 0, res.output
    assert "ViT initialised from deit.pth" in res.output
    both = vitseg("--spec", spec_file, "--data", synth, "--out", tmp_path / "both", "--iters", 1,
                  "--pretrained", tmp_path / "deit.pth", "--init-from", base / "last.safetensors")
    assert both.exit_code == 2 and "not both" in both.output


def _one_line_error(res) -> str:
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.output
    assert "Traceback" not in res.output
    return lines[0]


def test_bad_input_is_one_line(tmp_path, synth, spec_file):
    # more classes in the data than the model predicts
    spec3 = yaml.safe_load(spec_file.read_text())
    spec3["model"] = {"num_classes": 3}
    (tmp_path / "spec3.yaml").write_text(yaml.safe_dump(spec3))
    msg = _one_line_error(vitseg("--spec", tmp_path / "spec3.yaml", "--data", synth, "--out", tmp_path / "a"))
    assert "6 classes" in msg and "num_classes is 3" in msg
    # a label value outside the classes, named with its file
    bad = tmp_path / "bad"
    make_synthetic(bad, 3, 1, size=(32, 32))
    mask = sorted((bad / "masks").glob("*.png"))[1]
    write_image(mask, np.full((32, 32), 9, np.uint8))
    msg = _one_line_error(vitseg("--spec", spec_file, "--data", bad, "--out", tmp_path / "b"))
    assert mask.name in msg and "9" in msg
    # empty dataset
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    (empty / "masks").mkdir()
    msg = _one_line_error(vitseg("--spec", spec_file, "--data", empty, "--out", tmp_path / "c"))
    assert "no images" in msg or "no training samples" in msg
    # a batch that does not split over accumulation steps
    msg = _one_line_error(vitseg("--spec", spec_file, "--data", synth, "--out", tmp_path / "d", "--batch-size", 3,
                                 "--accum", 2))
    assert "not divisible" in msg
    # no spec for a new run; an unknown preset
    assert "--spec is required" in _one_line_error(vitseg("--data", synth, "--out", tmp_path / "e"))
    assert "not found" in _one_line_error(vitseg("--spec", "huge", "--data", synth, "--out", tmp_path / "f"))
    # nothing was written for any of these
    assert not any((tmp_path / x).exists() for x in "abcdef")
