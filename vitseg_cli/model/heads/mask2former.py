"""Mask2Former decode head (the official ViT-Adapter `Mask2FormerHead`), semantic-segmentation path.

Learned queries go through a masked-attention transformer decoder: layer i cross-attends to pixel-decoder level
i mod 3 (1/32, 1/16, 1/8, ...), only where the previous stage's mask of that query is >= 0.5, then self-attends, then
an FFN. Before the first layer and after every layer, one shared LayerNorm feeds a class head (K + 1 slots, the last
one "no object") and a mask head whose embeddings are dotted with the pixel decoder's 1/4 mask feature.
Semantic scores = sum over queries of softmax(class)[:K] * sigmoid(mask), from the last stage only.
Module and parameter names are the official state-dict keys without the `decode_head.` prefix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..keys import count_indices
from .mask2former_config import Mask2FormerHeadSpec
from .mask2former_loss import Mask2FormerLoss
from .pixel_decoder import FFN, NUM_LEVELS, MSDeformAttnPixelDecoder, caffe2_xavier_init, sine_position_encoding


class MultiheadAttention(nn.Module):
    """mmcv MultiheadAttention: identity + attn(query + query_pos, key + key_pos, value), torch attention as `attn`."""

    def __init__(self, dims: int, num_heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(dims, num_heads, batch_first=True)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, query_pos: torch.Tensor,
                key_pos: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        out = self.attn(query + query_pos, key + key_pos, value, attn_mask=attn_mask, need_weights=False)[0]
        return query + out


class DecoderLayer(nn.Module):
    """Post-norm decoder layer, order cross_attn-norm-self_attn-norm-ffn-norm (DetrTransformerDecoderLayer);
    `attentions[0]` is the masked cross-attention, `attentions[1]` the self-attention."""

    def __init__(self, dims: int, num_heads: int, feedforward_channels: int):
        super().__init__()
        self.attentions = nn.ModuleList([MultiheadAttention(dims, num_heads), MultiheadAttention(dims, num_heads)])
        self.ffns = nn.ModuleList([FFN(dims, feedforward_channels)])
        self.norms = nn.ModuleList([nn.LayerNorm(dims) for _ in range(3)])

    def forward(self, query: torch.Tensor, memory: torch.Tensor, query_pos: torch.Tensor, memory_pos: torch.Tensor,
                attn_mask: torch.Tensor) -> torch.Tensor:
        query = self.norms[0](self.attentions[0](query, memory, memory, query_pos, memory_pos, attn_mask))
        query = self.norms[1](self.attentions[1](query, query, query, query_pos, query_pos))
        return self.norms[2](self.ffns[0](query))


class TransformerDecoder(nn.Module):
    """The decoder's layers and the LayerNorm (`post_norm`) applied before every prediction."""

    def __init__(self, num_layers: int, dims: int, num_heads: int, feedforward_channels: int):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(dims, num_heads, feedforward_channels) for _ in range(num_layers))
        self.post_norm = nn.LayerNorm(dims)


