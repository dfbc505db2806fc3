"""The ONNX backend as a run picks it: the .onnx suffix chooses it, and predict/eval with an exported model give the
torch model's masks and metrics."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from vitseg_cli import load_model  # noqa: E402
from vitseg_cli.cli import app  # noqa: E402
from vitseg_cli.data.io import read_label  # noqa: E402
from vitseg_cli.data.synth import make_synthetic  # noqa: E402
from vitseg_cli.engine.common import default_weights_path  # noqa: E402
from vitseg_cli.engine.export import export_onnx  # noqa: E402
from vitseg_cli.engine.onnx_backend import choose_backend  # noqa: E402
from vitseg_cli.errors import VitsegError  # noqa: E402

runner = CliRunner()
SIZE = 64  # the synthetic images' side and the export size


@pytest.fixture(scope="module")
def default_onnx(tmp_path_factory):
    """The shipped default model exported for SIZE x SIZE inputs."""
    model = load_model(default_weights_path())
    return export_onnx(model, tmp_path_factory.mktemp("onnx") / "default.onnx", SIZE, SIZE)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp("data") / "synth", 3, seed=3, size=(SIZE, SIZE))


def test_choose_backend_rule():
    assert choose_backend(None, "m.onnx") == "onnx" and choose_backend(None, "M.ONNX") == "onnx"
    assert choose_backend(None, "m.safetensors") == "torch" and choose_backend(None, None) == "torch"
    assert choose_backend("onnx", "m.onnx") == "onnx" and choose_backend("torch", "m.pth") == "torch"
    with pytest.raises(VitsegError, match="m.onnx: an ONNX model runs with --backend onnx"):
        choose_backend("torch", "m.onnx")
    with pytest.raises(VitsegError, match="--backend tflite: must be one of torch, onnx"):
        choose_backend("tflite", "m.onnx")


def test_predict_picks_onnx_from_the_suffix(default_onnx, synth, tmp_path):
    args = [str(synth / "images"), "--workers", "0", "--save", "masks", "-q"]
    torch_run = runner.invoke(app, ["predict", *args, "--out", str(tmp_path / "t")])
    onnx_run = runner.invoke(app, ["predict", *args, "--weights", str(default_onnx), "--out", str(tmp_path / "o")])
    assert torch_run.exit_code == 0, torch_run.output
    assert onnx_run.exit_code == 0, onnx_run.output
    assert json.loads((tmp_path / "o" / "predict.json").read_text())["backend"] == "onnx"
    names = sorted(p.name for p in (tmp_path / "t" / "masks").glob("*.png"))
    assert len(names) == 3
    for name in names:
        a, b = read_label(tmp_path / "t" / "masks" / name), read_label(tmp_path / "o" / "masks" / name)
        assert (a == b).mean() > 0.999, name
    bad = runner.invoke(app, ["predict", *args, "--weights", str(default_onnx), "--backend", "torch",
                              "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "an ONNX model runs with --backend onnx" in bad.output
    assert len(bad.output.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()


def test_eval_of_the_exported_model_gives_the_torch_metrics(default_onnx, synth, tmp_path):
    args = [str(synth), "--format", "folder", "--workers", "0", "--device", "cpu", "-q"]
    torch_run = runner.invoke(app, ["eval", *args, "--out", str(tmp_path / "t")])
    onnx_run = runner.invoke(app, ["eval", *args, "--weights", str(default_onnx), "--out", str(tmp_path / "o")])
    assert torch_run.exit_code == 0, torch_run.output
    assert onnx_run.exit_code == 0, onnx_run.output
    t = json.loads((tmp_path / "t" / "metrics.json").read_text())
    o = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert o["run"]["backend"] == "onnx" and t["run"]["backend"] == "torch"
    assert o["num_images"] == t["num_images"] == 3
    for key in ("aAcc", "mIoU", "mAcc", "fwIoU"):
        assert o[key] == pytest.approx(t[key], abs=1e-3), key
    bad = runner.invoke(app, ["eval", *args, "--weights", str(default_onnx), "--backend", "torch",
                              "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "an ONNX model runs with --backend onnx" in bad.output


def test_numpy_loop_matches_the_torch_loop_in_whole_and_slide_mode(default_onnx):
    import torch

    from vitseg_cli.engine.inference import InferenceSettings, _model_forward, _ScorePass, preprocess
    from vitseg_cli.engine.onnx_backend import OnnxSegmentor
    from vitseg_cli.engine.onnx_infer import onnx_predict_image, pass_logits, resize_bilinear

    src = np.random.default_rng(0).standard_normal((5, 7, 9)).astype(np.float32)
    for size in [(13, 4), (3, 20), (7, 9)]:
        ref = torch.nn.functional.interpolate(torch.from_numpy(src)[None], size, mode="bilinear",
                                              align_corners=False)[0].numpy()
        assert np.abs(resize_bilinear(src, size) - ref).max() < 1e-5, size
    model = OnnxSegmentor(default_onnx, allow_pad=True)
    image = make_image(100, 90)
    forward = _model_forward(model, torch.device("cpu"), half=False)
    for mode, extra in [("whole", {}), ("slide", {"crop_size": (SIZE, SIZE), "stride": (40, 40)})]:
        settings = InferenceSettings.from_spec(model.spec, mode=mode, **extra)
        x = preprocess(image, settings.resize, 1.0, model.spec.data.mean, model.spec.data.std)
        if mode == "whole":  # a fixed-size graph: whole mode runs at the export size
            image, x = image[:SIZE, :SIZE], x[:, :SIZE, :SIZE]
        out = tuple(image.shape[:2])
        ref = _ScorePass(forward, torch.from_numpy(x)[None], settings, out, False).rows(0, out[0]).numpy()
        mine = pass_logits(model, x, settings, out)
        assert mine.shape == ref.shape and np.abs(mine - ref).max() <= 1e-4, mode
        labels, _ = onnx_predict_image(model, image, settings)
        assert (labels == ref.argmax(0)).all()


def test_the_onnx_path_never_imports_torch(default_onnx, tmp_path):
    code = (
        "import sys, numpy as np\n"
        "from vitseg_cli.engine.onnx_backend import OnnxSegmentor\n"
        "from vitseg_cli.engine.onnx_infer import onnx_predict_image\n"
        "m = OnnxSegmentor(sys.argv[1], allow_pad=True)\n"
        "s = type('S', (), dict(mode='slide', crop_size=(64, 64), stride=(40, 40), flip=True, scales=[1.0],\n"
        "       resize=None, resize_rule='mmseg', min_short_side=None, batch_size=2, procedure='mmseg',\n"
        "       pad_short_side=None))\n"
        "labels, probs = onnx_predict_image(m, np.zeros((80, 70, 3), np.uint8), s, want_probs=True)\n"
        "assert labels.shape == (80, 70) and probs.shape[1:] == (80, 70)\n"
        "print('torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code, str(default_onnx)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def make_image(h: int, w: int) -> np.ndarray:
    import cv2

    img = np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return cv2.GaussianBlur(img, (5, 5), 2)
