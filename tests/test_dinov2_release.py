"""DINOv2's released segmentor: the reconstructed ViT-g/14 preset (parameter count of the official code), its zoo
entry (checkpoint and config fetched together from a local mirror, the spec read from the config), `vitseg info`,
and fine-tuning with the ViT frozen by default and trained with layer decay under `--unfreeze`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from conftest import PARITY
from test_train import vitseg
from test_zoo import Server
from vitseg_cli import build_model, load_model
from vitseg_cli.cli import app
from vitseg_cli.data.classes import ADE20K_CLASSES
from vitseg_cli.data.io import read_label
from vitseg_cli.data.synth import make_synthetic
from vitseg_cli.engine.optim import param_groups
from vitseg_cli.releases import release
from vitseg_cli.spec import SPEC_PRESETS, load_spec

NAME = "dinov2_vitg14_ade20k_m2f"
CHECKPOINT = PARITY / "mini_dinov2_m2f_checkpoint.pth"
runner = CliRunner()


def test_preset_has_the_official_parameter_count():
    # counts of the official modules built from the reconstructed config on the meta device
    with torch.device("meta"):
        model = build_model(NAME)
    backbone = model.backbone
    vit = sum(p.numel() for n, p in backbone.named_parameters() if backbone.stack.layer_id(n) is not None)
    adapter = sum(p.numel() for p in backbone.parameters()) - vit
    head = sum(p.numel() for p in model.decode_head.parameters())
    assert (vit, adapter, head) == (1_136_476_160, 50_360_960, 241_749_911)
    assert sum(p.numel() for p in model.parameters()) == 1_428_587_031


def test_preset_and_release_describe_the_ade20k_segmentor():
    spec, r = load_spec(NAME), release(NAME)
    b = spec.model.backbone
    assert (b.type, b.patch_size, b.embed_dim, b.depth, b.ffn_type, b.freeze_vit) == (
        "dinov2_adapter", 14, 1536, 40, "swiglu", True)
    assert spec.data.classes == list(ADE20K_CLASSES) and spec.data.reduce_zero_label
    assert (spec.test.mode, spec.test.crop_size, tuple(spec.test.resize.scale)) == ("slide", (896, 896), (3584, 896))
    assert r.url == "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitg14/dinov2_vitg14_ade20k_m2f.pth"
    assert r.config_url == "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitg14/dinov2_vitg14_ade20k_m2f_config.py"
    assert r.reconstructed
    result = runner.invoke(app, ["info", "--presets"])
    assert result.exit_code == 0, result.output
    assert any(NAME in line and "(reconstruction)" in line for line in result.output.splitlines())


def test_info_on_the_official_file_names_the_family_and_what_it_assumed(tmp_path):
    result = runner.invoke(app, ["info", str(CHECKPOINT)])
    assert result.exit_code == 0, result.output
    assert "dinov2_adapter" in result.output and "swiglu FFN" in result.output
    assert "spec read from the config inside the checkpoint" in result.output
    # without its config text the spec comes from the weights, and the notes say what was assumed
    state = torch.load(CHECKPOINT, weights_only=True)["state_dict"]
    torch.save({"state_dict": state}, tmp_path / "bare.pth")
    result = runner.invoke(app, ["info", str(tmp_path / "bare.pth")])
    assert result.exit_code == 0, result.output
    assert "dinov2_adapter" in result.output and "num_heads=4" in result.output
    assert "inferred from the weights" in result.output


@pytest.fixture
def mini_preset(monkeypatch):
    """The release's preset shrunk to the mini weights (building the real ViT-g takes minutes on this CPU)."""
    monkeypatch.setitem(SPEC_PRESETS, NAME, load_model(CHECKPOINT).spec.to_dict())


