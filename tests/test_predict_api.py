"""`predict(model, image)` from Python: the CLI's inference path, on paths, arrays and PIL images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

from vitseg_cli import load_model, predict
from vitseg_cli.loading import save_model
from vitseg_cli.cli import app
from vitseg_cli.data.io import read_image, read_label, write_image
from vitseg_cli.errors import VitsegError
from vitseg_cli.model.segmentor import build_model
from vitseg_cli.spec import IMAGENET_MEAN, IMAGENET_STD, load_spec


@pytest.fixture(scope="module")
def model_and_image(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    torch.manual_seed(0)
    spec = load_spec("nano").updated(test={"mode": "whole", "resize": None},
                                     data={"classes": list("abcdef")})
    path = root / "nano.safetensors"
    save_model(build_model(spec), path)
    image = root / "street.png"
    write_image(image, np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8))
    return load_model(path), path, image


def test_labels_are_the_argmax_of_the_upsampled_logits(model_and_image):
    model, _, image = model_and_image
    result = predict(model, image)
    # by hand: normalise, forward, bilinear to the image size, argmax (the official whole-mode test path)
    rgb = read_image(image).astype(np.float32)
    x = torch.from_numpy(((rgb - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)).astype(np.float32))
    with torch.no_grad():
        logits = model(x.permute(2, 0, 1)[None])
    expected = F.interpolate(logits, size=rgb.shape[:2], mode="bilinear", align_corners=False)[0].argmax(0)
    assert result.labels.shape == (64, 96) and result.labels.dtype == np.uint8
    assert (result.labels == expected.numpy()).mean() > 0.999
    assert result.probs is None and result.path == image


def test_same_as_the_cli_for_arrays_and_pil(tmp_path, model_and_image):
    model, weights, image = model_and_image
    res = CliRunner().invoke(app, ["predict", str(image), "-w", str(weights), "--out", str(tmp_path / "cli"),
                                   "--device", "cpu", "--workers", "0", "--quiet", "--flip"])
    assert res.exit_code == 0, res.output
    cli_mask = read_label(tmp_path / "cli" / "masks" / "street.png")
    rgb = read_image(image)
    for source in (image, str(image), rgb, Image.fromarray(rgb)):
        result = predict(model, source, flip=True, probs=True)
        np.testing.assert_array_equal(result.labels, cli_mask)
    assert result.probs.shape == (6, 64, 96)
    np.testing.assert_allclose(result.probs.astype(np.float32).sum(0), 1.0, atol=1e-2)
    over = result.overlay(alpha=1.0)
    np.testing.assert_array_equal(over, np.array(model.spec.palette, np.uint8)[result.labels])
    saved = result.save(tmp_path / "api", name="x", kinds=("masks", "overlay", "probs"))
    assert sorted(saved) == ["masks", "overlay", "probs"]
    np.testing.assert_array_equal(read_label(tmp_path / "api" / "masks" / "x.png"), cli_mask)
    assert (tmp_path / "api" / "overlay" / "x.jpg").is_file() and saved["probs"].suffix == ".npz"
    assert set(result.classes_present()) <= set("abcdef")


def test_options_and_bad_inputs(model_and_image):
    model, _, image = model_and_image
    model.train()
    slide = predict(model, image, mode="slide", crop_size=32, stride=16)
    assert slide.labels.shape == (64, 96)
    assert model.training  # the caller's mode is left as it was
    model.eval()
    with pytest.raises(TypeError, match="unknown inference options: colour"):
        predict(model, image, colour=True)
    with pytest.raises(VitsegError, match="uint8"):
        predict(model, np.zeros((8, 8, 3), np.float32))
    with pytest.raises(VitsegError, match="file not found"):
        predict(model, image.parent / "nope.png")
    with pytest.raises(VitsegError, match="probs=True"):
        predict(model, image).save(image.parent / "o", kinds=("probs",))