class Mask2FormerHead(nn.Module):
    """forward([f1..f4]) -> semantic scores (B, K, H/4, W/4), each in [0, num_queries]; `forward_stages` gives the
    per-stage class logits (B, Q, K+1) and mask logits (B, Q, H/4, W/4) that the loss needs."""

    # the layers whose shape depends on the class count (re-initialised when fine-tuning onto other classes)
    class_layers = ("cls_embed.",)

    def __init__(self, spec: Mask2FormerHeadSpec, in_channels: list[int], num_classes: int):
        super().__init__()
        self.spec = spec
        self.num_classes = num_classes
        feat, pd, td = spec.feat_channels, spec.pixel_decoder, spec.transformer_decoder
        self.num_heads = td.num_heads
        self.pixel_decoder = MSDeformAttnPixelDecoder(
            in_channels, feat, spec.out_channels, pd.num_layers, pd.num_heads, pd.num_points,
            pd.feedforward_channels, pd.num_groups)
        self.transformer_decoder = TransformerDecoder(td.num_layers, feat, td.num_heads, td.feedforward_channels)
        # the decoder is as wide as the pixel decoder here, so a projection exists only when enforced
        self.decoder_input_projs = nn.ModuleList(
            nn.Conv2d(feat, feat, 1) if spec.enforce_decoder_input_project else nn.Identity()
            for _ in range(NUM_LEVELS))
        self.query_embed = nn.Embedding(spec.num_queries, feat)
        self.query_feat = nn.Embedding(spec.num_queries, feat)
        self.level_embed = nn.Embedding(NUM_LEVELS, feat)
        self.cls_embed = nn.Linear(feat, num_classes + 1)
        self.mask_embed = nn.Sequential(
            nn.Linear(feat, feat), nn.ReLU(inplace=True), nn.Linear(feat, feat), nn.ReLU(inplace=True),
            nn.Linear(feat, spec.out_channels))
        self.criterion = Mask2FormerLoss(spec.loss, num_classes)
        self.init_weights()

    def init_weights(self) -> None:
        """As the official head: caffe2-xavier input projections, xavier-normal decoder matrices (the pixel decoder
        initialises itself; embeddings N(0, 1) and linear layers keep PyTorch's defaults)."""
        for proj in self.decoder_input_projs:
            if isinstance(proj, nn.Conv2d):
                caffe2_xavier_init(proj)
        for p in self.transformer_decoder.parameters():
            if p.dim() > 1:
                nn.init.xavier_normal_(p)

    def _predict(self, query: torch.Tensor, mask_feature: torch.Tensor,
                 attn_size: tuple[int, int] | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Class and mask logits of the queries, and the next cross-attention mask (True = not attended) at
        attn_size, repeated per head (batch-major), or None when no layer follows."""
        query = self.transformer_decoder.post_norm(query)
        cls_pred = self.cls_embed(query)
        mask_pred = torch.einsum("bqc,bchw->bqhw", self.mask_embed(query), mask_feature)
        if attn_size is None:
            return cls_pred, mask_pred, None
        with torch.no_grad():
            mask = F.interpolate(mask_pred, attn_size, mode="bilinear", align_corners=False)
            mask = mask.flatten(2).sigmoid() < 0.5
            mask = mask & ~mask.all(-1, keepdim=True)  # a query that would see nothing sees everything instead
            mask = mask.repeat_interleave(self.num_heads, dim=0)
        return cls_pred, mask_pred, mask

    def forward_stages(self, feats: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per-stage (class logits, mask logits): index 0 from the learned queries, then one per decoder layer."""
        mask_feature, memories = self.pixel_decoder(feats)
        batch = mask_feature.shape[0]
        inputs, positions = [], []
        for level, (proj, memory) in enumerate(zip(self.decoder_input_projs, memories)):
            h, w = memory.shape[-2:]
            inputs.append(proj(memory).flatten(2).transpose(1, 2) + self.level_embed.weight[level])
            pos = sine_position_encoding(h, w, self.spec.feat_channels // 2, memory.device).to(memory.dtype)
            positions.append(pos.flatten(2).transpose(1, 2).expand(batch, -1, -1))
        query = self.query_feat.weight.unsqueeze(0).expand(batch, -1, -1)
        query_pos = self.query_embed.weight.unsqueeze(0).expand(batch, -1, -1)
        layers = self.transformer_decoder.layers
        sizes = [memories[i % NUM_LEVELS].shape[-2:] for i in range(len(layers))] + [None]
        cls_pred, mask_pred, attn_mask = self._predict(query, mask_feature, sizes[0])
        cls_preds, mask_preds = [cls_pred], [mask_pred]
        for i, layer in enumerate(layers):
            level = i % NUM_LEVELS
            query = layer(query, inputs[level], query_pos, positions[level], attn_mask)
            cls_pred, mask_pred, attn_mask = self._predict(query, mask_feature, sizes[i + 1])
            cls_preds.append(cls_pred)
            mask_preds.append(mask_pred)
        return cls_preds, mask_preds

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        cls_preds, mask_preds = self.forward_stages(feats)
        return semantic_inference(cls_preds[-1], mask_preds[-1])

    def loss(self, feats: list[torch.Tensor], target: torch.Tensor, ignore_index: int) -> dict[str, torch.Tensor]:
        """The official training loss (see mask2former_loss.py) of a (B, H, W) semantic target at input resolution:
        {'loss_cls', 'loss_mask', 'loss_dice'}, each weighted and summed over all decoder stages; the total loss is
        their sum. A target smaller than the padded input (4x the mask logits) is padded bottom/right with
        ignore_index, as the segmentor pads the image."""
        cls_preds, mask_preds = self.forward_stages(feats)
        h, w = (4 * n for n in mask_preds[0].shape[-2:])
        pad_h, pad_w = max(h - target.shape[-2], 0), max(w - target.shape[-1], 0)
        if pad_h or pad_w:
            target = F.pad(target, (0, pad_w, 0, pad_h), value=ignore_index)
        return self.criterion(cls_preds, mask_preds, target, ignore_index)


def semantic_inference(cls_pred: torch.Tensor, mask_pred: torch.Tensor) -> torch.Tensor:
    """(B, Q, K+1) class logits and (B, Q, h, w) mask logits -> (B, K, h, w) scores: softmax over all K+1 slots,
    the "no object" slot dropped, times the sigmoid masks, summed over queries."""
    probs = cls_pred.softmax(-1)[..., :-1]
    return torch.einsum("bqc,bqhw->bchw", probs, mask_pred.sigmoid())


# ------------------------------------------------------------------------------------------------ the family


def is_official(part: dict) -> bool:
    return "query_feat.weight" in part and "cls_embed.weight" in part


def infer_official(part: dict, meta: dict) -> tuple[dict, int, list[str]]:
    """(head section, num_classes, assumed) of an official Mask2FormerHead state dict (keys without `decode_head.`).

    Head counts and GroupNorm groups are not stored in the weights: the released configs use 32 channels per
    attention head and 32 groups, which is assumed (a checkpoint's own config text, when readable, is used first)."""
    feat = part["query_feat.weight"].shape[1]
    heads = max(1, feat // 32)
    enc_layers = count_indices(part, r"pixel_decoder\.encoder\.layers\.(\d+)\.")
    dec_layers = count_indices(part, r"transformer_decoder\.layers\.(\d+)\.")
    offsets = part["pixel_decoder.encoder.layers.0.attentions.0.sampling_offsets.weight"].shape[0]
    ffn = lambda prefix: part[f"{prefix}.layers.0.ffns.0.layers.0.0.weight"].shape[0]  # noqa: E731
    section = {
        "type": "mask2former", "feat_channels": feat, "out_channels": part["mask_embed.4.weight"].shape[0],
        "num_queries": part["query_feat.weight"].shape[0],
        "enforce_decoder_input_project": any(k.startswith("decoder_input_projs.") for k in part),
        "pixel_decoder": {"num_layers": enc_layers, "num_heads": heads, "num_points": offsets // (heads * 3 * 2),
                          "feedforward_channels": ffn("pixel_decoder.encoder"),
                          "num_groups": 32},
        "transformer_decoder": {"num_layers": dec_layers, "num_heads": heads,
                                "feedforward_channels": ffn("transformer_decoder")},
    }
    assumed = [f"decode_head attention heads={heads} (32 channels per head)", "decode_head GroupNorm groups=32"]
    return section, part["cls_embed.weight"].shape[0] - 1, assumed


def build_mask2former(section, in_channels: list[int], num_classes: int) -> "Mask2FormerHead":
    return Mask2FormerHead(section, in_channels, num_classes)
