"""BEiT-Adapter + Mask2Former as a whole segmentor against the official one (tests/data/parity/mini_m2f_*): the
checkpoint read with no spec (its config text inside), encode_decode scores, the slide pipeline, and `vitseg predict`.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from conftest import PARITY
from vitseg_cli.loading import load_model
from vitseg_cli.cli import app
from vitseg_cli.data.io import read_image, read_label
from vitseg_cli.engine.inference import InferenceSettings, iter_predictions, preprocess
from vitseg_cli.model.msda import msda_impl


@pytest.fixture(scope="module")
def case():
    return torch.load(PARITY / "mini_m2f_case.pt", weights_only=True)


@pytest.fixture(scope="module")
def model():
    return load_model(PARITY / "mini_m2f_checkpoint.pth")


def test_spec_comes_from_the_config_inside_the_checkpoint(model):
    spec = model.spec
    assert spec.model.backbone.type == "beit_adapter" and spec.model.decode_head.type == "mask2former"
    head = spec.model.decode_head
    assert (head.num_queries, head.pixel_decoder.num_heads, head.transformer_decoder.num_heads) == (10, 8, 8)
    assert spec.model.num_classes == 7 and spec.model.auxiliary_head is None
    assert (spec.test.mode, tuple(spec.test.crop_size), tuple(spec.test.stride)) == ("slide", (128, 128), (85, 85))
    assert tuple(spec.test.resize.scale) == (512, 128)
    assert model.load_notes[0] == "spec read from the config inside the checkpoint"


@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_encode_decode_scores_match_the_official_segmentor(model, case, impl):
    x = case["input"]
    with torch.inference_mode(), msda_impl(impl):
        feats = model.backbone(x)
        scores = model(x)
    for ours, theirs in zip(feats, case["backbone_outputs"]):
        assert (ours - theirs).abs().max() <= 1e-3
    assert (scores - case["head_out"]).abs().max() <= 1e-3
    seg_logits = F.interpolate(scores, size=x.shape[-2:], mode="bilinear", align_corners=False)
    assert (seg_logits - case["seg_logits"]).abs().max() <= 1e-3


def test_official_test_pipeline(model, case):
    image = read_image(PARITY / "mini_m2f_image.png")
    spec = model.spec
    x = preprocess(image, spec.test.resize, 1.0, spec.data.mean, spec.data.std)
    assert tuple(x.shape) == tuple(case["pipeline_input"].shape[1:])
    assert (torch.from_numpy(x) - case["pipeline_input"][0]).abs().max() <= 1e-3
    settings = InferenceSettings.from_spec(spec)
    [pred] = list(iter_predictions(model, [PARITY / "mini_m2f_image.png"], settings, torch.device("cpu"),
                                   want_probs=True))
    assert pred.ok, pred.error
    expected = read_label(PARITY / "mini_m2f_expected_mask.png")
    assert (pred.labels == expected).mean() >= 0.999
    # the scores are softmax-normalised over classes, as the official `inference` does
    assert torch.allclose(torch.from_numpy(pred.probs.astype("float32")).sum(0), torch.ones(450, 600), atol=1e-2)


def test_predict_with_no_spec_reproduces_the_official_mask(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["predict", str(PARITY / "mini_m2f_image.png"), "--weights",
                                      str(PARITY / "mini_m2f_checkpoint.pth"), "--out", str(out), "--workers", "0"])
    assert result.exit_code == 0, result.output
    mask = read_label(out / "masks" / "mini_m2f_image.png")
    expected = read_label(PARITY / "mini_m2f_expected_mask.png")
    assert mask.shape == expected.shape == (450, 600)
    assert (mask == expected).mean() >= 0.999


def test_beit_window_too_large_is_one_clear_error(model):
    from vitseg_cli.errors import VitsegError

    with pytest.raises(VitsegError, match="at most 128x128"):
        model(torch.zeros(1, 3, 160, 128))
