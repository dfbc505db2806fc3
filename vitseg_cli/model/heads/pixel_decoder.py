"""Mask2Former's pixel decoder (the official `MSDeformAttnPixelDecoder`) and the pieces it shares with the head.

The pixel decoder projects the 1/32, 1/16 and 1/8 backbone maps to `feat_channels`, runs a deformable-attention
encoder over all their tokens together (each token attends to every level around its own cell centre), and gives
back those three maps (1/32 first) plus a 1/4 `mask_feature` made FPN-style from f1 and the refined 1/8 map.
Module and parameter names are those of the official state dict (mmcv `ConvModule`, `BaseTransformerLayer`, `FFN`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..msda import MSDeformAttn, split_levels

NUM_LEVELS = 3  # encoder levels and transformer-decoder levels: 1/32, 1/16, 1/8


def sine_position_encoding(height: int, width: int, num_feats: int, device: torch.device,
                           temperature: float = 10000.0, eps: float = 1e-6) -> torch.Tensor:
    """DETR's normalised sine encoding of an unpadded (height, width) grid -> (1, 2*num_feats, height, width).

    Positions are (index+1)/(size+eps)*2pi; channels are [y encodings, x encodings], each interleaving
    sin(p/t_0), cos(p/t_1), sin(p/t_2), ... with t_k = temperature^(2*floor(k/2)/num_feats).
    """
    scale = 2 * math.pi
    y = torch.arange(1, height + 1, dtype=torch.float32, device=device) / (height + eps) * scale
    x = torch.arange(1, width + 1, dtype=torch.float32, device=device) / (width + eps) * scale
    k = torch.arange(num_feats, dtype=torch.float32, device=device)
    dim_t = temperature ** (2 * torch.div(k, 2, rounding_mode="floor") / num_feats)

    def encode(p: torch.Tensor) -> torch.Tensor:  # (n,) -> (n, num_feats)
        angles = p[:, None] / dim_t
        return torch.stack((angles[:, 0::2].sin(), angles[:, 1::2].cos()), dim=2).flatten(1)

    pos_y = encode(y)[:, None, :].expand(height, width, num_feats)
    pos_x = encode(x)[None, :, :].expand(height, width, num_feats)
    return torch.cat((pos_y, pos_x), dim=2).permute(2, 0, 1).unsqueeze(0)


class ConvNormAct(nn.Sequential):
    """mmcv ConvModule with GroupNorm: conv (`conv`), GroupNorm (`gn`), optional ReLU (`activate`)."""

    def __init__(self, cin: int, cout: int, kernel_size: int, num_groups: int, bias: bool, act: bool):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2, bias=bias)
        self.gn = nn.GroupNorm(num_groups, cout)
        if act:
            self.activate = nn.ReLU(inplace=True)


class FFN(nn.Module):
    """mmcv FFN with two layers: x + Linear(ReLU(Linear(x))) (keys `layers.0.0`, `layers.1`)."""

    def __init__(self, dims: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Sequential(nn.Linear(dims, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout)),
            nn.Linear(hidden, dims), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x)


class DeformableEncoderLayer(nn.Module):
    """Post-norm encoder layer (mmcv BaseTransformerLayer, order self_attn-norm-ffn-norm):
    q = LN(q + MSDA(q + pos, value=q)); q = LN(FFN(q)) (the FFN adds its own residual)."""

    def __init__(self, dims: int, num_heads: int, num_points: int, feedforward_channels: int):
        super().__init__()
        self.attentions = nn.ModuleList([MSDeformAttn(dims, NUM_LEVELS, num_heads, num_points)])
        self.ffns = nn.ModuleList([FFN(dims, feedforward_channels)])
        self.norms = nn.ModuleList([nn.LayerNorm(dims), nn.LayerNorm(dims)])

    def forward(self, query: torch.Tensor, pos: torch.Tensor, reference_points: torch.Tensor,
                spatial_shapes: list[tuple[int, int]]) -> torch.Tensor:
        query = self.norms[0](query + self.attentions[0](query + pos, reference_points, query, spatial_shapes))
        return self.norms[1](self.ffns[0](query))


class DeformableEncoder(nn.Module):
    """A stack of `DeformableEncoderLayer`s (DetrTransformerEncoder, post-norm: no final norm)."""

    def __init__(self, num_layers: int, dims: int, num_heads: int, num_points: int, feedforward_channels: int):
        super().__init__()
        self.layers = nn.ModuleList(DeformableEncoderLayer(dims, num_heads, num_points, feedforward_channels)
                                    for _ in range(num_layers))

    def forward(self, query: torch.Tensor, pos: torch.Tensor, reference_points: torch.Tensor,
                spatial_shapes: list[tuple[int, int]]) -> torch.Tensor:
        for layer in self.layers:
            query = layer(query, pos, reference_points, spatial_shapes)
        return query


def caffe2_xavier_init(conv: nn.Conv2d) -> None:
    """mmcv caffe2_xavier_init: kaiming-uniform with a=1 over fan_in, bias 0."""
    nn.init.kaiming_uniform_(conv.weight, a=1, mode="fan_in", nonlinearity="leaky_relu")
    if conv.bias is not None:
        nn.init.constant_(conv.bias, 0.0)


def _cell_centres(h: int, w: int, device: torch.device) -> torch.Tensor:
    """(h*w, 2) normalised (x, y) centres of a grid's cells, row-major."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32, device=device),
                            torch.arange(w, dtype=torch.float32, device=device), indexing="ij")
    return torch.stack(((xs.flatten() + 0.5) / w, (ys.flatten() + 0.5) / h), dim=-1)


