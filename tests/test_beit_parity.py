"""BEiT-Adapter against the official implementation (tests/data/parity/mini_beit_*), its spec inference, its
layer-decay ids (the official LayerDecayOptimizerConstructor's rules) and the BEiT pretraining loader."""

from __future__ import annotations

import json

import pytest
import torch

from vitseg_cli import build_model
from vitseg_cli.loading import load_model, load_pretrained
from vitseg_cli.engine.optim import param_groups
from vitseg_cli.errors import VitsegError
from vitseg_cli.model.msda import msda_impl

OFFICIAL_TYPES = {"BEiTAdapter": "beit_adapter", "UniPerceiverAdapter": "uniperceiver_adapter"}


def spec_from_official_config(config: dict) -> dict:
    """A backbone-only vitseg spec from an official constructor config (same argument names)."""
    backbone = {**config, "type": OFFICIAL_TYPES[config["type"]]}
    return {"model": {"backbone": backbone, "decode_head": None, "auxiliary_head": None}}


def assert_reproduces(model, case) -> None:
    for impl in ("fast", "reference"):
        with msda_impl(impl), torch.no_grad():
            outs = model.backbone(case["input"])
        assert len(outs) == 4
        for ours, ref in zip(outs, case["outputs"]):
            assert ours.shape == ref.shape
            assert (ours - ref).abs().max().item() <= 1e-3, impl


@pytest.fixture(scope="module")
def beit_case(parity_dir):
    return torch.load(parity_dir / "mini_beit_case.pt", weights_only=True)


@pytest.fixture(scope="module")
def inferred(parity_dir):
    return load_model(parity_dir / "mini_beit_checkpoint.pth")  # no spec: inferred from the weights


def test_inferred_model_reproduces_official_features(inferred, beit_case):
    assert_reproduces(inferred, beit_case)


def test_model_from_the_official_config_reproduces_official_features(parity_dir, beit_case):
    config = json.loads((parity_dir / "mini_beit_config.json").read_text())
    model = build_model(spec_from_official_config(config)).eval()
    state = torch.load(parity_dir / "mini_beit_checkpoint.pth", weights_only=True)["state_dict"]
    model.backbone.load_state_dict({k.removeprefix("backbone."): v for k, v in state.items()}, strict=True)
    assert_reproduces(model, beit_case)


def test_inferred_spec_matches_the_official_config(parity_dir, inferred):
    config = json.loads((parity_dir / "mini_beit_config.json").read_text())
    b = inferred.spec.model.backbone
    assert b.type == "beit_adapter"
    for key in ("embed_dim", "depth", "num_heads", "mlp_ratio", "qkv_bias", "use_abs_pos_emb", "use_rel_pos_bias",
                "init_values", "n_points", "cffn_ratio", "deform_ratio", "conv_inplane", "deform_num_heads"):
        assert getattr(b, key) == config[key], key
    assert list(b.img_size) == config["img_size"]  # (H, W) = (64, 96): read from relative_position_index
    assert [list(p) for p in b.interaction_indexes] == config["interaction_indexes"]
    notes = " ".join(inferred.load_notes)
    assert "interaction_indexes" in notes and "drop_path_rate" in notes


def test_a_wrong_input_size_is_a_clear_error(inferred):
    with pytest.raises(VitsegError, match="exactly 96x64"):
        inferred.backbone(torch.randn(1, 3, 64, 64))
    with pytest.raises(VitsegError, match="at most 96x64"):
        inferred(torch.randn(1, 3, 96, 96))


