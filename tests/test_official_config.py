"""The config text inside official checkpoints: read safely (nothing runs) and translated into a vitseg spec."""

from __future__ import annotations

import json

import pytest
import torch

from vitseg_cli.model.official_config import ConfigRefused, parse_config_text, spec_from_config_text
from vitseg_cli.spec import spec_from_dict

# A ViT-Adapter-S + UperNet config written in mmseg's merged form, with the values of the official
# upernet_deit_adapter_small_512_160k_ade20k config and a test pipeline of our own choosing.
UPERNET_CONFIG = """
norm_cfg = dict(type='SyncBN', requires_grad=True)
crop_size = (512, 512)
model = dict(
    type='EncoderDecoder',
    pretrained='pretrained/deit_small_patch16_224-cd65a155.pth',
    backbone=dict(type='ViTAdapter', patch_size=16, embed_dim=384, depth=12, num_heads=6, mlp_ratio=4,
                  drop_path_rate=0.2, conv_inplane=64, n_points=4, deform_num_heads=6, cffn_ratio=0.25,
                  deform_ratio=1.0, interaction_indexes=[[0, 2], [3, 5], [6, 8], [9, 11]],
                  window_attn=[False] * 12, window_size=[None] * 12),
    decode_head=dict(type='UPerHead', in_channels=[384, 384, 384, 384], in_index=[0, 1, 2, 3],
                     pool_scales=(1, 2, 3, 6), channels=512, dropout_ratio=0.1, num_classes=150,
                     norm_cfg=norm_cfg, align_corners=False,
                     loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=dict(type='FCNHead', in_channels=384, in_index=2, channels=256, num_convs=1,
                        concat_input=False, dropout_ratio=0.1, num_classes=150, norm_cfg=norm_cfg,
                        align_corners=False,
                        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)),
    train_cfg=dict(),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MultiScaleFlipAug', img_scale=(2048, 512), img_ratios=[0.75, 1.0, 1.25], flip=True,
         transforms=[dict(type='Resize', keep_ratio=True), dict(type='ResizeToMultiple', size_divisor=32),
                     dict(type='RandomFlip'), dict(type='Normalize', **img_norm_cfg),
                     dict(type='ImageToTensor', keys=['img']), dict(type='Collect', keys=['img'])])]
data = dict(samples_per_gpu=2, test=dict(type='ADE20KDataset', data_root='data/ade', pipeline=test_pipeline))
"""


def test_upernet_config_becomes_the_spec_it_describes():
    spec, notes = spec_from_config_text(UPERNET_CONFIG)
    s = spec_from_dict(spec)
    b = s.model.backbone
    assert (b.type, b.embed_dim, b.depth, b.num_heads, b.deform_num_heads, b.deform_ratio) == (
        "vit_adapter", 384, 12, 6, 6, 1.0)
    assert b.pretrain_size == 224 and b.drop_path_rate == 0.2
    assert [list(p) for p in b.interaction_indexes] == [[0, 2], [3, 5], [6, 8], [9, 11]]
    assert (s.model.decode_head.type, s.model.decode_head.channels) == ("upernet", 512)
    aux = s.model.auxiliary_head
    assert (aux.channels, aux.in_index, aux.num_convs, aux.loss_weight) == (256, 2, 1, 0.4)
    assert s.model.num_classes == 150
    assert (s.test.mode, s.test.crop_size, s.test.stride) == ("slide", (512, 512), (341, 341))
    assert s.test.resize.scale == (2048, 512) and s.test.resize.keep_ratio and s.test.resize.size_divisor == 32
    assert s.test.flip is True and s.test.scales == [0.75, 1.0, 1.25]
    assert s.data.reduce_zero_label is True  # ADE20KDataset fixes it
    assert s.class_names[:3] == ["wall", "building", "sky"] and len(s.class_names) == 150
    assert notes == []


def test_the_test_run_by_mmseg_is_data_test_pipeline_not_the_top_level_name():
    """mmseg tests with data.test.pipeline; a config may rebind test_pipeline after data was built."""
    text = UPERNET_CONFIG + "test_pipeline = [dict(type='MultiScaleFlipAug', img_scale=(999, 99), transforms=[])]\n"
    spec, _ = spec_from_config_text(text)
    assert spec["test"]["resize"]["scale"] == [2048, 512]


