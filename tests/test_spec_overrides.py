"""`--spec` merged onto a checkpoint's embedded spec, `--set key.path=value` overrides (predict, eval, train), and
training that takes its classes from the dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from vitseg_cli.loading import load_model, save_model
from vitseg_cli.cli import app
from vitseg_cli.data.io import write_image
from vitseg_cli.errors import VitsegError
from vitseg_cli.model.segmentor import build_model
from vitseg_cli.spec import apply_overrides, load_spec, merge_spec, parse_override

runner = CliRunner()
NAMES = ["sky", "road", "car", "tree", "house", "person"]
PALETTE = [[10, 20, 30], [40, 50, 60], [70, 80, 90], [100, 110, 120], [130, 140, 150], [160, 170, 180]]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A nano checkpoint with its own class names and palette."""
    spec = load_spec("nano").updated(data={"classes": NAMES, "palette": PALETTE}, test={"mode": "whole"})
    path = tmp_path_factory.mktemp("ckpt") / "nano.safetensors"
    save_model(build_model(spec), path)
    return path


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "a.png"
    write_image(path, np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8))
    return path


def _error_line(res) -> str:
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in res.output, res.output
    return lines[0]


# ------------------------------------------------------------------------------------------------ the functions


def test_parse_and_apply_overrides():
    assert parse_override("test.crop_size=[512, 384]") == (["test", "crop_size"], [512, 384])
    assert parse_override("test.flip=true") == (["test", "flip"], True)
    assert parse_override("test.resize=null") == (["test", "resize"], None)
    assert parse_override("data.classes=[a, 'b=c']") == (["data", "classes"], ["a", "b=c"])
    base = {"preset": "nano", "test": {"mode": "slide"}}
    out = apply_overrides(base, ["test.mode=whole", "model.decode_head.channels=32", "test.mode=slide"])
    assert out == {"preset": "nano", "test": {"mode": "slide"}, "model": {"decode_head": {"channels": 32}}}
    assert base == {"preset": "nano", "test": {"mode": "slide"}}  # not modified in place
    for bad in ("test.mode", "=3", "test..mode=whole", ".mode=x"):
        with pytest.raises(VitsegError, match="expected key.path=value"):
            parse_override(bad)
    with pytest.raises(VitsegError, match=r"test\.mode is a value"):
        apply_overrides({"test": {"mode": "slide"}}, ["test.mode.x=1"])
    with pytest.raises(VitsegError, match="not valid YAML"):
        parse_override("test.scales=[1, 2")


def test_merge_keeps_what_the_partial_spec_does_not_name(checkpoint):
    base = load_model(checkpoint).spec
    merged = merge_spec(base, {"test": {"resize": None, "flip": True}})
    assert merged.class_names == NAMES and [list(c) for c in merged.palette] == PALETTE
    assert merged.test.flip is True and merged.test.resize is None and merged.test.mode == "whole"
    assert merged.model == base.model


def test_predict_spec_file_merges_onto_the_checkpoint(tmp_path, checkpoint, image):
    partial = tmp_path / "resize.yaml"
    partial.write_text(yaml.safe_dump({"test": {"resize": {"scale": [64, 32], "keep_ratio": True}}}))
    out = tmp_path / "out"
    res = runner.invoke(app, ["predict", str(image), "-w", str(checkpoint), "--spec", str(partial), "--out", str(out),
                              "--device", "cpu", "--workers", "0", "--quiet", "--set", "test.flip=true"])
    assert res.exit_code == 0, res.output
    record = json.loads((out / "predict.json").read_text())
    assert record["spec"]["data"]["classes"] == NAMES  # kept from the checkpoint
    assert record["spec"]["data"]["palette"] == PALETTE
    assert record["settings"]["resize"]["scale"] == [64, 32]  # from the partial YAML
    assert record["settings"]["flip"] is True  # from --set
    assert record["settings"]["mode"] == "whole"  # the checkpoint's own


def test_set_errors_name_the_key_path(tmp_path, checkpoint, image):
    def predict(*extra):
        return runner.invoke(app, ["predict", str(image), "-w", str(checkpoint), "--out", str(tmp_path / "o"),
                                   "--device", "cpu", "--workers", "0", "--quiet", *extra])

    assert "test.nope" in _error_line(predict("--set", "test.nope=1"))
    line = _error_line(predict("--set", "test.mode=sideways"))
    assert "test.mode" in line and "whole" in line
    assert "expected key.path=value" in _error_line(predict("--set", "test.mode"))
    assert not (tmp_path / "o").exists()


def test_eval_set_override(tmp_path, checkpoint):
    root = tmp_path / "data"
    rng = np.random.default_rng(1)
    for i in range(2):
        write_image(root / "images" / f"{i}.png", rng.integers(0, 255, (32, 48, 3), dtype=np.uint8))
        write_image(root / "masks" / f"{i}.png", rng.integers(0, 6, (32, 48), dtype=np.uint8))
    (root / "classes.yaml").write_text(yaml.safe_dump({"classes": NAMES}))
    res = runner.invoke(app, ["eval", str(root), "-w", str(checkpoint), "--out", str(tmp_path / "rep"), "--device",
                              "cpu", "--workers", "0", "--quiet", "--set", "test.scales=[0.5, 1.0]"])
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert meta["run"]["settings"]["scales"] == [0.5, 1.0]
    bad = runner.invoke(app, ["eval", str(root), "-w", str(checkpoint), "--out", str(tmp_path / "rep2"),
                              "--device", "cpu", "--quiet", "--set", "model.num_clases=3"])
    assert "model.num_clases" in _error_line(bad)