def test_layer_decay_follows_the_official_constructor():
    """get_num_layer_for_vit with num_layers = depth + 2: cls_token / patch_embed 0, blocks.i -> i + 1, anything
    else (adapter, shared rel_pos_bias, heads) -> depth + 1; lr scale = rate ** (depth + 1 - id). No weight decay only
    for 1-D tensors and biases: its ('pos_embed', 'cls_token') names never match the 'backbone.' names it sees."""
    spec = {"model": {"backbone": {"type": "beit_adapter", "img_size": 64, "embed_dim": 64, "depth": 4,
                                   "num_heads": 4, "deform_num_heads": 4, "conv_inplane": 16,
                                   "use_shared_rel_pos_bias": True,
                                   "interaction_indexes": [[0, 0], [1, 1], [2, 2], [3, 3]]},
                      "decode_head": {"type": "upernet", "channels": 16}, "num_classes": 3}}
    model = build_model(spec)
    expected = {"backbone.cls_token": 0, "backbone.patch_embed.proj.weight": 0, "backbone.blocks.0.gamma_1": 1,
                "backbone.blocks.3.attn.relative_position_bias_table": 4, "backbone.blocks.3.mlp.fc2.weight": 4,
                "backbone.rel_pos_bias.relative_position_bias_table": 5, "backbone.level_embed": 5,
                "backbone.interactions.0.injector.gamma": 5, "backbone.interactions.3.extra_extractors.1.ffn.fc1.weight": 5,
                "backbone.spm.stem.0.weight": 5, "backbone.up.weight": 5, "backbone.norm4.weight": 5,
                "decode_head.conv_seg.weight": 5}
    for name, layer in expected.items():
        assert model.layer_id(name) == layer, name
    rate = 0.9
    groups = param_groups(model, lr=1.0, weight_decay=0.05, layer_decay_rate=rate)
    where = {n: g for g in groups for n in g["param_names"]}
    for name, layer in expected.items():
        assert where[name]["lr_scale"] == pytest.approx(rate ** (6 - layer - 1)), name
    decayed = ("backbone.cls_token", "backbone.level_embed", "backbone.blocks.3.attn.relative_position_bias_table",
               "backbone.patch_embed.proj.weight")
    exempt = ("backbone.blocks.0.gamma_1", "backbone.blocks.0.attn.q_bias", "backbone.patch_embed.proj.bias",
              "backbone.interactions.0.injector.gamma")
    assert all(where[n]["weight_decay"] == 0.05 for n in decayed)
    assert all(where[n]["weight_decay"] == 0.0 for n in exempt)


# ---------------------------------------------------------------------------------------- BEiT pretraining file

SMALL_BEIT = {"model": {"backbone": {"type": "beit_adapter", "img_size": 128, "embed_dim": 32, "depth": 4,
                                     "num_heads": 2, "deform_num_heads": 2, "conv_inplane": 8,
                                     "interaction_indexes": [[0, 0], [1, 1], [2, 2], [3, 3]]},
                        "decode_head": None, "auxiliary_head": None}}


