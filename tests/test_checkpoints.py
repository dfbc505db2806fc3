"""Checkpoint formats: vitseg safetensors round trip, official import errors, timm/DeiT initialisation."""

from __future__ import annotations

import pytest
import torch

from vitseg_cli import build_model, load_model, save_model
from vitseg_cli.checkpoints import read_vitseg
from vitseg_cli.loading import load_pretrained
from vitseg_cli.errors import VitsegError


def test_safetensors_round_trip_keeps_outputs_spec_and_classes(parity_dir, tmp_path):
    official = load_model(parity_dir / "mini_full_checkpoint.pth")
    path = save_model(official, tmp_path / "m.safetensors")
    again = load_model(path)
    case = torch.load(parity_dir / "mini_full_case.pt", weights_only=True)
    with torch.no_grad():
        assert torch.equal(official(case["input"]), again(case["input"]))
    assert again.spec.model == official.spec.model
    _, meta = read_vitseg(path)
    assert meta["format"] == "vitseg" and "class_6" in meta["classes"]
    assert again.spec.palette[0] == (217, 163, 130)  # from the official meta PALETTE


def test_half_storage_keeps_the_argmax(parity_dir, tmp_path):
    official = load_model(parity_dir / "mini_full_checkpoint.pth")
    path = save_model(official, tmp_path / "h.safetensors", half=True)
    small = load_model(path)
    x = torch.load(parity_dir / "mini_full_case.pt", weights_only=True)["input"]
    with torch.no_grad():
        a, b = official(x), small(x)
    assert (a.argmax(1) == b.argmax(1)).float().mean() > 0.99
    assert path.stat().st_size < 0.6 * save_model(official, tmp_path / "f.safetensors").stat().st_size


def test_module_prefix_and_model_key_are_accepted(parity_dir, tmp_path):
    ck = torch.load(parity_dir / "mini_checkpoint.pth", weights_only=True)
    wrapped = {"model": {f"module.{k}": v for k, v in ck["state_dict"].items()}}
    path = tmp_path / "wrapped.pth.tar"
    torch.save(wrapped, path)
    model = load_model(path)
    assert model.decode_head is None and model.spec.model.backbone.embed_dim == 96


def test_spec_that_does_not_fit_lists_the_keys(parity_dir):
    with pytest.raises(VitsegError) as err:
        load_model(parity_dir / "mini_full_checkpoint.pth", spec="nano")  # nano has a 64-ch head, this one 32
    assert "mini_full_checkpoint.pth" in str(err.value) and "decode_head" in str(err.value)


def test_missing_key_is_an_error(parity_dir, tmp_path):
    ck = torch.load(parity_dir / "mini_full_checkpoint.pth", weights_only=True)
    del ck["state_dict"]["decode_head.bottleneck.conv.weight"]
    path = tmp_path / "broken.pth"
    torch.save(ck, path)
    with pytest.raises(VitsegError, match="1 missing .*decode_head.bottleneck.conv.weight"):
        load_model(path)


@pytest.mark.parametrize("content, fragment", [
    (b"", "not a readable checkpoint"),
    (b"hello, not a checkpoint", "not a readable checkpoint"),
])
def test_non_checkpoint_files(tmp_path, content, fragment):
    path = tmp_path / "x.pth"
    path.write_bytes(content)
    with pytest.raises(VitsegError, match=fragment):
        load_model(path)


def test_pickled_objects_are_never_executed(tmp_path):
    import argparse

    path = tmp_path / "objects.pth"
    torch.save({"args": argparse.Namespace(lr=1), "state_dict": {}}, path)
    with pytest.raises(VitsegError, match="cannot be loaded safely"):
        load_model(path)


def test_other_architecture_is_refused(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(8, 3, 7, 7), "fc.weight": torch.zeros(10, 8)}}, path)
    with pytest.raises(VitsegError, match="not a ViT-Adapter checkpoint"):
        load_model(path)


def test_missing_file(tmp_path):
    with pytest.raises(VitsegError, match="file not found"):
        load_model(tmp_path / "nope.safetensors")


def test_timm_deit_checkpoint_initialises_the_vit(tmp_path):
    model = build_model("nano")
    d = model.spec.model.backbone.embed_dim
    source = build_model("nano").backbone
    state = {k: v for k, v in source.state_dict().items()
             if k == "pos_embed" or k.startswith(("patch_embed.", "blocks.")) and ".gamma" not in k}
    state.update({"cls_token": torch.zeros(1, 1, d), "norm.weight": torch.ones(d), "head.weight": torch.zeros(9, d)})
    path = tmp_path / "deit.pth"
    torch.save({"model": state}, path)
    notes = load_pretrained(model, path)
    assert torch.equal(model.backbone.blocks[2].attn.qkv.weight, source.blocks[2].attn.qkv.weight)
    assert torch.equal(model.backbone.pos_embed, source.pos_embed)
    assert torch.equal(model.backbone.blocks[0].gamma1, torch.ones(d))
    assert any("gammas" in n for n in notes)


def test_timm_checkpoint_with_other_pretrain_size_is_refused(tmp_path):
    model = build_model("nano")
    state = {k: v for k, v in model.backbone.state_dict().items() if k.startswith(("patch_embed.", "blocks."))}
    state["pos_embed"] = torch.zeros(1, 24 * 24 + 1, 96)
    path = tmp_path / "deit384.pth"
    torch.save({"model": state}, path)
    with pytest.raises(VitsegError, match="pretrain_size 384"):
        load_pretrained(model, path)
