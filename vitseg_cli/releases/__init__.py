"""The 22 released official ViT-Adapter semantic-segmentation checkpoints and DINOv2's ViT-Adapter segmentor, as
plain data (no torch import).

From czczup/ViT-Adapter `segmentation/README.md` (the results tables: method, pretraining, schedule, crop, mIoU
single-/multi-scale, #Param, download link) and `segmentation/configs/` (the names). A release's name is its config
file stem without `_ss`/`_ms`, which is also the name of its whole-spec preset (`releases/presets.py`). The URLs are
copied as the README gives them, including two whose file name says `160_` for `160k`. The Mapillary checkpoint is
listed in the README only as the pretraining of the Cityscapes one; it predicts the 19 Cityscapes classes.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Optional

from ..data.formats import RELEASE_FORMATS
from ..errors import VitsegError


@dataclass(frozen=True)
class Release:
    name: str  # = the preset name: the official config stem without _ss/_ms
    method: str  # 'UperNet' | 'Mask2Former'
    backbone: str  # e.g. 'BEiT-Adapter-L'
    pretrain: str  # e.g. 'BEiTv2-L'; '+COCO' / '+Mapillary': fine-tuned from that release
    dataset: str  # ade20k | cityscapes | mapillary | coco_stuff10k | coco_stuff164k | pascal_context
    crop_size: int
    miou_ss: Optional[float]  # official single-scale mIoU (%), None where the README gives none
    miou_ms: Optional[float]  # official multi-scale mIoU (%)
    params: str  # as the README rounds it, e.g. '571M'
    size: Optional[str]  # download size, None where not known
    url: str  # the official download link (.pth, .pth.tar or .zip holding one .pth)
    lr_schedule: str  # e.g. '160k' iterations
    backbone_url: Optional[str] = None  # a release made of two files: the backbone's own file
    # a config file served beside the checkpoint: fetched with it, and the spec is read from it (safely) when present
    config_url: Optional[str] = None
    reconstructed: bool = False  # the preset is a reconstruction; the released config is the authority


_GH = "https://github.com/czczup/ViT-Adapter/releases/download"


def _r(name: str, method: str, backbone: str, pretrain: str, dataset: str, crop: int, schedule: str,
       miou: tuple[Optional[float], Optional[float]], params: str, url: str) -> Release:
    return Release(name, method, backbone, pretrain, dataset, crop, miou[0], miou[1], params, None, f"{_GH}/{url}",
                   schedule)


RELEASES: list[Release] = [
    # ADE20K val
    _r("upernet_deit_adapter_tiny_512_160k_ade20k", "UperNet", "ViT-Adapter-T", "DeiT-T", "ade20k", 512, "160k",
       (42.6, 43.6), "36M", "v0.3.1/upernet_deit_adapter_tiny_512_160_ade20k.pth.tar"),
    _r("upernet_deit_adapter_small_512_160k_ade20k", "UperNet", "ViT-Adapter-S", "DeiT-S", "ade20k", 512, "160k",
       (46.2, 47.1), "58M", "v0.3.1/upernet_deit_adapter_small_512_160k_ade20k.pth"),
    _r("upernet_deit_adapter_base_512_160k_ade20k", "UperNet", "ViT-Adapter-B", "DeiT-B", "ade20k", 512, "160k",
       (48.8, 49.7), "134M", "v0.3.1/upernet_deit_adapter_base_512_160k_ade20k.pth.tar"),
    _r("upernet_augreg_adapter_tiny_512_160k_ade20k", "UperNet", "ViT-Adapter-T", "AugReg-T", "ade20k", 512, "160k",
       (43.9, 44.8), "36M", "v0.3.1/upernet_augreg_adapter_tiny_512_160_ade20k.pth.tar"),
    _r("upernet_augreg_adapter_base_512_160k_ade20k", "UperNet", "ViT-Adapter-B", "AugReg-B", "ade20k", 512, "160k",
       (51.9, 52.5), "134M", "v0.3.1/upernet_augreg_adapter_base_512_160k_ade20k.pth.tar"),
    _r("upernet_augreg_adapter_large_512_160k_ade20k", "UperNet", "ViT-Adapter-L", "AugReg-L", "ade20k", 512, "160k",
       (53.4, 54.4), "364M", "v0.3.1/upernet_augreg_adapter_large_512_160k_ade20k.pth.tar"),
    _r("upernet_uniperceiver_adapter_large_512_160k_ade20k", "UperNet", "Uni-Perceiver-Adapter-L", "Uni-Perceiver-L",
       "ade20k", 512, "160k", (55.0, 55.4), "364M", "v0.3.1/upernet_uniperceiver_adapter_large_512_160k_ade20k.pth"),
    _r("upernet_beit_adapter_large_640_160k_ade20k", "UperNet", "BEiT-Adapter-L", "BEiT-L", "ade20k", 640, "160k",
       (58.0, 58.4), "451M", "v0.2.1/upernet_beit_adapter_large_640_160k_ade20k.pth.tar"),
    _r("mask2former_beit_adapter_large_640_160k_ade20k", "Mask2Former", "BEiT-Adapter-L", "BEiT-L", "ade20k", 640,
       "160k", (58.3, 59.0), "568M", "v0.2.2/mask2former_beit_adapter_large_640_160k_ade20k.zip"),
    _r("mask2former_beit_adapter_large_896_80k_ade20k", "Mask2Former", "BEiT-Adapter-L", "BEiT-L+COCO", "ade20k", 896,
       "80k", (59.4, 60.5), "571M", "v0.2.0/mask2former_beit_adapter_large_896_80k_ade20k.zip"),
    _r("mask2former_beitv2_adapter_large_896_80k_ade20k", "Mask2Former", "BEiT-Adapter-L", "BEiTv2-L+COCO", "ade20k",
       896, "80k", (61.2, 61.5), "571M", "v0.3.1/mask2former_beitv2_adapter_large_896_80k_ade20k.zip"),
    # Cityscapes val (the Mapillary release: trained on Mapillary Vistas mapped to the 19 Cityscapes classes)
    _r("mask2former_beit_adapter_large_896_80k_cityscapes", "Mask2Former", "BEiT-Adapter-L", "BEiT-L+Mapillary",
       "cityscapes", 896, "80k", (84.9, 85.8), "571M",
       "v0.2.3/mask2former_beit_adapter_large_896_80k_cityscapes.zip"),
    # no row of its own in the README: same architecture as the Cityscapes row, so the same count
    _r("mask2former_beit_adapter_large_896_80k_mapillary", "Mask2Former", "BEiT-Adapter-L", "BEiT-L", "mapillary",
       896, "80k", (None, None), "571M", "v0.2.3/mask2former_beit_adapter_large_896_80k_mapillary.zip"),
    # COCO-Stuff-10k
    _r("mask2former_beit_adapter_base_512_40k_cocostuff10k", "Mask2Former", "BEiT-Adapter-B", "BEiT-B",
       "coco_stuff10k", 512, "40k", (50.0, 50.5), "120M",
       "v0.2.9/mask2former_beit_adapter_base_512_40k_cocostuff10k.pth.tar"),
    _r("upernet_beit_adapter_large_512_80k_cocostuff10k", "UperNet", "BEiT-Adapter-L", "BEiT-L", "coco_stuff10k", 512,
       "80k", (51.0, 51.4), "451M", "v0.2.4/upernet_beit_adapter_large_512_80k_cocostuff10k.pth.tar"),
    _r("mask2former_beit_adapter_large_512_40k_cocostuff10k", "Mask2Former", "BEiT-Adapter-L", "BEiT-L",
       "coco_stuff10k", 512, "40k", (53.2, 54.2), "568M",
       "v0.2.5/mask2former_beit_adapter_large_512_40k_cocostuff10k.zip"),
    # COCO-Stuff-164k
    _r("upernet_beit_adapter_large_640_80k_cocostuff164k", "UperNet", "BEiT-Adapter-L", "BEiT-L", "coco_stuff164k",
       640, "80k", (50.5, 50.7), "451M", "v0.2.6/upernet_beit_adapter_large_640_80k_cocostuff164k.pth.tar"),
    _r("mask2former_beit_adapter_large_896_80k_cocostuff164k", "Mask2Former", "BEiT-Adapter-L", "BEiT-L",
       "coco_stuff164k", 896, "80k", (51.7, 52.0), "571M",
       "v0.2.6/mask2former_beit_adapter_large_896_80k_cocostuff164k.zip"),
    _r("mask2former_beitv2_adapter_large_896_80k_cocostuff164k", "Mask2Former", "BEiT-Adapter-L", "BEiTv2-L",
       "coco_stuff164k", 896, "80k", (52.3, None), "571M",
       "v0.3.1/mask2former_beitv2_adapter_large_896_80k_cocostuff164k.zip"),
    # Pascal Context (59 classes)
    _r("mask2former_beit_adapter_base_480_40k_pascal_context_59", "Mask2Former", "BEiT-Adapter-B", "BEiT-B",
       "pascal_context", 480, "40k", (64.0, 64.4), "120M",
       "v0.2.8/mask2former_beit_adapter_base_480_40k_pascal_context_59.pth.tar"),
    _r("upernet_beit_adapter_large_480_80k_pascal_context_59", "UperNet", "BEiT-Adapter-L", "BEiT-L", "pascal_context",
       480, "80k", (67.0, 67.5), "451M", "v0.2.7/upernet_beit_adapter_large_480_80k_pascal_context_59.pth.tar"),
    _r("mask2former_beit_adapter_large_480_40k_pascal_context_59", "Mask2Former", "BEiT-Adapter-L", "BEiT-L",
       "pascal_context", 480, "40k", (67.8, 68.2), "568M",
       "v0.2.7/mask2former_beit_adapter_large_480_40k_pascal_context_59.zip"),
]

# Releases of other repositories, in the same table for the zoo (the ViT-Adapter list above stays the 22).
# DINOv3 (facebookresearch/dinov3 hub/segmentors.py: base URL + backbone name + file): the head file is public; the
# backbone file is gated (request access on https://ai.meta.com/resources/models-and-libraries/dinov3-downloads/ and
# serve the file through VITSEG_ZOO_MIRROR or place it in the cache by hand).
_FB = "https://dl.fbaipublicfiles.com"
_DINOV3 = f"{_FB}/dinov3/dinov3_vit7b16"
OTHER_RELEASES: list[Release] = [
    Release("dinov3_vit7b16_ade20k_m2f", "Mask2Former", "DINOv3-Adapter-7B", "DINOv3 ViT-7B/16 LVD-1689M", "ade20k",
            896, None, None, "7643M", None, f"{_DINOV3}/dinov3_vit7b16_ade20k_m2f_head-bf307cb1.pth", "-",
            backbone_url=f"{_DINOV3}/dinov3_vit7b16_pretrain_lvd1689m-a955f4ea.pth"),
    # DINOv2 (facebookresearch/dinov2 README, "Semantic segmentation"; its segmentation notebook names the config):
    # the ViT-g/14 + ViT-Adapter + Mask2Former ADE20K segmentor. The README gives no mIoU or schedule for it.
    Release("dinov2_vitg14_ade20k_m2f", "Mask2Former", "ViT-Adapter-g/14", "DINOv2 ViT-g/14 (frozen)", "ade20k", 896,
            None, None, "1429M", None, f"{_FB}/dinov2/dinov2_vitg14/dinov2_vitg14_ade20k_m2f.pth", "unknown",
            config_url=f"{_FB}/dinov2/dinov2_vitg14/dinov2_vitg14_ade20k_m2f_config.py", reconstructed=True),
]
_BY_NAME = {r.name: r for r in [*RELEASES, *OTHER_RELEASES]}


def release(name: str) -> Release:
    """The release of that name; an unknown name is a one-line error suggesting the closest ones."""
    if name in _BY_NAME:
        return _BY_NAME[name]
    close = difflib.get_close_matches(name, list(_BY_NAME), n=3, cutoff=0.6)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    raise VitsegError(f"unknown official release {name!r}{hint}; `vitseg zoo` lists the {len(RELEASES)} releases")


def find_release(name: str) -> Optional[Release]:
    return _BY_NAME.get(name)


def dataset_format(r: Release) -> str:
    """The `--format` of the data the release's official numbers are measured on (folder for a dataset no format
    knows, e.g. a release added by hand)."""
    return RELEASE_FORMATS.get(r.dataset, "folder")


def eval_commands(r: Release) -> tuple[str, str]:
    """The commands that reproduce the release's single-scale and multi-scale mIoU (DATA: the dataset root)."""
    return f"vitseg eval --data DATA -w {r.name}", f"vitseg eval --data DATA -w {r.name} --tta"
