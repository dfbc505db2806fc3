"""Uni-Perceiver-Adapter against the official implementation (tests/data/parity/mini_uniperceiver_*), its spec
inference, its windowed attention and its layer-decay ids (the official constructor's rules)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from test_beit_parity import assert_reproduces, spec_from_official_config
from vitseg_cli import build_model
from vitseg_cli.loading import load_model
from vitseg_cli.errors import VitsegError
from vitseg_cli.model.uniperceiver import SelfAttention


@pytest.fixture(scope="module")
def case(parity_dir):
    return torch.load(parity_dir / "mini_uniperceiver_case.pt", weights_only=True)


@pytest.fixture(scope="module")
def inferred(parity_dir):
    return load_model(parity_dir / "mini_uniperceiver_checkpoint.pth")  # no spec: inferred from the weights


def test_inferred_model_reproduces_official_features(inferred, case):
    assert_reproduces(inferred, case)


def test_model_from_the_official_config_reproduces_official_features(parity_dir, case):
    config = json.loads((parity_dir / "mini_uniperceiver_config.json").read_text())
    model = build_model(spec_from_official_config(config)).eval()
    state = torch.load(parity_dir / "mini_uniperceiver_checkpoint.pth", weights_only=True)["state_dict"]
    model.backbone.load_state_dict({k.removeprefix("backbone."): v for k, v in state.items()}, strict=True)
    assert_reproduces(model, case)


def test_inferred_spec_matches_the_official_config(parity_dir, inferred):
    config = json.loads((parity_dir / "mini_uniperceiver_config.json").read_text())
    b = inferred.spec.model.backbone
    assert b.type == "uniperceiver_adapter"
    for key in ("embed_dim", "depth", "num_heads", "mlp_ratio", "n_points", "cffn_ratio", "deform_ratio",
                "conv_inplane", "deform_num_heads"):
        assert getattr(b, key) == config[key], key
    assert b.img_size == 224  # the official default: 14x14 spatial position embeddings
    assert not any(b.window_attn or [])
    notes = " ".join(inferred.load_notes)
    assert "num_heads=4" in notes and "window_attn" in notes and "interaction_indexes" in notes


def test_any_multiple_of_32_runs(inferred):
    with torch.no_grad():
        feats = inferred.backbone(torch.randn(1, 3, 96, 64))
    assert [tuple(f.shape[-2:]) for f in feats] == [(24, 16), (12, 8), (6, 4), (3, 2)]


def test_windowed_attention_attends_within_zero_padded_windows():
    """A 4x6 token grid in 4x4 windows: the grid is zero-padded to 4x8 and each window attends over its 16 tokens,
    the padding included (as the official WindowedAttention, which applies in_proj to the zero padding)."""
    torch.manual_seed(0)
    windowed = SelfAttention(8, 2, window=4)
    whole = SelfAttention(8, 2)
    whole.load_state_dict(windowed.state_dict())
    x = torch.randn(1, 24, 8)
    grid = x.view(1, 4, 6, 8)
    left = grid[:, :, :4].reshape(1, 16, 8)
    right = F.pad(grid[:, :, 4:], (0, 0, 0, 2)).reshape(1, 16, 8)
    with torch.no_grad():
        out = windowed(x, 4, 6).view(1, 4, 6, 8)
        expect_left = whole(left, 4, 4).view(1, 4, 4, 8)
        expect_right = whole(right, 4, 4).view(1, 4, 4, 8)[:, :, :2]
    torch.testing.assert_close(out[:, :, :4], expect_left)
    torch.testing.assert_close(out[:, :, 4:], expect_right)


def test_window_settings_are_checked():
    base = {"type": "uniperceiver_adapter", "embed_dim": 64, "depth": 4, "num_heads": 4, "deform_num_heads": 4,
            "interaction_indexes": [[0, 0], [1, 1], [2, 2], [3, 3]]}
    with pytest.raises(VitsegError, match="one value per layer"):
        build_model({"model": {"backbone": {**base, "window_attn": [True, False]}}})
    with pytest.raises(VitsegError, match="window_size\\[1\\]"):
        build_model({"model": {"backbone": {**base, "window_attn": [False, True, False, False],
                                            "window_size": [None] * 4}}})


def test_layer_decay_follows_the_official_constructor(inferred):
    """The official get_num_layer_for_vit knows only backbone.blocks / patch_embed / cls_token / pos_embed: every
    Uni-Perceiver parameter (layers.i, visual_embed) gets the top id, num_layers + 1 = depth + 1."""
    for name in ("backbone.visual_embed.patch_embed.proj.weight", "backbone.layers.0.linear1.weight",
                 "backbone.layers.3.self_attn.in_proj.weight", "backbone.level_embed", "backbone.spm.fc1.weight"):
        assert inferred.layer_id(name) == 5, name
    assert not inferred.no_weight_decay("backbone.visual_embed.patch_embed.spatial_pos_embed.weight",
                                        torch.zeros(196, 64))
