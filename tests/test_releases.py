"""The table of official releases, their whole-spec presets, the dataset class lists and `vitseg info --presets`."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from vitseg_cli.cli import app
from vitseg_cli.data.classes import builtin_classes
from vitseg_cli.errors import VitsegError
from vitseg_cli.releases.presets import OFFICIAL_PRESETS
from vitseg_cli.releases import RELEASES, release
from vitseg_cli.spec import SPEC_PRESETS, load_spec

# Rows of the official segmentation README, copied by hand: name -> (crop, mIoU ss, mIoU ms, #Param, classes).
README_ROWS = {
    "upernet_deit_adapter_tiny_512_160k_ade20k": (512, 42.6, 43.6, "36M", 150),
    "upernet_augreg_adapter_large_512_160k_ade20k": (512, 53.4, 54.4, "364M", 150),
    "mask2former_beit_adapter_large_896_80k_ade20k": (896, 59.4, 60.5, "571M", 150),
    "mask2former_beit_adapter_large_896_80k_cityscapes": (896, 84.9, 85.8, "571M", 19),
    "mask2former_beit_adapter_base_512_40k_cocostuff10k": (512, 50.0, 50.5, "120M", 171),
    "mask2former_beitv2_adapter_large_896_80k_cocostuff164k": (896, 52.3, None, "571M", 171),
    "upernet_beit_adapter_large_480_80k_pascal_context_59": (480, 67.0, 67.5, "451M", 59),
}


def test_twenty_two_releases_each_with_its_preset():
    names = [r.name for r in RELEASES]
    assert len(names) == 22 == len(set(names))
    assert set(names) == set(OFFICIAL_PRESETS) and set(names) <= set(SPEC_PRESETS)
    assert {"tiny", "small", "base", "large", "nano"} <= set(SPEC_PRESETS)  # the old presets stay
    for r in RELEASES:
        assert r.method in ("UperNet", "Mask2Former") and r.name.startswith(r.method.lower())
        assert r.url.startswith("https://github.com/czczup/ViT-Adapter/releases/download/v0.")
        assert r.url.endswith((".pth", ".pth.tar", ".zip")) and r.params.endswith("M")
        assert f"_{r.crop_size}_" in r.name and f"_{r.lr_schedule}_" in r.name


@pytest.mark.parametrize("name", sorted(README_ROWS))
def test_release_rows_match_the_readme(name):
    crop, ss, ms, params, classes = README_ROWS[name]
    r = release(name)
    assert (r.crop_size, r.miou_ss, r.miou_ms, r.params) == (crop, ss, ms, params)
    s = load_spec(name)
    assert s.model.num_classes == classes == len(s.class_names) == len(s.palette)


@pytest.mark.parametrize("name", sorted(OFFICIAL_PRESETS))
def test_every_official_preset_is_a_valid_spec_of_its_release(name):
    r, s = release(name), load_spec(name)
    head = s.model.decode_head
    assert head.type == r.method.lower() and (s.model.auxiliary_head is not None) == (head.type == "upernet")
    assert s.test.mode == "slide" and s.test.crop_size == (r.crop_size, r.crop_size)
    if s.model.backbone.type == "beit_adapter":  # the relative position bias is made for exactly the crop
        assert tuple(s.model.backbone.img_size) == (r.crop_size, r.crop_size)
    assert s.data.classes is not None and s.test.resize is not None and s.test.resize.keep_ratio


def test_presets_hold_the_official_test_pipelines():
    """Values read by hand from the official configs (merged with their _base_ files)."""
    cityscapes = load_spec("mask2former_beit_adapter_large_896_80k_cityscapes")
    assert cityscapes.test.resize.scale == (2048, 1024) and cityscapes.test.resize.size_divisor is None
    assert cityscapes.test.stride == (512, 512) and not cityscapes.data.reduce_zero_label
    pascal = load_spec("mask2former_beit_adapter_base_480_40k_pascal_context_59")
    assert pascal.test.resize.scale == (4096, 520) and pascal.test.stride == (320, 320)
    assert pascal.data.reduce_zero_label and pascal.model.decode_head.feat_channels == 256
    ade = load_spec("mask2former_beitv2_adapter_large_896_80k_ade20k")
    assert ade.test.flip and ade.test.resize.scale == (3584, 896) and ade.model.decode_head.num_queries == 200
    augreg = load_spec("upernet_augreg_adapter_large_512_160k_ade20k")
    assert augreg.data.mean == (127.5, 127.5, 127.5) and augreg.model.backbone.pretrain_size == 384
    assert augreg.model.decode_head.channels == 512
    assert load_spec("upernet_beit_adapter_large_640_80k_cocostuff164k").test.resize.scale == (2560, 640)
    assert load_spec("upernet_beit_adapter_large_512_80k_cocostuff10k").data.reduce_zero_label
    assert not load_spec("mask2former_beit_adapter_large_896_80k_cocostuff164k").data.reduce_zero_label


def test_unknown_release_suggests_the_closest_names():
    with pytest.raises(VitsegError) as err:
        release("mask2former_beit_adapter_large_896_80k_ade")
    assert "did you mean mask2former_beit_adapter_large_896_80k_ade20k" in str(err.value)
    with pytest.raises(VitsegError, match="vitseg zoo"):
        release("resnet50")


def test_dataset_class_lists():
    names, palette = builtin_classes("pascal_context")  # mmseg PascalContextDataset59
    assert len(names) == len(palette) == 59
    assert (names[0], names[-1], palette[0], palette[-1]) == ("aeroplane", "wood", (180, 120, 120), (31, 0, 255))
    names, palette = builtin_classes("mapillary")  # official ViT-Adapter MapillaryDataset
    assert len(names) == len(palette) == 66
    assert (names[0], names[-1], palette[0], palette[-1]) == ("Bird", "Unlabeled", (165, 42, 42), (0, 0, 0))
    for alias in ("coco_stuff10k", "coco_stuff164k", "coco-stuff"):
        names, palette = builtin_classes(alias)
        assert len(names) == len(set(palette)) == 171 and names[-1] == "wood"
    with pytest.raises(VitsegError, match="mapillary"):
        builtin_classes("mapilary")


def test_info_presets_lists_every_preset_with_its_release():
    result = CliRunner().invoke(app, ["info", "--presets"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    row = next(line for line in lines if "mask2former_beit_adapter_base_480_40k_pascal_context_59" in line)
    assert all(word in row for word in ("Mask2Former", "BEiT-Adapter-B", "pascal_context", "480"))
    assert all(any(name in line for line in lines) for name in SPEC_PRESETS)


def test_info_without_weights_or_presets_is_one_line():
    result = CliRunner().invoke(app, ["info"])
    assert result.exit_code == 2
    assert "--presets" in result.output and len(result.output.strip().splitlines()) == 1