def test_info_with_the_reconstructed_preset_says_so(mini_preset):
    result = runner.invoke(app, ["info", str(CHECKPOINT), "--spec", NAME])
    assert result.exit_code == 0, result.output
    assert f"the preset {NAME} is a reconstruction" in result.output


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """The release's two files served on 127.0.0.1: the mini checkpoint and a config text whose slide stride differs
    from the one inside the checkpoint, so that which of the two made the spec shows."""
    config = torch.load(CHECKPOINT, weights_only=True)["meta"]["config"]
    assert "stride=(128, 128)" in config
    served = config.replace("stride=(128, 128)", "stride=(96, 96)")
    server = Server({f"{NAME}.pth": CHECKPOINT.read_bytes(), f"{NAME}_config.py": served.encode()})
    monkeypatch.setenv("VITSEG_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("VITSEG_ZOO_MIRROR", server.url)
    yield server, tmp_path / "cache" / NAME
    server.stop()


def test_zoo_fetches_checkpoint_and_config_and_reads_the_spec_from_the_config(mirror):
    server, folder = mirror
    model = load_model(NAME)
    assert model.spec.model.backbone.type == "dinov2_adapter"
    assert tuple(model.spec.test.stride) == (96, 96)  # the served config, not the one inside the checkpoint
    assert (folder / f"{NAME}.pth").is_file() and (folder / f"{NAME}_config.py").is_file()
    assert (folder / f"{NAME}_config.py.sha256").is_file() and (folder / f"{NAME}.safetensors").is_file()
    assert f"{NAME}_config.py" in model.source
    assert len(server.requests) == 2
    load_model(NAME)  # converted once: later loads fetch nothing
    assert len(server.requests) == 2


def test_zoo_name_predicts_the_official_mask(mirror, tmp_path):
    server, folder = mirror
    server.files[f"{NAME}_config.py"] = torch.load(CHECKPOINT, weights_only=True)["meta"]["config"].encode()
    out = tmp_path / "out"
    result = runner.invoke(app, ["predict", str(PARITY / "mini_dinov2_m2f_image.png"), "--weights", NAME, "--out",
                                 str(out), "--workers", "0", "--save", "masks"])
    assert result.exit_code == 0, result.output
    mask = read_label(out / "masks" / "mini_dinov2_m2f_image.png")
    assert (mask == read_label(PARITY / "mini_dinov2_m2f_expected_mask.png")).mean() >= 0.999


def test_a_refused_config_falls_back_to_the_preset_and_says_so(mirror, mini_preset):
    server, folder = mirror
    server.files[f"{NAME}_config.py"] = b"import os\n"  # never run: the safe reader refuses it
    result = runner.invoke(app, ["info", NAME])
    assert result.exit_code == 0, result.output
    assert f"{NAME}_config.py was not used" in result.output and "Import statement" in result.output
    assert f"the preset {NAME}, a reconstruction" in result.output
    assert tuple(load_model(NAME).spec.test.stride) == (128, 128)


def _finetune_spec(path: Path, **backbone) -> Path:
    spec = load_model(CHECKPOINT).spec.to_dict()
    spec["model"]["num_classes"] = 6
    spec["model"]["backbone"].update(drop_path_rate=0.0, **backbone)
    spec["model"]["decode_head"]["loss"]["num_points"] = 256
    spec["data"].update(classes=None, palette=None)
    spec["train"].update(scale=[64, 64], crop_size=[64, 64], warmup_iters=1, batch_size=2, workers=0,
                         photometric=False, lr=1e-3)
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture(scope="module")
def finetune_data(tmp_path_factory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("dinov2_ft") / "data", 4, 1, size=(64, 64))


@pytest.mark.parametrize("unfreeze", [False, True])
def test_finetuning_keeps_the_vit_frozen_unless_unfrozen(tmp_path, finetune_data, unfreeze):
    spec = _finetune_spec(tmp_path / "spec.yaml")
    out = tmp_path / "run"
    res = vitseg("--spec", spec, "--data", finetune_data, "--out", out, "--iters", 1, "--logger", "none",
                 "--init-from", CHECKPOINT, *(["--unfreeze"] if unfreeze else []))
    assert res.exit_code == 0, res.output
    assert "predicts 12 classes, this model 6" in res.output
    before = torch.load(CHECKPOINT, weights_only=True)["state_dict"]
    after = load_file(out / "last.safetensors")
    vit = ["backbone.blocks.0.mlp.w1.weight", "backbone.blocks.7.attn.qkv.weight", "backbone.pos_embed",
           "backbone.cls_token", "backbone.patch_embed.proj.weight"]
    moved = [k for k in vit if not torch.equal(after[k], before[k])]
    assert moved == (vit if unfreeze else [])
    assert not torch.equal(after["backbone.spm.fc1.weight"], before["backbone.spm.fc1.weight"])  # the adapter trains


def test_unfrozen_vit_gets_layer_decay(tmp_path):
    model = build_model(load_spec(_finetune_spec(tmp_path / "spec.yaml", freeze_vit=False)))
    groups = {name: g for g in param_groups(model, 1.0, 0.05, 0.9) for name in g["param_names"]}
    top = model.num_layers  # depth + 1 = 9 for the mini
    assert groups["backbone.blocks.0.mlp.w1.weight"]["lr_scale"] == pytest.approx(0.9 ** (top - 1))
    assert groups["backbone.cls_token"]["lr_scale"] == pytest.approx(0.9 ** top)
    assert groups["backbone.cls_token"]["weight_decay"] == 0.0
    assert groups["backbone.spm.fc1.weight"]["lr_scale"] == pytest.approx(1.0)
    frozen = build_model(load_spec(_finetune_spec(tmp_path / "frozen.yaml")))
    names = {name for g in param_groups(frozen, 1.0, 0.05, 0.9) for name in g["param_names"]}
    assert not any(n.startswith(("backbone.blocks.", "backbone.patch_embed.")) for n in names)
    assert "backbone.pos_embed" not in names and "backbone.level_embed" in names
