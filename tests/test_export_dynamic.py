"""ONNX at any input size: one exported graph, two input sizes, onnxruntime against torch, for a UperNet and a
Mask2Former model built from the parity checkpoints; deformable attention is in the graph as gathers (no GridSample);
`predict --backend onnx` runs the graph on whole images of another size than the one it was captured with.

The torch.export capture takes minutes per model, so these run only with VITSEG_TEST_SLOW=1 (marked slow).
"""

from __future__ import annotations

import os

import pytest
import torch
from typer.testing import CliRunner

from vitseg_cli import load_model, save_model
from vitseg_cli.cli import app
from vitseg_cli.data.io import read_label
from vitseg_cli.errors import VitsegError

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.environ.get("VITSEG_TEST_SLOW") != "1", reason="set VITSEG_TEST_SLOW=1")]

from vitseg_cli.engine.export import export_onnx  # noqa: E402
from vitseg_cli.engine.onnx_backend import OnnxSegmentor  # noqa: E402

SIZES = [(128, 160), (96, 224)]  # (H, W): the first is the size the graph is captured with, the second is not


@pytest.fixture(scope="module", params=["mini_full_checkpoint.pth", "mini_m2f_checkpoint.pth"])
def exported(request, parity_dir, tmp_path_factory):
    model = load_model(parity_dir / request.param)
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "m.onnx", *SIZES[0], opset=18, dynamic=True)
    return model, path


def test_one_graph_matches_torch_at_two_sizes(exported):
    model, path = exported
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "GridSample" not in ops and "Gather" in ops
    runner = OnnxSegmentor(path)
    assert runner.dynamic
    for i, (h, w) in enumerate(SIZES):
        x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(i))
        with torch.no_grad():
            ref = model.eval()(x)
        out = torch.from_numpy(runner(x))
        assert out.shape == ref.shape == (1, model.spec.model.num_classes, h // 4, w // 4)
        assert (out - ref).abs().max().item() <= 1e-3, (h, w)
    with pytest.raises(VitsegError, match="below the 64 px"):
        runner(torch.zeros(1, 3, 32, 128))


def test_predict_with_a_dynamic_graph_in_whole_and_slide_mode(exported, tmp_path, parity_dir):
    model, path = exported
    name = "mini_full_image.png" if model.spec.model.decode_head.type == "upernet" else "mini_m2f_image.png"
    weights = save_model(model, tmp_path / "m.safetensors")
    for extra in (["--mode", "whole"], []):  # whole (any size through one graph), and the spec's own slide mode
        masks = []
        for tag, backend_args in (("onnx", ["--weights", str(path), "--backend", "onnx"]),
                                  ("torch", ["--weights", str(weights)])):
            out = tmp_path / f"{tag}{len(extra)}"
            done = CliRunner().invoke(app, ["predict", str(parity_dir / name), *backend_args, *extra, "--out",
                                            str(out), "--save", "masks", "--device", "cpu", "--quiet"])
            assert done.exit_code == 0, done.output
            [mask] = list((out / "masks").glob("*.png"))
            masks.append(read_label(mask))
        assert masks[0].shape == masks[1].shape and (masks[0] == masks[1]).mean() >= 0.999, extra
