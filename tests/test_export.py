"""ONNX export: onnxruntime reproduces the PyTorch logits of the parity checkpoint; the spec travels inside."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from vitseg_cli import load_model
from vitseg_cli.cli import app
from vitseg_cli.errors import VitsegError

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from vitseg_cli.engine.export import export_onnx  # noqa: E402
from vitseg_cli.engine.onnx_backend import OnnxSegmentor  # noqa: E402


@pytest.fixture(scope="module")
def exported(parity_dir, tmp_path_factory):
    model = load_model(parity_dir / "mini_full_checkpoint.pth")
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "mini.onnx", 256, 320)
    return model, path


def test_onnx_reproduces_official_logits_and_torch(exported, parity_dir):
    model, path = exported
    case = torch.load(parity_dir / "mini_full_case.pt", weights_only=True)
    runner = OnnxSegmentor(path)
    assert runner.num_classes == 7 and runner.spec.model.num_classes == 7
    assert runner.spec.class_names == model.spec.class_names
    logits = torch.from_numpy(runner(case["input"]))
    assert logits.shape == case["logits"].shape
    assert (logits - case["logits"]).abs().max().item() <= 1e-3
    x = torch.randn(3, 3, 256, 320, generator=torch.Generator().manual_seed(1))  # dynamic batch
    with torch.no_grad():
        assert (torch.from_numpy(runner(x)) - model(x)).abs().max().item() <= 1e-3


def test_onnx_rejects_other_sizes_unless_padding_is_allowed(exported):
    _, path = exported
    with pytest.raises(VitsegError, match=r"input 300x200 \(WxH\) does not fit the ONNX model's fixed 320x256"):
        OnnxSegmentor(path)(torch.zeros(1, 3, 200, 300))
    assert OnnxSegmentor(path, allow_pad=True)(torch.zeros(1, 3, 200, 300)).shape == (1, 7, 50, 75)


def test_export_command(parity_dir, tmp_path):
    out = tmp_path / "m.onnx"
    args = ["export", str(parity_dir / "mini_full_checkpoint.pth"), "--out", str(out), "--size", "128"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert out.exists() and "max abs logit difference" in result.output
    assert CliRunner().invoke(app, args).exit_code != 0  # exists, no --overwrite
    bad = CliRunner().invoke(app, [*args[:4], str(tmp_path / "x.onnx"), "--format", "tflite"])
    assert bad.exit_code != 0
