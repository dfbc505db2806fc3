"""The released official ViT-Adapter segmentation checkpoints, as plain data (no torch import).

STUB for the zoo branch: three real entries from the official README (czczup/ViT-Adapter, segmentation/README.md).
The full table of 22 releases comes from another branch at merge and replaces this file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Release:
    name: str  # = the preset name: the official config stem without _ss/_ms
    method: str  # 'UperNet' | 'Mask2Former'
    backbone: str
    pretrain: str
    dataset: str
    crop_size: int
    miou_ss: Optional[float]
    miou_ms: Optional[float]
    params: str
    size: Optional[str]
    url: str
    lr_schedule: str


_GH = "https://github.com/czczup/ViT-Adapter/releases/download"

RELEASES: list[Release] = [
    Release("upernet_deit_adapter_tiny_512_160k_ade20k", "UperNet", "ViT-Adapter-T", "DeiT-T", "ADE20K", 512,
            42.6, 43.6, "36M", None, f"{_GH}/v0.3.1/upernet_deit_adapter_tiny_512_160_ade20k.pth.tar", "160k"),
    Release("upernet_deit_adapter_small_512_160k_ade20k", "UperNet", "ViT-Adapter-S", "DeiT-S", "ADE20K", 512,
            46.2, 47.1, "58M", None, f"{_GH}/v0.3.1/upernet_deit_adapter_small_512_160k_ade20k.pth", "160k"),
    Release("mask2former_beit_adapter_large_896_80k_ade20k", "Mask2Former", "ViT-Adapter-L", "BEiT-L+COCO-Stuff",
            "ADE20K", 896, 59.4, 60.5, "571M", None,
            f"{_GH}/v0.2.0/mask2former_beit_adapter_large_896_80k_ade20k.zip", "80k"),
]
