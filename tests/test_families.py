"""Model families: every registered one meets the backbone/head contract, and a new head added from outside the
package (one module + its config module + one `register_head` call) works end to end with nothing else edited."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from vitseg_cli.loading import load_model, save_model
from vitseg_cli.cli import app
from vitseg_cli.data.io import read_image, write_image
from vitseg_cli.data.synth import make_synthetic
from vitseg_cli.errors import VitsegError
from vitseg_cli.model.contracts import Backbone, Head
from vitseg_cli.model.registry import BACKBONES, HEADS, VIT_ADAPTER, register_head, unregister
from vitseg_cli.model.segmentor import build_model
from vitseg_cli.presets import SPEC_PRESETS
from vitseg_cli.spec import spec_from_dict

runner = CliRunner()
SIDE = 64


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_meets_the_contract(name):
    family = BACKBONES[name]
    torch.manual_seed(0)
    module = family.build(family.config_cls.model_validate(family.tiny)).eval()
    assert isinstance(module, Backbone), f"{name}: {type(module).__name__} lacks a member of the Backbone protocol"
    assert tuple(module.out_strides) == (4, 8, 16, 32) and len(module.out_channels) == 4
    side = module.fixed_input_size or (module.size_divisor * 2, module.size_divisor * 2)
    with torch.no_grad():
        feats = module(torch.randn(1, 3, *side))
    assert [f.shape[1] for f in feats] == list(module.out_channels)
    assert [tuple(f.shape[-2:]) for f in feats] == [(side[0] // s, side[1] // s) for s in module.out_strides]
    ids = {module.layer_id(n) for n, _ in module.named_parameters()}
    assert min(ids) >= 0 and max(ids) == module.num_layers  # adapter modules at the top layer's id
    assert any(module.no_weight_decay(n, p) for n, p in module.named_parameters())


@pytest.mark.parametrize("name", sorted(HEADS))
def test_every_head_meets_the_contract(name):
    family = HEADS[name]
    torch.manual_seed(0)
    classes = 3
    module = family.build(family.config_cls.model_validate(family.tiny), [32] * 4, classes)
    assert isinstance(module, Head), f"{name}: {type(module).__name__} lacks a member of the Head protocol"
    feats = [torch.randn(2, 32, SIDE // s, SIDE // s) for s in (4, 8, 16, 32)]
    module.eval()
    with torch.no_grad():
        scores = module(feats)
    assert scores.shape[:2] == (2, classes)
    if "decode_head" in family.roles:  # an auxiliary head scores the level it reads
        assert tuple(scores.shape[-2:]) == (SIDE // 4, SIDE // 4)
    module.train()
    target = torch.randint(0, classes, (2, SIDE, SIDE))
    target[:, :4] = 255
    losses = module.loss(feats, target, 255)
    assert losses and all(v.ndim == 0 and math.isfinite(float(v.detach())) for v in losses.values())
    sum(losses.values()).backward()


def test_family_config_modules_import_no_torch():
    code = ("import sys, vitseg_cli.spec, vitseg_cli.model.registry, vitseg_cli.presets\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


TOY_CONFIG = '''
"""A head family from outside vitseg: its torch-free config module."""
from typing import Literal

from pydantic import Field

from vitseg_cli.model.registry import Family
from vitseg_cli.spec_base import HeadConfig


class ToyHeadConfig(HeadConfig):
    type: Literal["toy"] = "toy"
    scale: float = Field(1.0, gt=0)


FAMILY = Family(name="toy", config_cls=ToyHeadConfig, build="toy_head:build", label="ToyHead",
                tiny={"type": "toy"})
'''

TOY_HEAD = '''
"""A head family from outside vitseg: its torch module (a 1x1 classifier on the 1/4 features)."""
import math

import torch.nn.functional as F
from torch import nn


class ToyHead(nn.Module):
    class_layers = ("classifier.",)

    def __init__(self, scale, in_channels, num_classes):
        super().__init__()
        self.scale = scale
        self.classifier = nn.Conv2d(in_channels[0], num_classes, 1)

    def forward(self, feats):
        return self.classifier(feats[0]) * self.scale

    def loss(self, feats, target, ignore_index):
        h, w = target.shape[-2:]
        logits = self(feats)[..., :math.ceil(h / 4), :math.ceil(w / 4)]
        logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        return {"loss_ce": F.cross_entropy(logits, target, ignore_index=ignore_index)}


def build(section, in_channels, num_classes):
    return ToyHead(section.scale, in_channels, num_classes)
'''


@pytest.fixture
def toy_family(tmp_path, monkeypatch):
    package = tmp_path / "toy_pkg"
    package.mkdir()
    (package / "toy_head_config.py").write_text(textwrap.dedent(TOY_CONFIG))
    (package / "toy_head.py").write_text(textwrap.dedent(TOY_HEAD))
    monkeypatch.syspath_prepend(str(package))
    import toy_head_config

    register_head(toy_head_config.FAMILY)
    yield toy_head_config.FAMILY
    unregister("toy")
    for name in ("toy_head_config", "toy_head"):
        sys.modules.pop(name, None)


def _toy_spec() -> dict:
    return {"model": {"backbone": VIT_ADAPTER.tiny, "decode_head": {"type": "toy", "scale": 2.0}, "num_classes": 6},
            "test": {"resize": None, "mode": "whole"},
            "train": {"scale": [SIDE, SIDE], "crop_size": [SIDE, SIDE], "warmup_iters": 1, "batch_size": 2,
                      "workers": 0, "photometric": False, "amp": False}}


def test_a_head_registered_from_outside_works_end_to_end(toy_family, tmp_path, monkeypatch):
    spec = spec_from_dict(_toy_spec())
    assert type(spec.model.decode_head) is toy_family.config_cls and spec.model.decode_head.scale == 2.0
    with pytest.raises(VitsegError, match=r"model\.decode_head\.scal: unknown key \(did you mean scale\?\)"):
        spec_from_dict({"model": {"decode_head": {"type": "toy", "scal": 1}}})
    with pytest.raises(VitsegError, match=r"unknown type .tooy. \(did you mean toy\?\) \(allowed: upernet, .*toy\)"):
        spec_from_dict({"model": {"decode_head": {"type": "tooy"}}})

    monkeypatch.setitem(SPEC_PRESETS, "toy_tiny", _toy_spec())
    listing = runner.invoke(app, ["info", "--presets"])
    assert listing.exit_code == 0, listing.output
    assert any("toy_tiny" in line and "ToyHead" in line for line in listing.output.splitlines())

    model = build_model(spec)
    weights = tmp_path / "toy.safetensors"
    save_model(model, weights)
    loaded = load_model(weights)
    assert loaded.spec.model == spec.model and type(loaded.decode_head).__name__ == "ToyHead"
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())

    image = tmp_path / "in" / "a.png"
    image.parent.mkdir()
    write_image(image, np.random.default_rng(0).integers(0, 255, (48, 80, 3), dtype=np.uint8))
    res = runner.invoke(app, ["predict", str(image), "--weights", str(weights), "--out", str(tmp_path / "out"),
                              "--save", "masks", "--quiet", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    masks = list((tmp_path / "out").rglob("*.png"))
    assert len(masks) == 1
    mask = read_image(masks[0])
    assert mask.shape[:2] == (48, 80) and int(mask.max()) < 6

    data = make_synthetic(tmp_path / "data", 4, 0, size=(SIDE, SIDE))
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(_toy_spec()))
    run = tmp_path / "run"
    res = runner.invoke(app, ["train", "--quiet", "--spec", str(spec_file), "--data", str(data), "--format",
                              "folder", "--out", str(run), "--iters", "3", "--log-every", "1", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    with open(run / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["iter"]) for r in rows] == [1, 2, 3] and all(math.isfinite(float(r["loss"])) for r in rows)
    assert type(load_model(run / "last.safetensors").decode_head).__name__ == "ToyHead"
