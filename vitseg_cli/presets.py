"""Whole-spec presets (`--spec NAME`): the generic ones (nano..large and the CPU-sized nano_mask2former) and one per
released official config, as plain spec dicts (no torch import)."""

from __future__ import annotations

from typing import Any

from .releases.ms_presets import MS_PRESETS
from .releases.presets import OFFICIAL_PRESETS, OTHER_RELEASE_PRESETS

# Whole-spec presets: backbone preset + heads + recipe. The big ones follow the official UperNet ADE20K configs.
SPEC_PRESETS: dict[str, dict[str, Any]] = {
    name: {
        "model": {
            "backbone": {"preset": name},
            "decode_head": {"type": "upernet", "channels": 1024 if name == "large" else 512},
            "auxiliary_head": {"type": "fcn", "channels": 256},
            "num_classes": 150,
        },
        "train": {"lr": {"tiny": 12e-5, "small": 12e-5, "base": 6e-5, "large": 2e-5}[name]},
    }
    for name in ("tiny", "small", "base", "large")
}
SPEC_PRESETS["nano"] = {
    "model": {
        "backbone": {"preset": "nano"},
        "decode_head": {"type": "upernet", "channels": 64},
        "auxiliary_head": {"type": "fcn", "channels": 64},
        "num_classes": 6,
    },
    "test": {"resize": None, "mode": "whole", "crop_size": [256, 256], "stride": [171, 171]},
    "train": {"iters": 2000, "batch_size": 8, "crop_size": [256, 256], "lr": 1e-3, "warmup_iters": 100,
              "scale": [256, 256]},
}

# A CPU-sized BEiT-Adapter + Mask2Former (like `nano` for UperNet) for demos, tests and the synthetic data. BEiT's
# relative position bias fixes its input to img_size (128 here, to keep CPU training affordable), so training takes
# 128 crops and inference slides 128 windows.
SPEC_PRESETS["nano_mask2former"] = {
    "model": {
        "backbone": {"type": "beit_adapter", "img_size": 128, "embed_dim": 96, "depth": 4, "num_heads": 3,
                     "deform_num_heads": 6, "deform_ratio": 0.5, "conv_inplane": 16, "init_values": 0.1,
                     "drop_path_rate": 0.1, "interaction_indexes": [[0, 0], [1, 1], [2, 2], [3, 3]]},
        "decode_head": {"type": "mask2former", "feat_channels": 64, "out_channels": 64, "num_queries": 20,
                        "pixel_decoder": {"num_layers": 2, "num_heads": 4, "num_points": 4,
                                          "feedforward_channels": 128, "num_groups": 16},
                        "transformer_decoder": {"num_layers": 3, "num_heads": 4, "feedforward_channels": 256},
                        "loss": {"num_points": 2048}},
        "num_classes": 6,
    },
    "test": {"resize": None, "mode": "slide", "crop_size": [128, 128], "stride": [85, 85]},
    "train": {"iters": 2000, "batch_size": 8, "crop_size": [128, 128], "lr": 5e-4, "warmup_iters": 50,
              "scale": [256, 256]},
}

SPEC_PRESETS.update(OFFICIAL_PRESETS)
SPEC_PRESETS.update(OTHER_RELEASE_PRESETS)
SPEC_PRESETS.update(MS_PRESETS)
