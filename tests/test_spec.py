"""The YAML spec: presets fill fields, overrides win, bad input names the key path."""

from __future__ import annotations

import pytest

from vitseg_cli.errors import VitsegError
from vitseg_cli.data.classes import default_palette
from vitseg_cli.spec import load_spec


def test_preset_fills_official_numbers():
    spec = load_spec("base")
    b = spec.model.backbone
    assert (b.embed_dim, b.depth, b.num_heads, b.deform_num_heads, b.deform_ratio) == (768, 12, 12, 12, 0.5)
    assert spec.model.decode_head.channels == 512 and spec.model.num_classes == 150
    large = load_spec("large").model.backbone
    assert large.interaction_indexes[-1] == (18, 23) and large.drop_path_rate == 0.4


def test_yaml_overrides_preset(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("preset: tiny\nmodel:\n  num_classes: 19\n  backbone: {drop_path_rate: 0.3}\n")
    spec = load_spec(path)
    assert spec.model.num_classes == 19
    assert spec.model.backbone.drop_path_rate == 0.3
    assert spec.model.backbone.embed_dim == 192  # still from the preset


@pytest.mark.parametrize("text, fragment", [
    ("model:\n  backbone: {embed_dm: 3}\n", "model.backbone.embed_dm: unknown key"),
    ("test: {mode: tiles}\n", "test.mode"),
    ("model: {num_classes: -1}\n", "model.num_classes"),
    ("model:\n  backbone: {embed_dim: 100, num_heads: 3}\n", "not divisible by num_heads"),
    ("preset: huge\n", "unknown preset 'huge'"),
    ("model: [1, 2\n", "not valid YAML"),
    ("model: {num_classes: 2}\ndata: {classes: [a, b, c]}\n", "data.classes has 3 names"),
])
def test_bad_specs_name_the_problem(tmp_path, text, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(VitsegError) as err:
        load_spec(path)
    message = str(err.value)
    assert fragment in message and str(path) in message and "\n" not in message


def test_missing_spec_file_is_a_clear_error(tmp_path):
    with pytest.raises(VitsegError, match="spec file not found"):
        load_spec(tmp_path / "nope.yaml")


def test_spec_round_trips_through_yaml(tmp_path):
    spec = load_spec("nano")
    path = tmp_path / "nano.yaml"
    path.write_text(spec.to_yaml())
    assert load_spec(path) == spec


def test_default_palette_is_the_voc_palette():
    # first entries of the PASCAL VOC colour map, as published with the dataset
    assert default_palette(4) == [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0)]
    assert len(set(default_palette(256))) == 256