# ------------------------------------------------------------------------------------- train: classes from data


def _three_class_data(root: Path, names=("water", "sand", "grass")) -> Path:
    rng = np.random.default_rng(0)
    for i in range(4):
        lab = np.zeros((64, 64), np.uint8)
        lab[:, 20:40] = 1
        lab[rng.integers(0, 40):, 40:] = 2
        write_image(root / "images" / f"{i}.png", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
        write_image(root / "masks" / f"{i}.png", lab)
    (root / "classes.yaml").write_text(yaml.safe_dump({"classes": list(names),
                                                       "palette": [[1, 2, 3], [4, 5, 6], [7, 8, 9]]}))
    return root


def _train(tmp_path: Path, data: Path, out: str, *extra):
    recipe = {"scale": [64, 64], "crop_size": [64, 64], "warmup_iters": 1, "batch_size": 2, "workers": 0,
              "photometric": False}
    spec = tmp_path / "recipe.yaml"
    if not spec.exists():
        spec.write_text(yaml.safe_dump({"preset": "nano", "train": recipe}))
    return runner.invoke(app, ["train", "--quiet", "--spec", str(spec), "--data", str(data), "--out",
                               str(tmp_path / out), "--iters", "1", "--device", "cpu", *extra])


def test_train_takes_classes_from_the_dataset(tmp_path):
    data = _three_class_data(tmp_path / "d")
    res = _train(tmp_path, data, "run", "--set", "train.flip_prob=0")
    assert res.exit_code == 0, res.output
    saved = yaml.safe_load((tmp_path / "run" / "spec.yaml").read_text())
    assert saved["model"]["num_classes"] == 3  # not the preset's 6
    assert saved["train"]["flip_prob"] == 0  # --set reached the recipe
    model = load_model(tmp_path / "run" / "last.safetensors")
    assert model.num_classes == 3 and model.spec.class_names == ["water", "sand", "grass"]
    assert [list(c) for c in model.spec.palette] == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]


def test_train_spec_dataset_class_conflicts_are_one_line(tmp_path):
    data = _three_class_data(tmp_path / "d")
    line = _error_line(_train(tmp_path, data, "a", "--set", "model.num_classes=5"))
    assert "3 classes" in line and "model.num_classes is 5" in line
    line = _error_line(_train(tmp_path, data, "b", "--set", "model.num_classes=3",
                              "--set", "data.classes=[water, sand, rock]"))
    assert "data.classes" in line and "rock" in line and "grass" in line
    # the spec naming the same classes is no conflict; its palette wins
    ok = _train(tmp_path, data, "c", "--set", "data.classes=[water, sand, grass]",
                "--set", "data.palette=[[9, 9, 9], [8, 8, 8], [7, 7, 7]]", "--set", "model.num_classes=3")
    assert ok.exit_code == 0, ok.output
    assert load_model(tmp_path / "c" / "last.safetensors").spec.palette[0] == (9, 9, 9)
    assert "model.auxiliary_head.nope" in _error_line(_train(tmp_path, data, "e", "--set",
                                                             "model.auxiliary_head.nope=1"))
    assert not any((tmp_path / x).exists() for x in "abe")


# ----------------------------------------------------------------------------------------- resume from anywhere


def test_resume_from_another_directory_and_with_moved_data(tmp_path, monkeypatch):
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    elsewhere.mkdir()
    _three_class_data(work / "data")
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump({"preset": "nano", "train": {
        "scale": [64, 64], "crop_size": [64, 64], "warmup_iters": 1, "batch_size": 2, "workers": 0}}))
    monkeypatch.chdir(work)
    first = runner.invoke(app, ["train", "--quiet", "--spec", str(tmp_path / "recipe.yaml"), "--data", "data",
                                "--out", "run", "--iters", "3", "--stop-at", "1", "--device", "cpu"])
    assert first.exit_code == 0, first.output
    info = json.loads((work / "run" / "run.json").read_text())
    assert info["data"] == str((work / "data").resolve())

    monkeypatch.chdir(elsewhere)  # the relative "data" means nothing here
    again = runner.invoke(app, ["train", "--quiet", "--out", str(work / "run"), "--resume", "--stop-at", "2"])
    assert again.exit_code == 0, again.output
    assert json.loads((work / "run" / "run.json").read_text())["resumes"][0]["iteration"] == 1

    moved = tmp_path / "moved"
    (work / "data").rename(moved)
    gone = runner.invoke(app, ["train", "--quiet", "--out", str(work / "run"), "--resume"])
    assert "--data" in _error_line(gone) and "no longer exists" in gone.output
    final = runner.invoke(app, ["train", "--quiet", "--out", str(work / "run"), "--resume", "--data", str(moved)])
    assert final.exit_code == 0, final.output
    assert json.loads((work / "run" / "run.json").read_text())["data"] == str(moved.resolve())
    from vitseg_cli.engine.train_state import load_state
    assert load_state(work / "run" / "state.pt")["iteration"] == 3
