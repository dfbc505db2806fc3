"""The `<name>_ms` presets hold each release's official multi-scale + flip test, and `--tta` selects it."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from conftest import PARITY
from vitseg_cli.cli import app
from vitseg_cli.commands.common import tta_overrides
from vitseg_cli.errors import VitsegError
from vitseg_cli.releases.ms_presets import MS_TESTS, tta_test
from vitseg_cli.releases import RELEASES
from vitseg_cli.spec import load_spec, with_overrides

R6 = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
# From czczup/ViT-Adapter segmentation/configs/<dataset>/<name>_ms.py (img_scale, img_ratios, the SETR_Resize
# crop_size or the PadShortSide size), and test.py --aug-test (ratios 0.5..1.75 + flip on the single-scale
# pipeline) for the UperNet releases with no _ms config: (img_scale, ratios, rule, min short side, divisor, pad).
EXPECTED = {
    "upernet_deit_adapter_tiny_512_160k_ade20k": ((2048, 512), R6, "mmseg", None, 32, None),
    "upernet_deit_adapter_small_512_160k_ade20k": ((2048, 512), R6, "mmseg", None, 32, None),
    "upernet_deit_adapter_base_512_160k_ade20k": ((2048, 512), R6, "mmseg", None, 32, None),
    "upernet_augreg_adapter_tiny_512_160k_ade20k": ((2048, 512), R6, "mmseg", None, 32, None),
    "upernet_augreg_adapter_base_512_160k_ade20k": ((2048, 512), R6, "mmseg", None, 32, None),
    "upernet_augreg_adapter_large_512_160k_ade20k": ((2048, 512), R6, "mmseg", None, 32, None),
    "upernet_uniperceiver_adapter_large_512_160k_ade20k": ((2048, 512), R6, "mmseg", None, 32, None),
    "upernet_beit_adapter_large_640_160k_ade20k": ((2048, 640), R6, "setr", 640, None, None),
    "mask2former_beit_adapter_large_640_160k_ade20k": ((2048, 640), R6, "setr", 640, None, None),
    "mask2former_beit_adapter_large_896_80k_ade20k": ((3584, 896), [640 / 896, 768 / 896, 1.0], "mmseg", None, 32,
                                                      896),
    "mask2former_beitv2_adapter_large_896_80k_ade20k": ((3584, 896), [800 / 896, 832 / 896, 864 / 896, 1.0],
                                                        "mmseg", None, 32, 896),
    "mask2former_beit_adapter_large_896_80k_cityscapes": ((2048, 1024), R6 + [2.0], "setr", 896, None, None),
    "mask2former_beit_adapter_base_512_40k_cocostuff10k": ((2048, 512), R6, "setr", 512, None, None),
    "upernet_beit_adapter_large_512_80k_cocostuff10k": ((2048, 512), R6, "setr", 512, None, None),
    "mask2former_beit_adapter_large_512_40k_cocostuff10k": ((2048, 512), R6, "setr", 512, None, None),
    "upernet_beit_adapter_large_640_80k_cocostuff164k": ((2560, 640), R6, "setr", 640, None, None),
    "mask2former_beit_adapter_large_896_80k_cocostuff164k": ((3584, 896), [640 / 896, 768 / 896, 1.0], "mmseg", None,
                                                             32, 896),
    "mask2former_beit_adapter_base_480_40k_pascal_context_59": ((4096, 520), R6, "setr", 480, None, None),
    "upernet_beit_adapter_large_480_80k_pascal_context_59": ((4096, 520), R6, "setr", 480, None, None),
    "mask2former_beit_adapter_large_480_40k_pascal_context_59": ((4096, 520), R6, "setr", 480, None, None),
}
NO_MS = {"mask2former_beit_adapter_large_896_80k_mapillary", "mask2former_beitv2_adapter_large_896_80k_cocostuff164k"}


def test_every_release_has_its_ms_preset_or_none():
    assert set(MS_TESTS) == {r.name for r in RELEASES} == set(EXPECTED) | NO_MS
    for release in RELEASES:
        assert (release.name in NO_MS) == (release.miou_ms is None)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_ms_preset_is_the_official_multi_scale_test(name):
    scale, ratios, rule, min_short, divisor, pad = EXPECTED[name]
    ss, ms = load_spec(name), load_spec(name + "_ms")
    t = ms.test
    assert (tuple(t.resize.scale), t.scales, t.flip, t.resize_rule, t.min_short_side, t.resize.size_divisor,
            t.pad_short_side) == (scale, ratios, True, rule, min_short, divisor, pad)
    assert t.crop_pad == (pad is not None)  # the PadShortSide configs' segmentor is EncoderDecoderMask2FormerAug
    # only the BEiTv2 ADE20K config puts PadShortSide after Normalize
    assert t.pad_normalized == (name == "mask2former_beitv2_adapter_large_896_80k_ade20k")
    # everything else is the single-scale preset's
    assert (t.mode, t.crop_size, t.stride) == (ss.test.mode, ss.test.crop_size, ss.test.stride)
    assert ms.model == ss.model and ms.data == ss.data


def test_tta_selects_the_ms_test_for_a_zoo_name_or_a_preset():
    name = "mask2former_beit_adapter_large_640_160k_ade20k"
    want = load_spec(name + "_ms").test.model_dump(mode="json")
    for weights, spec in ((name, None), (None, name), (None, name + "_ms"), ("model.safetensors", name)):
        assert load_spec(name).updated(test=tta_test(weights, spec)).test.model_dump(mode="json") == want
    pairs = tta_overrides(True, None, name, ["test.stride=[400, 400]"])
    test = with_overrides(load_spec(name), pairs).test
    assert test.resize_rule == "setr" and test.scales == R6 and list(test.stride) == [400, 400]  # --set wins
    assert tta_overrides(False, None, name, ["a=1"]) == ["a=1"]


def test_tta_errors_clearly():
    with pytest.raises(VitsegError, match="no official multi-scale test"):
        tta_test("mask2former_beit_adapter_large_896_80k_mapillary", None)
    with pytest.raises(VitsegError, match="give a zoo name as --weights or an official preset as --spec"):
        tta_test("my_model.safetensors", "nano")


def test_cli_tta_without_a_release_is_one_error(tmp_path):
    result = CliRunner().invoke(app, ["predict", str(PARITY / "mini_full_image.png"), "--tta", "--out",
                                      str(tmp_path / "out"), "--workers", "0"])
    assert result.exit_code == 2 and "--tta selects a release's official multi-scale" in result.output
    assert not (tmp_path / "out").exists()
    result = CliRunner().invoke(app, ["zoo", "upernet_beit_adapter_large_640_160k_ade20k"])
    assert "preset upernet_beit_adapter_large_640_160k_ade20k_ms" in result.output
