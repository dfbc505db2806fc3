"""Parameter counts of the official presets equal the official README's #Param (rounded to millions).

The README counts include the auxiliary FCN head of the UperNet models: ViT-Adapter-S + UperNet is 57.6M with it
and 56.7M without, and the README says 58M. The README gives one number per architecture, not per crop: BEiT's
relative position tables grow with the crop, so UperNet + BEiT-Adapter-L is 451.1M at crop 512 but 451.9M at 640,
and both rows read 451M; that row is allowed 1M. Models are built on the meta device (no memory, no initialisation).
"""

from __future__ import annotations

import pytest
import torch

from vitseg_cli import build_model
from vitseg_cli.spec import load_spec

# From czczup/ViT-Adapter segmentation/README.md, copied by hand.
README_PARAMS_M = {
    "upernet_deit_adapter_tiny_512_160k_ade20k": 36,
    "upernet_deit_adapter_small_512_160k_ade20k": 58,
    "upernet_deit_adapter_base_512_160k_ade20k": 134,
    "upernet_augreg_adapter_tiny_512_160k_ade20k": 36,
    "upernet_augreg_adapter_base_512_160k_ade20k": 134,
    "upernet_augreg_adapter_large_512_160k_ade20k": 364,
    "upernet_uniperceiver_adapter_large_512_160k_ade20k": 364,
    "upernet_beit_adapter_large_640_160k_ade20k": 451,
    "mask2former_beit_adapter_large_640_160k_ade20k": 568,
    "mask2former_beit_adapter_large_896_80k_ade20k": 571,
    "mask2former_beit_adapter_base_512_40k_cocostuff10k": 120,
    "upernet_beit_adapter_large_480_80k_pascal_context_59": 451,
}
ONE_NUMBER_FOR_SEVERAL_CROPS = {"upernet_beit_adapter_large_640_160k_ade20k"}
# The README gives Uni-Perceiver-Adapter-L the same 364M as AugReg-L; built from its config the model has 363.42M.
# Its module set is the official one key for key (the official mini checkpoint loads strictly, tests/
# test_uniperceiver_parity.py), so the README's figure is taken as approximate to 1M here.
README_APPROXIMATE = {"upernet_uniperceiver_adapter_large_512_160k_ade20k"}


@pytest.mark.parametrize("name", sorted(README_PARAMS_M))
def test_official_preset_parameter_count_matches_the_readme(name):
    with torch.device("meta"):
        model = build_model(load_spec(name))
    count = sum(p.numel() for p in model.parameters()) / 1e6
    tolerance = 1.0 if name in ONE_NUMBER_FOR_SEVERAL_CROPS | README_APPROXIMATE else 0.5
    assert abs(count - README_PARAMS_M[name]) <= tolerance, f"{name}: {count:.2f}M, README {README_PARAMS_M[name]}M"
