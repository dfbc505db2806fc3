"""The segmentor: ViT-Adapter backbone + decode head (+ auxiliary head), built from a spec.

`build_model(spec)` is the one place a model is constructed; checkpoints, train, eval and predict all go through it.
Any input size works: the input is padded to a multiple of 32 and the outputs are cropped back.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..spec import Spec, load_spec
from .adapter import ViTAdapter
from .heads import FCNHead, UPerHead

SIZE_DIVISOR = 32


class Segmentor(nn.Module):
    """`forward(x)` on a normalized (B, 3, H, W) batch gives logits (B, K, ceil(H/4), ceil(W/4)), or the four
    backbone features when the spec has no decode head."""

    def __init__(self, spec: Spec):
        super().__init__()
        self.spec = spec
        b = spec.model.backbone
        self.backbone = ViTAdapter(
            pretrain_size=b.pretrain_size, patch_size=b.patch_size, embed_dim=b.embed_dim, depth=b.depth,
            num_heads=b.num_heads, mlp_ratio=b.mlp_ratio, drop_path_rate=b.drop_path_rate,
            conv_inplane=b.conv_inplane, n_points=b.n_points, deform_num_heads=b.deform_num_heads,
            init_values=b.init_values, interaction_indexes=b.interaction_indexes, with_cffn=b.with_cffn,
            cffn_ratio=b.cffn_ratio, deform_ratio=b.deform_ratio, add_vit_feature=b.add_vit_feature,
            use_extra_extractor=b.use_extra_extractor, layer_scale=b.layer_scale)
        k = spec.model.num_classes
        dims = [b.embed_dim] * 4
        head = spec.model.decode_head
        self.decode_head: Optional[UPerHead] = (
            UPerHead(dims, head.channels, k, head.pool_scales, head.dropout) if head else None)
        aux = spec.model.auxiliary_head
        self.auxiliary_head: Optional[FCNHead] = (
            FCNHead(dims[aux.in_index], aux.channels, k, aux.in_index, aux.num_convs, aux.dropout) if aux else None)

    @property
    def num_classes(self) -> int:
        return self.spec.model.num_classes

    def padded_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Backbone features of x zero-padded (bottom/right) to a multiple of 32."""
        h, w = x.shape[-2:]
        ph, pw = -h % SIZE_DIVISOR, -w % SIZE_DIVISOR
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        return self.backbone(x)

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Decode and auxiliary logits at 1/4 of the padded input (the training path)."""
        feats = self.padded_features(x)
        aux = self.auxiliary_head(feats) if self.auxiliary_head is not None else None
        return self.decode_head(feats), aux

    def forward(self, x: torch.Tensor):
        h, w = x.shape[-2:]
        feats = self.padded_features(x)
        if self.decode_head is None:
            return feats
        logits = self.decode_head(feats)
        return logits[..., :math.ceil(h / 4), :math.ceil(w / 4)]

    def predict(self, image, **options):
        """Segment one image (path, RGB array or PIL image) the way `vitseg predict` does; see engine/result.py."""
        from ..engine.result import predict  # the engine imports the model: import it only when used

        return predict(self, image, **options)


def build_model(spec: "Spec | dict | str | None" = None) -> Segmentor:
    """A freshly initialised model for a spec (YAML path, dict, preset name or Spec)."""
    return Segmentor(load_spec(spec))
