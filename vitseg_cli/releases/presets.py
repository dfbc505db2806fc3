"""Whole-spec presets for the 22 released official ViT-Adapter segmentation configs and DINOv2's ViT-Adapter
release (no torch import).

Each preset is named like its release (the config file stem without `_ss`/`_ms`) and holds, in vitseg's spec schema,
the model of that config, its official test pipeline (img_scale, keep_ratio, ResizeToMultiple, slide
crop/stride, flip) and its dataset's classes, palette, mean/std and reduce_zero_label. Read from
czczup/ViT-Adapter `segmentation/configs/<dataset>/*.py` merged with their `_base_` files (mmcv semantics: a child's
`test_pipeline` counts only where it also sets `data.test.pipeline`, which is why the Cityscapes release has no
ResizeToMultiple). `presets.py` adds them to `SPEC_PRESETS`.
"""

from __future__ import annotations

from typing import Any, Optional

from ..data.classes import (ADE20K_CLASSES, ADE20K_PALETTE, CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, COCO_STUFF_CLASSES,
                            PASCAL_CONTEXT_59_CLASSES, PASCAL_CONTEXT_59_PALETTE)

IMAGENET_NORM = {"mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]}
AUGREG_NORM = {"mean": [127.5, 127.5, 127.5], "std": [127.5, 127.5, 127.5]}  # the AugReg base/large configs

# Classes of each release's test data; a palette left out is the VOC colour map (spec.palette's default).
DATASETS: dict[str, dict[str, Any]] = {
    "ade20k": {"classes": ADE20K_CLASSES, "palette": ADE20K_PALETTE, "reduce_zero_label": True},
    "cityscapes": {"classes": CITYSCAPES_CLASSES, "palette": CITYSCAPES_PALETTE, "reduce_zero_label": False},
    "coco_stuff10k": {"classes": COCO_STUFF_CLASSES, "reduce_zero_label": True},
    "coco_stuff164k": {"classes": COCO_STUFF_CLASSES, "reduce_zero_label": False},
    "pascal_context": {"classes": PASCAL_CONTEXT_59_CLASSES, "palette": PASCAL_CONTEXT_59_PALETTE,
                       "reduce_zero_label": True},
}

_LARGE_INDEXES = [[0, 5], [6, 11], [12, 17], [18, 23]]
_BASE_INDEXES = [[0, 2], [3, 5], [6, 8], [9, 11]]
_ADAPTER = {"patch_size": 16, "mlp_ratio": 4.0, "conv_inplane": 64, "n_points": 4, "cffn_ratio": 0.25}


def _vit_adapter(size: str, pretrain_size: int = 224) -> dict[str, Any]:
    """DeiT / AugReg ViT-Adapter: the backbone presets are the official numbers of these configs."""
    return {"type": "vit_adapter", "preset": size, "pretrain_size": pretrain_size, **_ADAPTER}


def _beit_adapter(size: str, img_size: int) -> dict[str, Any]:
    """BEiT / BEiTv2 BEiT-Adapter (the same official class; only the pretrained file differs)."""
    large = size == "large"
    return {"type": "beit_adapter", "img_size": img_size, **_ADAPTER,
            "embed_dim": 1024 if large else 768, "depth": 24 if large else 12, "num_heads": 16 if large else 12,
            "deform_num_heads": 16 if large else 12, "deform_ratio": 0.5, "drop_path_rate": 0.3 if large else 0.2,
            "interaction_indexes": _LARGE_INDEXES if large else _BASE_INDEXES, "qkv_bias": True,
            "use_abs_pos_emb": False, "use_rel_pos_bias": True, "init_values": 1e-6}


_UNIPERCEIVER_LARGE = {"type": "uniperceiver_adapter", **_ADAPTER, "embed_dim": 1024, "depth": 24, "num_heads": 16,
                       "deform_num_heads": 16, "deform_ratio": 0.5, "drop_path_rate": 0.4,
                       "interaction_indexes": _LARGE_INDEXES, "window_attn": [False] * 24, "window_size": [None] * 24}


# DINOv2's ViT-g/14 under its ViT-Adapter: a reconstruction (the released config file is served beside the checkpoint,
# not in any repository): ViT-g/14 as DINOv2 trains it (SwiGLU, layer scale, 37x37 position grid), frozen, four
# interactions of ten blocks, deformable heads at head dim 64; its parameter count matches the official code's.
_DINOV2_G = {"type": "dinov2_adapter", "pretrain_size": 518, "patch_size": 14, "embed_dim": 1536, "depth": 40,
             "num_heads": 24, "mlp_ratio": 4.0, "qkv_bias": True, "layer_scale": True, "ffn_type": "swiglu",
             "drop_path_rate": 0.4, "conv_inplane": 64, "n_points": 4, "deform_num_heads": 24, "init_values": 0.0,
             "interaction_indexes": [[0, 9], [10, 19], [20, 29], [30, 39]], "with_cffn": True, "cffn_ratio": 0.25,
             "deform_ratio": 0.5, "add_vit_feature": True, "use_extra_extractor": True, "use_cls": True,
             "freeze_vit": True}


def _upernet(channels: int) -> dict[str, Any]:
    """UperNet + the auxiliary FCN head of mmseg's upernet base configs (the official #Param counts include it)."""
    return {"decode_head": {"type": "upernet", "channels": channels, "pool_scales": [1, 2, 3, 6], "dropout": 0.1},
            "auxiliary_head": {"type": "fcn", "channels": 256, "in_index": 2, "num_convs": 1, "dropout": 0.1,
                               "loss_weight": 0.4}}


def _mask2former(size: str, num_queries: int) -> dict[str, Any]:
    """Mask2Former at the width of the BEiT-Adapter-L (1024) or -B (256) configs; no auxiliary head."""
    large = size == "large"
    width, heads = (1024, 32) if large else (256, 8)
    return {"decode_head": {
        "type": "mask2former", "feat_channels": width, "out_channels": width, "num_queries": num_queries,
        "pixel_decoder": {"num_layers": 6, "num_heads": heads, "num_points": 4,
                          "feedforward_channels": 4096 if large else 1024, "num_groups": 32},
        "transformer_decoder": {"num_layers": 9, "num_heads": heads,
                                "feedforward_channels": 4096 if large else 2048}}}


def _preset(backbone: dict[str, Any], heads: dict[str, Any], dataset: str, crop: int, stride: int,
            scale: tuple[int, int], size_divisor: Optional[int] = 32, flip: bool = False,
            norm: dict[str, list[float]] = IMAGENET_NORM) -> dict[str, Any]:
    data = DATASETS[dataset]
    return {
        "model": {"backbone": backbone, **heads, "num_classes": len(data["classes"])},
        "data": {**data, **norm},
        "test": {"resize": {"scale": list(scale), "keep_ratio": True, "size_divisor": size_divisor},
                 "mode": "slide", "crop_size": [crop, crop], "stride": [stride, stride], "flip": flip,
                 "scales": [1.0]},
    }


_ADE_512 = dict(dataset="ade20k", crop=512, stride=341, scale=(2048, 512))
_ADE_640 = dict(dataset="ade20k", crop=640, stride=426, scale=(2048, 640))
_ADE_896 = dict(dataset="ade20k", crop=896, stride=512, scale=(3584, 896))
_CITYSCAPES_896 = dict(dataset="cityscapes", crop=896, stride=512, scale=(2048, 1024))
_COCO10K_512 = dict(dataset="coco_stuff10k", crop=512, stride=341, scale=(2048, 512))
_COCO164K_640 = dict(dataset="coco_stuff164k", crop=640, stride=426, scale=(2560, 640))
_COCO164K_896 = dict(dataset="coco_stuff164k", crop=896, stride=512, scale=(3584, 896))
_PASCAL_480 = dict(dataset="pascal_context", crop=480, stride=320, scale=(4096, 520))

OFFICIAL_PRESETS: dict[str, dict[str, Any]] = {
    # ADE20K
    "upernet_deit_adapter_tiny_512_160k_ade20k": _preset(_vit_adapter("tiny"), _upernet(512), **_ADE_512),
    "upernet_deit_adapter_small_512_160k_ade20k": _preset(_vit_adapter("small"), _upernet(512), **_ADE_512),
    "upernet_deit_adapter_base_512_160k_ade20k": _preset(_vit_adapter("base"), _upernet(512), **_ADE_512),
    "upernet_augreg_adapter_tiny_512_160k_ade20k": _preset(_vit_adapter("tiny"), _upernet(512), **_ADE_512),
    "upernet_augreg_adapter_base_512_160k_ade20k": _preset(_vit_adapter("base", 384), _upernet(512), **_ADE_512,
                                                           norm=AUGREG_NORM),
    "upernet_augreg_adapter_large_512_160k_ade20k": _preset(_vit_adapter("large", 384), _upernet(512), **_ADE_512,
                                                            norm=AUGREG_NORM),
    "upernet_uniperceiver_adapter_large_512_160k_ade20k": _preset(_UNIPERCEIVER_LARGE, _upernet(512), **_ADE_512),
    "upernet_beit_adapter_large_640_160k_ade20k": _preset(_beit_adapter("large", 640), _upernet(1024), **_ADE_640),
    "mask2former_beit_adapter_large_640_160k_ade20k": _preset(_beit_adapter("large", 640),
                                                              _mask2former("large", 100), **_ADE_640),
    "mask2former_beit_adapter_large_896_80k_ade20k": _preset(_beit_adapter("large", 896),
                                                             _mask2former("large", 200), **_ADE_896),
    # the official single-scale config of this release tests with flip=True
    "mask2former_beitv2_adapter_large_896_80k_ade20k": _preset(_beit_adapter("large", 896),
                                                               _mask2former("large", 200), **_ADE_896, flip=True),
    # Cityscapes (the Mapillary release predicts the 19 Cityscapes classes too: its training maps Mapillary's
    # labels onto them, and the config tests it on Cityscapes val)
    "mask2former_beit_adapter_large_896_80k_cityscapes": _preset(_beit_adapter("large", 896),
                                                                 _mask2former("large", 100), **_CITYSCAPES_896,
                                                                 size_divisor=None),
    "mask2former_beit_adapter_large_896_80k_mapillary": _preset(_beit_adapter("large", 896),
                                                                _mask2former("large", 100), **_CITYSCAPES_896),
    # COCO-Stuff-10k
    "mask2former_beit_adapter_base_512_40k_cocostuff10k": _preset(_beit_adapter("base", 512),
                                                                  _mask2former("base", 100), **_COCO10K_512),
    "upernet_beit_adapter_large_512_80k_cocostuff10k": _preset(_beit_adapter("large", 512), _upernet(1024),
                                                               **_COCO10K_512),
    "mask2former_beit_adapter_large_512_40k_cocostuff10k": _preset(_beit_adapter("large", 512),
                                                                   _mask2former("large", 100), **_COCO10K_512),
    # COCO-Stuff-164k
    "upernet_beit_adapter_large_640_80k_cocostuff164k": _preset(_beit_adapter("large", 640), _upernet(1024),
                                                                **_COCO164K_640),
    "mask2former_beit_adapter_large_896_80k_cocostuff164k": _preset(_beit_adapter("large", 896),
                                                                    _mask2former("large", 200), **_COCO164K_896),
    "mask2former_beitv2_adapter_large_896_80k_cocostuff164k": _preset(_beit_adapter("large", 896),
                                                                      _mask2former("large", 200), **_COCO164K_896),
    # Pascal Context (59 classes)
    "mask2former_beit_adapter_base_480_40k_pascal_context_59": _preset(_beit_adapter("base", 480),
                                                                       _mask2former("base", 100), **_PASCAL_480),
    "upernet_beit_adapter_large_480_80k_pascal_context_59": _preset(_beit_adapter("large", 480), _upernet(1024),
                                                                    **_PASCAL_480),
    "mask2former_beit_adapter_large_480_40k_pascal_context_59": _preset(_beit_adapter("large", 480),
                                                                        _mask2former("large", 100), **_PASCAL_480),
}

# Releases of other repositories: presets too, but not ViT-Adapter releases.
# DINOv3 ViT-7B/16 (dinov3_vit7b16: embed 4096, 40 blocks, 32 heads, SwiGLU ratio 3 aligned to 64, 4 storage tokens,
# layer scale, no qkv bias: the dinov3_adapter defaults) + adapter + Mask2Former (hidden_dim 2048), ADE20K, with the
# official test of configs/config-ade20k-m2f-inference.yaml
OTHER_RELEASE_PRESETS: dict[str, dict[str, Any]] = {
    # DINOv2 (facebookresearch/dinov2): ViT-g/14 + ViT-Adapter + Mask2Former, ADE20K; reconstructed, see _DINOV2_G
    "dinov2_vitg14_ade20k_m2f": _preset(_DINOV2_G, _mask2former("large", 200), **_ADE_896),
    "dinov3_vit7b16_ade20k_m2f": {
        "model": {"backbone": {"type": "dinov3_adapter"},
                  "decode_head": {"type": "mask2former_d2", "feat_channels": 2048, "out_channels": 2048},
                  "num_classes": len(ADE20K_CLASSES)},
        "data": dict(DATASETS["ade20k"]),
        "test": {"procedure": "dinov3", "short_side": 896, "mode": "slide", "crop_size": [896, 896],
                 "stride": [596, 596], "scales": [0.9, 0.95, 1.0, 1.05, 1.1], "flip": True, "resize": None},
    },
}
