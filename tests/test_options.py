"""One vocabulary across the commands: sizes written WxH (or N for a square) everywhere, the dataset given as --data in
eval and train, predicted masks as --pred in eval and visualize, -f always the dataset format, one default-marker style,
help texts that are current, and an unknown --spec that suggests a preset without listing them all."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from vitseg_cli.cli import app
from vitseg_cli.data.io import write_image

runner = CliRunner()
ROOT = typer.main.get_command(app)


def _commands(group=ROOT, path=()):
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _commands(command, (*path, name))
        else:
            yield " ".join((*path, name)), command


def _options(command):
    return [p for p in command.params if p.param_type_name == "option" and not p.hidden]


def test_every_size_option_takes_wxh():
    sizes = {}
    for name, command in _commands():
        for option in _options(command):
            if {"--size", "--crop-size", "--stride", "--height", "--width"} & set(option.opts):
                sizes[f"{name} {option.opts[0]}"] = option.metavar
    assert sizes == {"predict --crop-size": "WxH", "predict --stride": "WxH", "eval --crop-size": "WxH",
                     "eval --stride": "WxH", "train --crop-size": "WxH", "export --size": "WxH",
                     "data synth --size": None}, sizes  # synth's own help says WxH


def test_sizes_are_width_by_height_or_one_number():
    from vitseg_cli.commands.common import parse_size
    from vitseg_cli.errors import VitsegError

    assert parse_size("640x480", "--size") == (480, 640)  # (height, width), the spec's order
    assert parse_size("512", "--size") == (512, 512) and parse_size(None, "--size") is None
    for bad in ("0x4", "axb", "1x2x3", "", "15", "-4"):
        with pytest.raises(VitsegError, match="WxH"):
            parse_size(bad, "--crop-size", minimum=16)


def test_predict_slides_windows_given_as_wxh(tmp_path):
    write_image(tmp_path / "in" / "a.png", np.zeros((40, 60, 3), np.uint8))
    res = runner.invoke(app, ["predict", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--mode", "slide",
                              "--crop-size", "48x32", "--stride", "24x16", "--device", "cpu", "--workers", "0",
                              "--save", "masks", "-q"])
    assert res.exit_code == 0, res.output
    settings = json.loads((tmp_path / "o" / "predict.json").read_text())["settings"]
    assert settings["crop_size"] == [32, 48] and settings["stride"] == [16, 24]


def test_export_size_and_its_old_spelling():
    from vitseg_cli.commands.export import _input_size
    from vitseg_cli.errors import VitsegError

    assert _input_size("320x240", None, None) == (240, 320) and _input_size(None, None, None) == (512, 512)
    assert _input_size(None, 128, None) == (128, 512)  # the hidden --height/--width still work
    with pytest.raises(VitsegError, match="old spelling of --size"):
        _input_size("64", 64, None)


def test_train_crop_size_wxh_reaches_the_spec():
    from vitseg_cli.engine.train import TrainOptions, cli_overrides

    assert cli_overrides(TrainOptions(out=None, crop_size=(24, 32)))["crop_size"] == [24, 32]
    res = runner.invoke(app, ["train", "--out", "x", "--crop-size", "8x8", "--data", "nowhere"])
    assert res.exit_code == 2 and "--crop-size '8x8'" in res.output and "at least 16" in res.output


def test_the_dataset_is_data_in_eval_and_train(tmp_path):
    for command in ("eval", "train"):
        data = next(p for p in _options(dict(_commands())[command]) if "--data" in p.opts)
        assert data.opts == ["--data", "-d"]
    missing = tmp_path / "nowhere"
    res = runner.invoke(app, ["eval", "--data", str(missing), "--out", str(tmp_path / "e")])
    assert res.exit_code == 2 and f"{missing}: dataset folder not found" in res.output
    old = runner.invoke(app, ["eval", str(missing), "--out", str(tmp_path / "e")])  # the hidden old spelling
    assert old.exit_code == 2 and f"{missing}: dataset folder not found" in old.output
    both = runner.invoke(app, ["eval", str(missing), "--data", str(missing)])
    assert both.exit_code == 2 and "give only --data" in both.output


def test_predicted_masks_are_pred_in_eval_and_visualize(tmp_path):
    for command in ("eval", "visualize"):
        assert any("--pred" in p.opts for p in _options(dict(_commands())[command]))
    write_image(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8))
    res = runner.invoke(app, ["visualize", str(tmp_path / "a.png"), "--pred", str(tmp_path / "none")])
    assert res.exit_code == 2 and f"--pred {tmp_path / 'none'}: folder not found" in res.output
    old = runner.invoke(app, ["visualize", str(tmp_path / "a.png"), "-m", str(tmp_path / "none")])
    assert old.exit_code == 2 and "folder not found" in old.output


def test_short_f_is_the_dataset_format_everywhere():
    with_f = {name: option for name, command in _commands() for option in _options(command) if "-f" in option.opts}
    assert set(with_f) == {"eval", "train"}
    assert all(o.opts[0] == "--format" and o.help.lower().startswith("dataset") for o in with_f.values())


def test_train_help_is_current():
    res = runner.invoke(app, ["train", "--help"])
    text = " ".join(res.output.split())
    assert "ViT-Adapter + UperNet" not in text and "Mask2Former" in text
    assert "nano_mask2former" in text and "vitseg info --presets" in text


def test_one_default_marker_style():
    for name, command in _commands():
        for option in _options(command):
            help_text = option.help or ""
            assert "(default" not in help_text.lower() and "Default:" not in help_text, (name, option.opts)
            for marker in re.findall(r" \[([^\]]*)\]", help_text):
                assert marker.startswith("default: "), (name, option.opts, marker)
            if "[default: " in help_text:  # written out: click must not add a second one
                assert option.default is None or option.show_default is False, (name, option.opts)


def test_workers_help_states_the_default_it_uses():
    from vitseg_cli.commands.common import default_workers

    for command in ("predict", "eval"):
        res = runner.invoke(app, [command, "--help"])
        text = " ".join(res.output.split())
        at = text.index("--workers")
        shown = text[at:text.index("--", at + 10)]
        assert f"[default: all cores but two, at most 4; here {default_workers()}]" in shown, shown
        assert shown.count("default") == 1


def test_unknown_spec_suggests_and_points_to_the_preset_list(tmp_path):
    write_image(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8))
    res = runner.invoke(app, ["predict", str(tmp_path), "--spec", "nanoo", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    line = res.output.strip()
    assert "\n" not in line and "did you mean nano" in line and "vitseg info --presets" in line
    assert "upernet_deit_adapter_tiny_512_160k_ade20k" not in line and line.count(",") < 3