def test_mini_mask2former_checkpoint_config_matches_its_independent_description(parity_dir):
    ckpt = torch.load(parity_dir / "mini_m2f_checkpoint.pth", map_location="cpu", weights_only=True)
    truth = json.loads((parity_dir / "mini_m2f_config.json").read_text())
    spec, notes = spec_from_config_text(ckpt["meta"]["config"])
    s = spec_from_dict(spec)
    b, want = s.model.backbone, truth["backbone"]
    assert b.type == "beit_adapter"
    for key in ("embed_dim", "depth", "num_heads", "mlp_ratio", "qkv_bias", "use_abs_pos_emb", "use_rel_pos_bias",
                "init_values", "n_points", "cffn_ratio", "deform_ratio", "drop_path_rate", "conv_inplane",
                "deform_num_heads"):
        assert getattr(b, key) == want[key], key
    assert list(b.img_size) == [want["img_size"]] * 2
    assert [list(p) for p in b.interaction_indexes] == want["interaction_indexes"]
    head, summary = s.model.decode_head, truth["head_summary"]
    assert head.type == "mask2former"
    assert (head.feat_channels, head.out_channels, head.num_queries) == (
        summary["feat_channels"], summary["out_channels"], summary["num_queries"])
    pixel = summary["pixel_decoder"]
    assert (head.pixel_decoder.num_layers, head.pixel_decoder.num_heads, head.pixel_decoder.num_points,
            head.pixel_decoder.feedforward_channels, head.pixel_decoder.num_groups) == (
        pixel["encoder_layers"], pixel["deform_attn_heads"], pixel["deform_attn_points"], pixel["ffn_channels"], 32)
    decoder = summary["transformer_decoder"]
    assert (head.transformer_decoder.num_layers, head.transformer_decoder.num_heads,
            head.transformer_decoder.feedforward_channels) == (decoder["layers"], decoder["heads"],
                                                               decoder["ffn_channels"])
    assert s.model.num_classes == truth["num_classes"] == summary["num_things_classes"] + summary["num_stuff_classes"]
    assert s.model.auxiliary_head is None
    test = truth["test"]
    assert (s.test.mode, list(s.test.crop_size), list(s.test.stride)) == (test["mode"], test["crop_size"],
                                                                          test["stride"])
    assert list(s.test.resize.scale) == test["img_scale"] and s.test.resize.keep_ratio == test["keep_ratio"]
    assert s.test.resize.size_divisor == test["size_divisor"] and s.test.flip == test["flip"]
    assert list(s.data.mean) == test["mean"] and list(s.data.std) == test["std"]
    # 7 classes are not COCO-Stuff's 171: the names come from the checkpoint's meta, and the reader says so
    assert s.data.classes is None and any("171 classes" in n for n in notes)


def test_literals_names_dict_calls_and_simple_arithmetic():
    names = parse_config_text(
        "_base_ = ['../x.py', os.path.join('a')]\n"  # never evaluated
        "'''a docstring'''\n"
        "a = dict(x=1, y=(2, 3.5), z=[None, True, 'text'])\n"
        "b = dict(w=-4, **a)\n"
        "n = 80 + 91\n"
        "w = [1.0] * n + [0.1]\n"
        "c = {'k': a, 1: 2}\n")
    assert "_base_" not in names
    assert names["b"] == {"w": -4, "x": 1, "y": (2, 3.5), "z": [None, True, "text"]}
    assert names["n"] == 171 and len(names["w"]) == 172 and names["w"][-1] == 0.1
    assert names["c"] == {"k": names["a"], 1: 2}


@pytest.mark.parametrize("text, reason", [
    ("import os\n", "Import statement is not allowed"),
    ("x = __import__('os').system('touch {marker}')\n", "a call of 'system'"),
    ("x = open('{marker}', 'w')\n", "a call of 'open'"),
    ("x = dict(a=print('hi'))\n", "a call of 'print'"),
    ("x = os.path\n", "attribute access"),
    ("x = ''.join(['a'])\n", "a call of 'join'"),
    ("f = lambda: 0\n", "a lambda"),
    ("x = [i for i in range(3)]\n", "a comprehension"),
    ("x = y\n", "name 'y' is not bound"),
    ("x = [1][0]\n", "indexing"),
    ("x = f'{{1}}'\n", "an f-string"),
    ("x = 10 ** 100000\n", "`**`"),
    ("def f():\n    pass\n", "FunctionDef statement"),
    ("for i in []:\n    pass\n", "For statement"),
    ("dict = 3\n", "rebinding `dict`"),
    ("x = [0] * 10 ** 9\n", "`**`"),
    ("x = [0] * 1000000000\n", "elements"),
    ("x = 'a' * 100000000\n", "elements"),
    ("x = 99999999999\nx = x * x\nx = x * x\nx = x * x\n", "integer beyond"),
    ("x = " + "[" * 60 + "]" * 60 + "\n", "nested more than"),
    ("x = " + "[" * 5000 + "]" * 5000 + "\n", "config text"),
    ("x = 1" + " + 1" * 100000 + "\n", "config text"),
    ("x = (1,\n", "not readable as Python"),
    ("x = b'bytes'\n", "bytes literal"),
])
def test_hostile_config_text_is_refused_without_running_anything(tmp_path, text, reason):
    marker = tmp_path / "ran"
    with pytest.raises(ConfigRefused) as err:
        parse_config_text(text.replace("{marker}", str(marker)))
    message = str(err.value)
    assert reason in message and "\n" not in message
    assert not marker.exists()


