"""ONNX at any input size: one exported graph, two input sizes, onnxruntime against torch, for a UperNet and a
Mask2Former model built from the parity checkpoints; deformable attention is in the graph as gathers (no GridSample);
`predict --backend onnx` runs the graph in whole mode on images of another size than the one it was traced with, and
in slide mode.

The Mask2Former parity model has a BEiT-Adapter backbone, whose relative position bias takes one size (128 x 128):
its graph takes any size up to that (padded inside the graph, as the torch model pads), and refuses larger inputs.
"""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from vitseg_cli import load_model, save_model
from vitseg_cli.cli import app
from vitseg_cli.data.io import read_label
from vitseg_cli.errors import VitsegError

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from vitseg_cli.engine.export import export_onnx  # noqa: E402
from vitseg_cli.engine.onnx_backend import OnnxSegmentor  # noqa: E402

# (H, W): the first pair of each model is the size the graph is traced with, the second is not (nor a multiple of 32)
CASES = {"mini_full_checkpoint.pth": [(128, 160), (100, 214)],
         "mini_m2f_checkpoint.pth": [(128, 128), (90, 115)]}


@pytest.fixture(scope="module", params=sorted(CASES))
def exported(request, parity_dir, tmp_path_factory):
    """The model exported by `vitseg export --dynamic` (which checks the graph at a size it was not traced with),
    the torch model, the runner and the sizes to compare at."""
    path = tmp_path_factory.mktemp("onnx") / "m.onnx"
    (h, w), _ = CASES[request.param]
    done = CliRunner().invoke(app, ["export", str(parity_dir / request.param), "--out", str(path), "--dynamic",
                                    "--size", f"{w}x{h}"])
    assert done.exit_code == 0, done.output
    assert "not traced with" in done.output
    assert float(done.output.split("max abs logit difference")[1].split()[0]) <= 1e-3
    model = load_model(parity_dir / request.param)
    return model, path, OnnxSegmentor(path), CASES[request.param]


def test_one_graph_matches_torch_at_two_sizes(exported):
    model, path, runner, sizes = exported
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "GridSample" not in ops and "Gather" in ops
    assert runner.dynamic
    for i, (h, w) in enumerate(sizes):
        x = torch.randn(1 + i, 3, h, w, generator=torch.Generator().manual_seed(i))  # batch 1, then 2
        with torch.no_grad():
            ref = model.eval()(x)
        out = torch.from_numpy(runner(x))
        assert out.shape == ref.shape == (1 + i, model.spec.model.num_classes, -(-h // 4), -(-w // 4))
        assert (out - ref).abs().max().item() <= 1e-3, (h, w)
    with pytest.raises(VitsegError, match="below the 64 px"):
        runner(torch.zeros(1, 3, 32, 128))


def test_a_one_size_backbone_refuses_larger_inputs(exported):
    model, _, runner, _ = exported
    fixed = model.backbone.fixed_input_size
    if fixed is None:
        assert runner.max_height is None and runner.max_width is None
        return
    assert (runner.max_height, runner.max_width) == fixed
    with pytest.raises(VitsegError, match="larger than the 128x128"):
        runner(torch.zeros(1, 3, fixed[0], fixed[1] + 32))


def test_predict_with_a_dynamic_graph_in_whole_and_slide_mode(exported, tmp_path, parity_dir):
    model, path, _, _ = exported
    upernet = model.spec.model.decode_head.type == "upernet"
    name = "mini_full_image.png" if upernet else "mini_m2f_image.png"
    weights = save_model(model, tmp_path / "m.safetensors")
    # whole mode (any size through one graph) with the backbone that takes any size; the other in its spec's own
    # slide mode (windows of 128 x 128, smaller at the edges)
    for extra in ((["--mode", "whole"],) if upernet else ([],)):
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