def _pretraining_state(model, window: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """An official BEiT pretraining state dict (unilm layout) for `model`'s blocks at a `window` x `window` patch
    grid: one shared relative position table, a classification head, a mask token, index buffers."""
    state = {}
    for k, v in model.backbone.state_dict().items():
        if k.startswith(("cls_token", "patch_embed.", "blocks.")) and "relative_position" not in k:
            state[k] = torch.randn(v.shape, generator=generator)
    rows = (2 * window - 1) ** 2 + 3
    state["rel_pos_bias.relative_position_bias_table"] = torch.randn(rows, 2, generator=generator)
    state["rel_pos_bias.relative_position_index"] = torch.zeros(window ** 2 + 1, window ** 2 + 1, dtype=torch.long)
    state["mask_token"] = torch.randn(1, 1, 32, generator=generator)
    state["norm.weight"] = torch.randn(32, generator=generator)
    state["head.weight"] = torch.randn(10, 32, generator=generator)
    return state


def test_pretrained_file_initialises_the_blocks_with_resized_tables(tmp_path):
    """Window 4x4 (7x7 offsets) -> 8x8 (15x15): the official loader places the source offsets at 0, +-1, +-(1+q),
    +-(1+q+q^2) with q found by bisection in [1.01, 1.5] (here it saturates at 1.5, as 1+q+q^2 cannot reach 7), fits
    a bicubic interpolating spline and reads it at the integer offsets -7..7, extrapolating beyond the outermost
    knot (4.75) with its edge value (interp2d's nearest-neighbour extrapolation)."""
    model = build_model(SMALL_BEIT)
    source = _pretraining_state(model, 4, torch.Generator().manual_seed(0))
    path = tmp_path / "beit_pretrain.pth"
    torch.save({"model": source}, path)
    notes = load_pretrained(model, path)

    own = model.backbone.state_dict()
    for key in ("cls_token", "patch_embed.proj.weight", "blocks.2.attn.q_bias", "blocks.3.mlp.fc1.weight",
                "blocks.1.gamma_2"):
        assert torch.equal(own[key], source[key]), key
    small = source["rel_pos_bias.relative_position_bias_table"]
    grid_small = small[:-3].T.reshape(2, 7, 7)
    for i in range(4):
        table = own[f"blocks.{i}.attn.relative_position_bias_table"]
        assert table.shape == (15 * 15 + 3, 2)
        assert torch.equal(table[-3:], small[-3:])  # cls->patch, patch->cls, cls->cls carried over
        grid = table[:-3].T.reshape(2, 15, 15)
        # offsets -1, 0, 1 are knots: the spline passes through the small table there
        torch.testing.assert_close(grid[:, 6:9, 6:9], grid_small[:, 2:5, 2:5], atol=1e-5, rtol=0)
        # offsets beyond +-4.75 take the value at the outermost knot: the small table's edges
        torch.testing.assert_close(grid[:, 0, 0], grid_small[:, 0, 0], atol=1e-5, rtol=0)
        torch.testing.assert_close(grid[:, 14, 6:9], grid_small[:, 6, 2:5], atol=1e-5, rtol=0)
        torch.testing.assert_close(grid[:, 6:9, 12], grid_small[:, 2:5, 6], atol=1e-5, rtol=0)
    assert any("4 relative position bias tables resized to the 8x8 window" in n for n in notes)
    assert any(n.startswith("not used:") and "head" in n and "mask_token" in n for n in notes)


def test_a_constant_table_stays_constant_and_a_fitting_one_is_copied(tmp_path):
    model = build_model(SMALL_BEIT)
    source = _pretraining_state(model, 4, torch.Generator().manual_seed(1))
    source["rel_pos_bias.relative_position_bias_table"] = torch.full((52, 2), 0.25)
    torch.save({"model": source}, tmp_path / "constant.pth")
    load_pretrained(model, tmp_path / "constant.pth")
    table = model.backbone.state_dict()["blocks.0.attn.relative_position_bias_table"]
    torch.testing.assert_close(table, torch.full((228, 2), 0.25), atol=1e-6, rtol=0)

    per_block = {k: v for k, v in source.items() if not k.startswith("rel_pos_bias.")}
    per_block["blocks.1.attn.relative_position_bias_table"] = torch.randn(228, 2)  # already the 8x8 window
    torch.save({"model": per_block}, tmp_path / "fitting.pth")
    load_pretrained(model, tmp_path / "fitting.pth")
    own = model.backbone.state_dict()
    assert torch.equal(own["blocks.1.attn.relative_position_bias_table"],
                       per_block["blocks.1.attn.relative_position_bias_table"])


def test_a_pretrained_file_of_another_model_is_rejected(tmp_path):
    model = build_model(SMALL_BEIT)
    source = _pretraining_state(model, 4, torch.Generator().manual_seed(2))
    source["blocks.0.mlp.fc1.weight"] = torch.randn(64, 32)
    torch.save({"model": source}, tmp_path / "other.pth")
    with pytest.raises(VitsegError, match="blocks.0.mlp.fc1.weight"):
        load_pretrained(model, tmp_path / "other.pth")
    del source["blocks.3.attn.qkv.weight"]
    torch.save({"model": source}, tmp_path / "partial.pth")
    with pytest.raises(VitsegError, match="missing"):
        load_pretrained(model, tmp_path / "partial.pth")

