"""Plain ViT on timm's attention and MLP blocks, with layer scale and bicubic position-embedding resizing.

Parameter names follow the official ViT-Adapter code (`patch_embed.proj`, `blocks.i.gamma1/gamma2`, `pos_embed`) so
official checkpoints load as they are. There is no cls token and no final norm: the adapter reads the patch tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, trunc_normal_
from timm.models.vision_transformer import Attention
from torch import nn


class Block(nn.Module):
    """Pre-norm transformer block; `gamma1`/`gamma2` scale the two branches when layer scale is on."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0,
                 layer_scale: bool = True):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=True)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)
        self.layer_scale = layer_scale
        if layer_scale:
            self.gamma1 = nn.Parameter(torch.ones(dim))
            self.gamma2 = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layer_scale:
            x = x + self.drop_path(self.gamma1 * self.attn(self.norm1(x)))
            return x + self.drop_path(self.gamma2 * self.mlp(self.norm2(x)))
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection; returns tokens and the token grid size."""

    def __init__(self, patch_size: int, embed_dim: int, in_chans: int = 3):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        h, w = x.shape[-2:]
        return x.flatten(2).transpose(1, 2), h, w


class VisionTransformer(nn.Module):
    """The ViT part of ViT-Adapter: patch embedding, position embedding at `pretrain_size`, and the blocks."""

    def __init__(self, pretrain_size: int = 224, patch_size: int = 16, embed_dim: int = 192, depth: int = 12,
                 num_heads: int = 3, mlp_ratio: float = 4.0, drop_path_rate: float = 0.0, layer_scale: bool = True):
        super().__init__()
        self.embed_dim = embed_dim
        self.pretrain_grid = pretrain_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.pretrain_grid ** 2 + 1, embed_dim))
        rates = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist()  # cpu: builds under device("meta") too
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, drop_path=rates[i], layer_scale=layer_scale) for i in range(depth))
        trunc_normal_(self.pos_embed, std=0.02)

    def resized_pos_embed(self, h: int, w: int) -> torch.Tensor:
        """Position embedding for an h x w token grid (cls slot dropped, bicubic resize)."""
        g = self.pretrain_grid
        pos = self.pos_embed[:, 1:].reshape(1, g, g, -1).permute(0, 3, 1, 2)
        if (h, w) != (g, g):
            pos = F.interpolate(pos, size=(h, w), mode="bicubic", align_corners=False)
        return pos.reshape(1, -1, h * w).permute(0, 2, 1)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        tokens, h, w = self.patch_embed(x)
        return tokens + self.resized_pos_embed(h, w), h, w