def test_values_built_from_names_stay_bounded():
    """Names would otherwise nest without limit, or share one list so often that reading it takes forever."""
    with pytest.raises(ConfigRefused, match="nested more than"):
        parse_config_text("x = []\n" + "x = [x]\n" * 100)
    with pytest.raises(ConfigRefused, match="elements"):
        parse_config_text("x = [0]\n" + "x = [x, x]\n" * 60)
    with pytest.raises(ConfigRefused, match="elements"):
        parse_config_text("x = [0] * 1000\n" + "y = [x] * 2000\n")


@pytest.mark.parametrize("old, new, reason", [
    ("type='ViTAdapter'", "type='SwinTransformer'", "model.backbone.type 'SwinTransformer'"),
    ("window_attn=[False] * 12", "window_attn=[True] * 12", "windowed attention"),
    ("type='UPerHead'", "type='PSPHead'", "model.decode_head.type 'PSPHead'"),
    ("in_channels=[384, 384, 384, 384]", "in_channels=[384, 384, 384, 768]", "in_channels"),
    ("concat_input=False", "concat_input=True", "concat_input"),
    ("to_rgb=True", "to_rgb=False", "to_rgb=False"),
    ("mode='slide'", "mode='sliding'", "test_cfg.mode"),
    ("num_heads=6, mlp_ratio", "num_heads=7, mlp_ratio", "not divisible"),  # the spec's own check, one line
    ("interaction_indexes=[[0, 2], [3, 5], [6, 8], [9, 11]],", "", "interaction_indexes is missing"),
])
def test_configs_vitseg_cannot_represent_are_refused_with_one_line(old, new, reason):
    assert old in UPERNET_CONFIG
    with pytest.raises(ConfigRefused) as err:
        spec_from_config_text(UPERNET_CONFIG.replace(old, new, 1))
    assert reason in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("old, new", [
    ("interaction_indexes=[[0, 2], [3, 5], [6, 8], [9, 11]]", "interaction_indexes=5"),
    ("interaction_indexes=[[0, 2], [3, 5], [6, 8], [9, 11]]", "interaction_indexes=[1, 2, 3, 4]"),
    ("pool_scales=(1, 2, 3, 6)", "pool_scales=6"),
    ("test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341))", "test_cfg=[1]"),
    ("transforms=[dict(type='Resize'", "transforms=[3, dict(type='Resize'"),
    ("data = dict(", "data = dict(test=5, x="),
])
def test_values_of_the_wrong_kind_are_refused_not_crashed_on(old, new):
    assert old in UPERNET_CONFIG
    with pytest.raises(ConfigRefused) as err:
        spec_from_config_text(UPERNET_CONFIG.replace(old, new, 1))
    assert "\n" not in str(err.value)


def test_official_defaults_fill_what_a_config_leaves_out():
    """A BEiTAdapter config without qkv_bias/init_values/deform_* gets the official class defaults, not vitseg's."""
    text = UPERNET_CONFIG.replace("type='ViTAdapter'", "type='BEiTAdapter', img_size=512").replace(
        "deform_num_heads=6, cffn_ratio=0.25,\n                  deform_ratio=1.0, ", "").replace(
        "window_attn=[False] * 12, window_size=[None] * 12", "use_rel_pos_bias=True")
    spec, _ = spec_from_config_text(text)
    b = spec["model"]["backbone"]
    assert b["type"] == "beit_adapter"
    assert (b["qkv_bias"], b["init_values"], b["deform_num_heads"], b["deform_ratio"]) == (False, 0.0, 6, 1.0)
