"""predict and eval say which model they run (name, architecture, classes, origin); the shipped default model comes
with a one-line note that it is a synthetic-shapes demo and that `vitseg zoo` lists real models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from vitseg_cli.cli import app
from vitseg_cli.data.io import write_image
from vitseg_cli.loading import save_model
from vitseg_cli.model.segmentor import build_model
from vitseg_cli.spec import load_spec

runner = CliRunner()
DEFAULT_CLASSES = "6 classes (background, disc, square, triangle, ring, stripe)"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("model_line")
    rng = np.random.default_rng(1)
    for i in range(2):
        write_image(root / "ds" / "images" / f"{i}.png", rng.integers(0, 255, (32, 40, 3), dtype=np.uint8))
        write_image(root / "ds" / "masks" / f"{i}.png", rng.integers(0, 3, (32, 40), dtype=np.uint8))
        write_image(root / "ds6" / "images" / f"{i}.png", rng.integers(0, 255, (32, 40, 3), dtype=np.uint8))
        write_image(root / "ds6" / "masks" / f"{i}.png", rng.integers(0, 6, (32, 40), dtype=np.uint8))
    (root / "ds" / "classes.yaml").write_text(yaml.safe_dump({"classes": ["sky", "road", "tree"]}))
    ckpt = root / "mine.safetensors"
    spec = load_spec("nano").updated(model={"num_classes": 3}, data={"classes": ["sky", "road", "tree"]},
                                     test={"mode": "whole"})
    save_model(build_model(spec), ckpt)
    return root / "ds", ckpt


def _model_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("model: ") or "synthetic-shapes demo" in ln]


@pytest.mark.parametrize("command", ["predict", "eval"])
def test_the_default_model_is_named_and_called_a_demo(tmp_path, data, command):
    ds, _ = data
    ds = ds.parent / "ds6"
    where = [str(ds / "images")] if command == "predict" else ["--data", str(ds)]
    args = [command, *where, "--out", str(tmp_path / "o"), "--device", "cpu", "--workers", "0"]
    res = runner.invoke(app, args)
    lines = _model_lines(res.stderr)
    assert len(lines) == 2, res.output
    assert lines[0] == ("model: default, ViT-Adapter nano + UperNet, " + DEFAULT_CLASSES +
                        "; from the shipped default model (vitseg_cli/weights/default.safetensors)")
    assert lines[1].startswith("note: the default model is a synthetic-shapes demo (6 toy classes)")
    assert "`vitseg zoo`" in lines[1]
    assert not any(ln.startswith("model: ") for ln in res.stdout.splitlines())  # stdout keeps the results


def test_a_model_file_is_named_with_its_classes_and_no_demo_note(tmp_path, data):
    ds, ckpt = data
    res = runner.invoke(app, ["predict", str(ds / "images"), "-w", str(ckpt), "--spec", "nano", "--out",
                              str(tmp_path / "o"), "--device", "cpu", "--workers", "0"])
    assert res.exit_code == 0, res.output
    lines = _model_lines(res.stderr)
    assert lines == [f"model: mine.safetensors, ViT-Adapter nano + UperNet, 3 classes (sky, road, tree); from file "
                     f"{ckpt}, spec: preset nano"], res.stderr
    quiet = runner.invoke(app, ["predict", str(ds / "images"), "-w", str(ckpt), "--out", str(tmp_path / "q"),
                                "--device", "cpu", "--workers", "0", "--quiet"])
    assert quiet.exit_code == 0 and _model_lines(quiet.stderr) == []


def test_a_zoo_name_is_named_as_coming_from_the_zoo():
    from vitseg_cli.engine.model_info import model_origin

    name = "upernet_deit_adapter_tiny_512_160k_ade20k"
    assert model_origin(name) == (name, "the zoo (vitseg zoo)")
    assert model_origin("x.onnx", "my.yaml") == ("x.onnx", "ONNX file x.onnx, spec: file my.yaml")
