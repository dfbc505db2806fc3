"""The Mask2Former head against the official ViT-Adapter head (tests/data/parity/mini_m2f_*), on both MSDA paths."""

from __future__ import annotations

import json

import pytest
import torch

from vitseg_cli.model.heads.mask2former import Mask2FormerHead
from vitseg_cli.model.msda import msda_impl
from vitseg_cli.model.heads.mask2former_config import Mask2FormerHeadSpec

TOL = 1e-3


def spec_from_official(cfg: dict) -> Mask2FormerHeadSpec:
    """The spec read off the official nested head config (independent of the code under test)."""
    enc = cfg["pixel_decoder"]["encoder"]
    enc_layer = enc["transformerlayers"]
    dec = cfg["transformer_decoder"]
    dec_layer = dec["transformerlayers"]
    return Mask2FormerHeadSpec(
        feat_channels=cfg["feat_channels"], out_channels=cfg["out_channels"], num_queries=cfg["num_queries"],
        enforce_decoder_input_project=cfg["enforce_decoder_input_project"],
        pixel_decoder={"num_layers": enc["num_layers"], "num_heads": enc_layer["attn_cfgs"]["num_heads"],
                       "num_points": enc_layer["attn_cfgs"]["num_points"],
                       "feedforward_channels": enc_layer["ffn_cfgs"]["feedforward_channels"],
                       "num_groups": cfg["pixel_decoder"]["norm_cfg"]["num_groups"]},
        transformer_decoder={"num_layers": dec["num_layers"], "num_heads": dec_layer["attn_cfgs"]["num_heads"],
                             "feedforward_channels": dec_layer["ffn_cfgs"]["feedforward_channels"]})


@pytest.fixture(scope="module")
def official(parity_dir):
    cfg = json.loads((parity_dir / "mini_m2f_config.json").read_text())["decode_head"]
    num_classes = cfg["num_things_classes"] + cfg["num_stuff_classes"]
    head = Mask2FormerHead(spec_from_official(cfg), cfg["in_channels"], num_classes).eval()
    state = torch.load(parity_dir / "mini_m2f_checkpoint.pth", weights_only=True)["state_dict"]
    head.load_state_dict({k.removeprefix("decode_head."): v for k, v in state.items()
                          if k.startswith("decode_head.")}, strict=True)
    return head, torch.load(parity_dir / "mini_m2f_case.pt", weights_only=True)


def _max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a - b).abs().max().item()


@pytest.mark.parametrize("impl", ["reference", "fast"])
def test_head_matches_official(official, impl):
    head, case = official
    feats = case["backbone_outputs"]
    with msda_impl(impl), torch.no_grad():
        mask_feature, multi_scale = head.pixel_decoder(feats)
        cls_preds, mask_preds = head.forward_stages(feats)
        out = head(feats)
    errors = {"mask_feature": _max_err(mask_feature, case["mask_feature"])}
    assert len(multi_scale) == len(case["multi_scale_features"]) == 3
    errors.update({f"multi_scale_features[{i}]": _max_err(a, b)
                   for i, (a, b) in enumerate(zip(multi_scale, case["multi_scale_features"]))})
    assert len(cls_preds) == len(mask_preds) == len(case["cls_preds"]) == len(case["mask_preds"]) == 4
    errors.update({f"cls_preds[{i}]": _max_err(a, b) for i, (a, b) in enumerate(zip(cls_preds, case["cls_preds"]))})
    errors.update({f"mask_preds[{i}]": _max_err(a, b)
                   for i, (a, b) in enumerate(zip(mask_preds, case["mask_preds"]))})
    errors["head_out"] = _max_err(out, case["head_out"])
    assert max(errors.values()) <= TOL, errors


def test_decoder_input_projection_only_when_enforced():
    spec = Mask2FormerHeadSpec(feat_channels=32, out_channels=32, num_queries=4, enforce_decoder_input_project=True,
                               pixel_decoder={"num_layers": 1, "feedforward_channels": 16, "num_groups": 8},
                               transformer_decoder={"num_layers": 1, "feedforward_channels": 16})
    keys = Mask2FormerHead(spec, [16, 16, 16, 16], 3).state_dict().keys()
    assert {f"decoder_input_projs.{i}.weight" for i in range(3)} <= keys
    plain = Mask2FormerHead(spec.model_copy(update={"enforce_decoder_input_project": False}), [16] * 4, 3)
    assert not any(k.startswith("decoder_input_projs") for k in plain.state_dict())
    out = plain([torch.randn(2, 16, 16 // s, 16 // s) for s in (1, 2, 4, 8)])
    assert out.shape == (2, 3, 16, 16)
    assert out.min() >= 0 and out.max() <= 4  # sum over 4 queries of (probability * sigmoid) per class
