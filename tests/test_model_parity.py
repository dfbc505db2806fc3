"""The model against the official implementation: parity vectors, any input size, paper parameter counts."""

from __future__ import annotations

import json

import pytest
import torch

from vitseg_cli import build_model, load_model


def _official_spec(config: dict) -> dict:
    backbone = {k: v for k, v in config.items()}
    return {"model": {"backbone": backbone}}


def test_backbone_reproduces_official_outputs(parity_dir):
    config = json.loads((parity_dir / "mini_config.json").read_text())
    case = torch.load(parity_dir / "mini_case.pt", weights_only=True)
    model = load_model(parity_dir / "mini_checkpoint.pth", spec=_official_spec(config))
    with torch.no_grad():
        outs = model.backbone(case["input"])
    assert len(outs) == 4
    for ours, ref in zip(outs, case["outputs"]):
        assert ours.shape == ref.shape
        assert (ours - ref).abs().max().item() <= 1e-3


def test_full_segmentor_reproduces_official_logits(parity_dir):
    case = torch.load(parity_dir / "mini_full_case.pt", weights_only=True)
    model = load_model(parity_dir / "mini_full_checkpoint.pth")  # spec inferred from the weights
    with torch.no_grad():
        logits = model(case["input"])
    assert logits.shape == case["logits"].shape
    assert (logits - case["logits"]).abs().max().item() <= 1e-3


def test_inferred_spec_matches_official_config(parity_dir):
    config = json.loads((parity_dir / "mini_full_config.json").read_text())
    model = load_model(parity_dir / "mini_full_checkpoint.pth")
    b = model.spec.model.backbone
    for key, value in config["backbone"].items():
        got = getattr(b, key)
        assert (list(map(list, got)) if key == "interaction_indexes" else got) == value, key
    assert model.spec.model.num_classes == config["num_classes"]
    assert model.spec.model.decode_head.channels == config["channels"]
    assert model.spec.class_names == [f"class_{i}" for i in range(7)]
    assert any("num_heads" in note for note in model.load_notes)


def test_any_input_size_gives_logits_covering_the_image():
    model = build_model("nano").eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 250, 333))
    assert logits.shape == (1, model.num_classes, 63, 84)  # ceil(250/4), ceil(333/4)


def test_padding_does_not_change_a_multiple_of_32_input(parity_dir):
    model = load_model(parity_dir / "mini_full_checkpoint.pth")
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        full = model(x)
        direct = model.decode_head(model.backbone(x))
    assert torch.equal(full, direct)


def test_backbone_only_spec_returns_four_features():
    model = build_model({"preset": "nano", "model": {"decode_head": None, "auxiliary_head": None}}).eval()
    with torch.no_grad():
        feats = model(torch.randn(1, 3, 64, 64))
    assert [f.shape[-1] for f in feats] == [16, 8, 4, 2]


def _millions(module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


@pytest.mark.parametrize("preset, paper", [("tiny", 8.0), ("small", 27.5)])
def test_backbone_parameter_counts_match_the_paper(preset, paper):
    assert abs(_millions(build_model(preset).backbone) - paper) <= 0.5


def test_tiny_upernet_parameter_count():
    model = build_model("tiny")  # UperNet 512 channels, 150 classes
    total = _millions(model.backbone) + _millions(model.decode_head)
    assert abs(total - 36.0) <= 1.0
