"""Detectron2-style Mask2Former head (`mask2former_d2`), as the DINOv3 segmentor's `Mask2FormerHead` computes it.

Its pixel decoder (`MSDeformAttnPixelDecoder`) and masked-attention decoder (`MultiScaleMaskedTransformerDecoder`)
compute what the mmdet-style head of mask2former.py computes, layer for layer (post-norm, cross-attention then
self-attention then FFN, sine positions, level embeddings added to the memory); only their parameter names differ,
and `official_head_keys` maps them. What differs is the official prediction: the mask logits are resized to the
window size before the sigmoid (`scores_at`), and the official slide test sums those window scores in bfloat16.
"""

from __future__ import annotations

import re
from typing import Optional

import torch
import torch.nn.functional as F

from .mask2former import Mask2FormerHead
from .pixel_decoder import MSDeformAttnPixelDecoder

# official (detectron2) name -> this head's name, for the head file's `segmentation_model.1.` part
_RENAMES = [
    (r"pixel_decoder\.input_convs\.(\d+)\.0\.", r"pixel_decoder.input_convs.\1.conv."),
    (r"pixel_decoder\.input_convs\.(\d+)\.1\.", r"pixel_decoder.input_convs.\1.gn."),
    (r"pixel_decoder\.encoder\.level_encoding$", r"pixel_decoder.level_encoding.weight"),
    (r"pixel_decoder\.encoder\.encoder\.layers\.(\d+)\.self_attn\.", r"pixel_decoder.encoder.layers.\1.attentions.0."),
    (r"pixel_decoder\.encoder\.encoder\.layers\.(\d+)\.norm(\d)\.",
     lambda m: f"pixel_decoder.encoder.layers.{m[1]}.norms.{int(m[2]) - 1}."),
    (r"pixel_decoder\.encoder\.encoder\.layers\.(\d+)\.linear1\.",
     r"pixel_decoder.encoder.layers.\1.ffns.0.layers.0.0."),
    (r"pixel_decoder\.encoder\.encoder\.layers\.(\d+)\.linear2\.", r"pixel_decoder.encoder.layers.\1.ffns.0.layers.1."),
    (r"pixel_decoder\.(lateral|output)_convs\.0\.norm\.", r"pixel_decoder.\1_convs.0.gn."),
    (r"pixel_decoder\.(lateral|output)_convs\.0\.(weight|bias)$", r"pixel_decoder.\1_convs.0.conv.\2"),
    (r"predictor\.transformer_cross_attention_layers\.(\d+)\.multihead_attn\.",
     r"transformer_decoder.layers.\1.attentions.0.attn."),
    (r"predictor\.transformer_cross_attention_layers\.(\d+)\.norm\.", r"transformer_decoder.layers.\1.norms.0."),
    (r"predictor\.transformer_self_attention_layers\.(\d+)\.self_attn\.",
     r"transformer_decoder.layers.\1.attentions.1.attn."),
    (r"predictor\.transformer_self_attention_layers\.(\d+)\.norm\.", r"transformer_decoder.layers.\1.norms.1."),
    (r"predictor\.transformer_ffn_layers\.(\d+)\.linear1\.", r"transformer_decoder.layers.\1.ffns.0.layers.0.0."),
    (r"predictor\.transformer_ffn_layers\.(\d+)\.linear2\.", r"transformer_decoder.layers.\1.ffns.0.layers.1."),
    (r"predictor\.transformer_ffn_layers\.(\d+)\.norm\.", r"transformer_decoder.layers.\1.norms.2."),
    (r"predictor\.post_norm\.", r"transformer_decoder.post_norm."),
    (r"predictor\.class_embed\.", r"cls_embed."),
    (r"predictor\.mask_embed\.layers\.(\d)\.", lambda m: f"mask_embed.{2 * int(m[1])}."),
    (r"predictor\.input_proj\.(\d+)\.", r"decoder_input_projs.\1."),
    (r"predictor\.(query_feat|query_embed|level_embed)\.", r"\1."),
]


def own_key(key: str) -> str:
    """This head's name of an official head key (without `segmentation_model.1.`); unknown keys are kept."""
    for pattern, repl in _RENAMES:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    return key


def official_head_keys(state: dict, prefix: str) -> dict:
    """The `prefix` part of a state dict under this head's names, prefixed `decode_head.`."""
    return {"decode_head." + own_key(k[len(prefix):]): v for k, v in state.items() if k.startswith(prefix)}


class Float32PixelDecoder(MSDeformAttnPixelDecoder):
    """The official detectron2 pixel decoder runs with autocast off, on float32 features."""

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        with torch.autocast(feats[0].device.type, enabled=False):
            return super().forward([f.float() for f in feats])


class Mask2FormerD2Head(Mask2FormerHead):
    """`forward` gives scores at 1/4 as the mmdet-style head does (training, the mmseg test); `scores_at` gives the
    official DINOv3 window scores at the window's size."""

    pixel_decoder_class = Float32PixelDecoder

    def scores_at(self, feats: list[torch.Tensor], size: tuple[int, int],
                  dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        """softmax(class)[:K] x sigmoid(mask logits resized bilinearly to `size`), summed over queries; the product
        taken in `dtype` when given (the official slide test: bfloat16)."""
        cls_preds, mask_preds = self.forward_stages(feats)
        masks = F.interpolate(mask_preds[-1].float(), size=size, mode="bilinear", align_corners=False)
        probs, masks = cls_preds[-1].float().softmax(-1)[..., :-1], masks.sigmoid()
        if dtype is not None:
            probs, masks = probs.to(dtype), masks.to(dtype)
        return torch.einsum("bqc,bqhw->bchw", probs, masks)


def build_mask2former_d2(section, in_channels: list[int], num_classes: int) -> Mask2FormerD2Head:
    return Mask2FormerD2Head(section, in_channels, num_classes)
