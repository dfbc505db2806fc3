"""DINOv2 ViT-Adapter + Mask2Former against DINOv2's official segmentor (tests/data/parity/mini_dinov2_m2f_*):
the backbone built from the official constructor arguments, the checkpoint read with no spec (its config text), the
spec inferred from the weights alone, encode_decode scores, mmseg's slide test and `vitseg predict`."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from conftest import PARITY
from vitseg_cli import build_model
from vitseg_cli.loading import load_model
from vitseg_cli.cli import app
from vitseg_cli.data.io import read_image, read_label
from vitseg_cli.engine.inference import preprocess
from vitseg_cli.model.msda import msda_impl
from vitseg_cli.model.official import infer_spec_from_weights
from vitseg_cli.model.registry import detect_backbone

TOL = 1e-3
CHECKPOINT = PARITY / "mini_dinov2_m2f_checkpoint.pth"


@pytest.fixture(scope="module")
def case():
    return torch.load(PARITY / "mini_dinov2_m2f_case.pt", weights_only=True)


@pytest.fixture(scope="module")
def state():
    return torch.load(CHECKPOINT, weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def model():
    return load_model(CHECKPOINT)


def _max_errors(ours, theirs) -> list[float]:
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape
    return [(a - b).abs().max().item() for a, b in zip(ours, theirs)]


@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_backbone_from_the_official_arguments_reproduces_the_features(state, case, impl):
    official = json.loads((PARITY / "mini_dinov2_m2f_config.json").read_text())["backbone"]
    assert official["img_size"] == official["pretrain_size"]
    section = {k: v for k, v in official.items() if k not in ("type", "img_size", "with_cp")}
    model = build_model({"model": {"backbone": {**section, "type": "dinov2_adapter"}, "decode_head": None,
                                   "auxiliary_head": None}}).eval()
    model.backbone.load_state_dict({k.removeprefix("backbone."): v for k, v in state.items()
                                    if k.startswith("backbone.")}, strict=True)
    with torch.no_grad(), msda_impl(impl):
        feats = model.backbone(case["input"])
    assert [tuple(f.shape[-2:]) for f in feats] == [(56, 56), (28, 28), (14, 14), (7, 7)]
    assert max(_max_errors(feats, case["backbone_outputs"])) <= TOL


def test_spec_comes_from_the_config_inside_the_checkpoint(model):
    spec = model.spec
    b = spec.model.backbone
    assert b.type == "dinov2_adapter" and spec.model.decode_head.type == "mask2former"
    assert (b.patch_size, b.pretrain_size, b.ffn_type, b.use_cls, b.freeze_vit) == (14, 70, "swiglu", True, True)
    assert [list(p) for p in b.interaction_indexes] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert (spec.test.mode, tuple(spec.test.crop_size), tuple(spec.test.stride)) == ("slide", (224, 224), (128, 128))
    assert tuple(spec.test.resize.scale) == (896, 224) and spec.test.resize.size_divisor == 32
    assert model.load_notes[0] == "spec read from the config inside the checkpoint"


@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_encode_decode_scores_match_the_official_segmentor(model, case, impl):
    x = case["input"]
    with torch.inference_mode(), msda_impl(impl):
        feats = model.backbone(x)
        scores = model(x)
    assert max(_max_errors(feats, case["backbone_outputs"])) <= TOL
    assert (scores - case["head_out"]).abs().max() <= TOL
    seg_logits = F.interpolate(scores, size=x.shape[-2:], mode="bilinear", align_corners=False)
    assert (seg_logits - case["seg_logits"]).abs().max() <= TOL


def _mmseg_slide(model, x: torch.Tensor, crop: int, stride: int) -> torch.Tensor:
    """mmseg 0.x `slide_inference` written out: windows clamped to the image, each window's scores resized to the
    window, overlaps averaged."""
    _, _, h, w = x.shape
    out = x.new_zeros(1, model.num_classes, h, w)
    count = x.new_zeros(1, 1, h, w)
    for i in range(max(h - crop + stride - 1, 0) // stride + 1):
        for j in range(max(w - crop + stride - 1, 0) // stride + 1):
            y2, x2 = min(i * stride + crop, h), min(j * stride + crop, w)
            y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
            window = x[:, :, y1:y2, x1:x2]
            scores = F.interpolate(model(window), size=window.shape[-2:], mode="bilinear", align_corners=False)
            out[:, :, y1:y2, x1:x2] += scores
            count[:, :, y1:y2, x1:x2] += 1
    return out / count


def test_official_test_pipeline_and_slide_scores(model, case):
    image = read_image(PARITY / "mini_dinov2_m2f_image.png")
    spec = model.spec
    x = torch.from_numpy(preprocess(image, spec.test.resize, 1.0, spec.data.mean, spec.data.std))[None]
    assert x.shape == case["pipeline_input"].shape == (1, 3, 224, 320)
    assert (x - case["pipeline_input"]).abs().max() <= TOL
    with torch.inference_mode():
        slide = _mmseg_slide(model, case["pipeline_input"], 224, 128)
    assert (slide - case["slide_logits"]).abs().max() <= TOL


def test_predict_with_no_spec_reproduces_the_official_mask(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["predict", str(PARITY / "mini_dinov2_m2f_image.png"), "--weights",
                                      str(CHECKPOINT), "--out", str(out), "--workers", "0"])
    assert result.exit_code == 0, result.output
    mask = read_label(out / "masks" / "mini_dinov2_m2f_image.png")
    expected = read_label(PARITY / "mini_dinov2_m2f_expected_mask.png")
    assert mask.shape == expected.shape == (450, 600)
    assert (mask == expected).mean() >= 0.999


def test_the_family_is_told_apart_from_the_other_adapters(state):
    assert detect_backbone(state).name == "dinov2_adapter"
    plain = {k: v for k, v in state.items() if k != "backbone.cls_token"}
    assert detect_backbone(plain).name == "dinov2_adapter"  # patch 14 and SwiGLU keys still say DINOv2
    vit16 = torch.load(PARITY / "mini_full_checkpoint.pth", weights_only=True)
    vit16 = vit16.get("state_dict", vit16)
    assert detect_backbone(vit16).name == "vit_adapter"


def test_spec_inferred_from_the_weights_alone_reproduces_the_features(state, case):
    spec, assumed = infer_spec_from_weights(state, {})
    b = spec.model.backbone
    assert (b.type, b.patch_size, b.pretrain_size, b.embed_dim, b.depth) == ("dinov2_adapter", 14, 70, 64, 8)
    assert (b.num_heads, b.deform_num_heads, b.deform_ratio, b.ffn_type, b.mlp_ratio) == (4, 4, 0.5, "swiglu", 4.0)
    assert b.layer_scale and b.qkv_bias and b.use_cls and b.use_extra_extractor
    assert any("num_heads" in a for a in assumed)
    model = build_model(spec).eval()
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        feats = model.backbone(case["input"])
    assert max(_max_errors(feats, case["backbone_outputs"])) <= TOL


def test_flags_without_cls_swiglu_or_qkv_bias_build_the_official_layout():
    section = {"type": "dinov2_adapter", "pretrain_size": 56, "patch_size": 14, "embed_dim": 32, "depth": 4,
               "num_heads": 2, "deform_num_heads": 2, "conv_inplane": 8, "use_cls": False, "ffn_type": "mlp",
               "qkv_bias": False, "layer_scale": False, "use_extra_extractor": False, "freeze_vit": False,
               "interaction_indexes": [[0, 0], [1, 1], [2, 2], [3, 3]]}
    model = build_model({"model": {"backbone": section, "decode_head": None, "auxiliary_head": None}}).eval()
    state = {f"backbone.{k}": v for k, v in model.backbone.state_dict().items()}
    assert "backbone.cls_token" not in state and "backbone.blocks.0.attn.qkv.bias" not in state
    assert "backbone.blocks.0.gamma1" not in state and not any(".extra_extractors." in k for k in state)
    assert state["backbone.blocks.0.mlp.fc1.weight"].shape == (128, 32)  # mlp_ratio 4
    assert state["backbone.pos_embed"].shape == (1, 1 + 4 * 4, 32)  # the cls slot stays, unused
    assert all(p.requires_grad for p in model.parameters())
    with torch.no_grad():  # 96 px: a 6x6 token grid against the adapter's 6x6 /16 level, 12x12 /8 level
        feats = model.backbone(torch.randn(1, 3, 96, 128))
    assert [tuple(f.shape[-2:]) for f in feats] == [(24, 32), (12, 16), (6, 8), (3, 4)]
    # patch 14 says DINOv2 even without a cls token; the inferred spec has the flags back
    assert detect_backbone(state).name == "dinov2_adapter"
    spec, _ = infer_spec_from_weights(state, {})
    b = spec.model.backbone
    assert (b.use_cls, b.ffn_type, b.qkv_bias, b.layer_scale, b.use_extra_extractor) == (False, "mlp", False, False,
                                                                                          False)