class MSDeformAttnPixelDecoder(nn.Module):
    """forward([f1, f2, f3, f4]) -> (mask_feature (B, out_channels, H/4, W/4), [1/32, 1/16, 1/8 maps])."""

    def __init__(self, in_channels: list[int], feat_channels: int, out_channels: int, num_layers: int,
                 num_heads: int, num_points: int, feedforward_channels: int, num_groups: int):
        super().__init__()
        if len(in_channels) != NUM_LEVELS + 1:
            raise ValueError(f"the pixel decoder needs {NUM_LEVELS + 1} input levels, got {len(in_channels)}")
        self.feat_channels = feat_channels
        # low to high resolution: f4, f3, f2
        self.input_convs = nn.ModuleList(
            ConvNormAct(in_channels[-1 - i], feat_channels, 1, num_groups, bias=True, act=False)
            for i in range(NUM_LEVELS))
        self.encoder = DeformableEncoder(num_layers, feat_channels, num_heads, num_points, feedforward_channels)
        self.level_encoding = nn.Embedding(NUM_LEVELS, feat_channels)
        # the FPN step for the one level the encoder does not see, f1 (lists, as the official key names are)
        self.lateral_convs = nn.ModuleList([ConvNormAct(in_channels[0], feat_channels, 1, num_groups, False, False)])
        self.output_convs = nn.ModuleList([ConvNormAct(feat_channels, feat_channels, 3, num_groups, False, True)])
        self.mask_feature = nn.Conv2d(feat_channels, out_channels, 1)
        self.init_weights()

    def init_weights(self) -> None:
        """As the official `init_weights`: xavier/caffe2-xavier convs, N(0,1) level encoding, xavier-normal
        encoder matrices, then the deformable attentions' own initialisation."""
        for conv in self.input_convs:
            nn.init.xavier_uniform_(conv.conv.weight, gain=1)
            nn.init.constant_(conv.conv.bias, 0.0)
        for lateral, output in zip(self.lateral_convs, self.output_convs):
            caffe2_xavier_init(lateral.conv)
            caffe2_xavier_init(output.conv)
        caffe2_xavier_init(self.mask_feature)
        nn.init.normal_(self.level_encoding.weight, 0.0, 1.0)
        for p in self.encoder.parameters():
            if p.dim() > 1:
                nn.init.xavier_normal_(p)
        for layer in self.encoder.layers:
            layer.attentions[0].reset_parameters()

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if len(feats) != NUM_LEVELS + 1:
            raise ValueError(f"the pixel decoder needs {NUM_LEVELS + 1} feature maps, got {len(feats)}")
        tokens, positions, centres, shapes = [], [], [], []
        for i, conv in enumerate(self.input_convs):
            feat = feats[NUM_LEVELS - i]
            h, w = feat.shape[-2:]
            pos = sine_position_encoding(h, w, self.feat_channels // 2, feat.device).to(feat.dtype)
            pos = pos + self.level_encoding.weight[i].view(1, -1, 1, 1)
            tokens.append(conv(feat).flatten(2).transpose(1, 2))
            positions.append(pos.flatten(2).transpose(1, 2))
            centres.append(_cell_centres(h, w, feat.device))
            shapes.append((h, w))
        memory = self.encoder(torch.cat(tokens, 1), torch.cat(positions, 1),
                              torch.cat(centres, 0).unsqueeze(0).to(feats[0].dtype), shapes)
        memory = memory.transpose(1, 2)
        levels = split_levels(memory, [h * w for h, w in shapes], -1)
        # reshape, not unflatten: the ONNX exporter bakes unflatten's sizes in as constants
        outs = [m.reshape(m.shape[0], m.shape[1], h, w) for m, (h, w) in zip(levels, shapes)]
        lateral = self.lateral_convs[0](feats[0])
        up = F.interpolate(outs[-1], size=lateral.shape[-2:], mode="bilinear", align_corners=False)
        return self.mask_feature(self.output_convs[0](lateral + up)), outs
