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
BUILT_TODAY = ("vit_adapter", "upernet")  # families vitseg builds on every branch; the others land later


@pytest.mark.parametrize("name", sorted(README_PARAMS_M))
def test_official_preset_parameter_count_matches_the_readme(name):
    spec = load_spec(name)
    families = (spec.model.backbone.type, spec.model.decode_head.type)
    try:
        with torch.device("meta"):
            model = build_model(spec)
    except Exception as err:  # only for the families this checkout does not build yet (re-raised otherwise)
        if all(f in BUILT_TODAY for f in families):
            raise
        pytest.skip(f"{'+'.join(families)} cannot be built in this checkout yet ({type(err).__name__}: {err})")
    count = sum(p.numel() for p in model.parameters()) / 1e6
    tolerance = 1.0 if name in ONE_NUMBER_FOR_SEVERAL_CROPS else 0.5
    assert abs(count - README_PARAMS_M[name]) <= tolerance, f"{name}: {count:.2f}M, README {README_PARAMS_M[name]}M"
