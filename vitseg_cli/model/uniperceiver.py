"""The `uniperceiver_adapter` family: Uni-Perceiver's BERT-style layers inside the adapter, as the official
`UniPerceiverAdapter` (on `UnifiedBertEncoder`, official `base/uniperceiver.py`).

Embedding: a 16x16 patch conv, plus `spatial_pos_embed` (the img_size/16 grid, resized bicubic to the input's grid)
plus `temporal_pos_embed[0]`, then a LayerNorm. Layers: x += gamma_1 * attn(norm1(x)); x += gamma_2 *
linear2(GELU(linear1(norm2(x)))), attention with `in_proj` (q, k and v biases) and `out_proj`, optionally inside
windows (zero-padded at the bottom/right, the padding taking part in the attention as in the official code). No cls
token, no relative position bias; every LayerNorm has eps 1e-5 (PyTorch's default), the adapter's too. Parameter
names are the official ones, so official checkpoints load strictly as they are.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

from .adapter import AdapterBackbone, adapter_args, adapter_layout, conventional_num_heads, infer_adapter_fields
from .attention import attention

PATCH = 16  # hard-coded in the official position-embedding resize


class SelfAttention(nn.Module):
    """Multi-head self-attention over all tokens, or within `window` x `window` blocks of the token grid."""

    def __init__(self, dim: int, num_heads: int, window: Optional[int] = None):
        super().__init__()
        self.num_heads = num_heads
        self.window = window
        self.in_proj = nn.Linear(dim, dim * 3)
        self.out_proj = nn.Linear(dim, dim)

    def _attend(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.in_proj(x).view(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        return attention(q, k, v).transpose(1, 2).reshape(b, n, c)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        if self.window is None:
            return self.out_proj(self._attend(x))
        b, _, c = x.shape
        s = self.window
        hp, wp = math.ceil(h / s) * s, math.ceil(w / s) * s
        grid = F.pad(x.view(b, h, w, c), (0, 0, 0, wp - w, 0, hp - h))
        windows = grid.view(b, hp // s, s, wp // s, s, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, s * s, c)
        out = self._attend(windows).view(b, hp // s, wp // s, s, s, c).permute(0, 1, 3, 2, 4, 5)
        out = out.reshape(b, hp, wp, c)[:, :h, :w].reshape(b, h * w, c)
        return self.out_proj(out)


class BertLayer(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, drop_path: float, window: Optional[int]):
        super().__init__()
        self.self_attn = SelfAttention(dim, num_heads, window)
        self.linear1 = nn.Linear(dim, int(dim * mlp_ratio))
        self.act_fn = nn.GELU()
        self.linear2 = nn.Linear(int(dim * mlp_ratio), dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.gamma_1 = nn.Parameter(torch.zeros(dim))
        self.gamma_2 = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + self.gamma_1 * self.drop_path(self.self_attn(self.norm1(x), h, w))
        return x + self.gamma_2 * self.drop_path(self.linear2(self.act_fn(self.linear1(self.norm2(x)))))


class PatchEmbed(nn.Module):
    """Patch conv + spatial (resized to the input grid) and temporal (frame 0) position embeddings."""

    def __init__(self, img_size: int, patch_size: int, embed_dim: int):
        super().__init__()
        self.grid = img_size // PATCH
        self.spatial_pos_embed = nn.Embedding((img_size // patch_size) ** 2, embed_dim)
        self.temporal_pos_embed = nn.Embedding(8, embed_dim)
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        h, w = x.shape[-2] // PATCH, x.shape[-1] // PATCH
        tokens = self.proj(x).flatten(2).transpose(1, 2)
        pos = self.spatial_pos_embed.weight.reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
        pos = F.interpolate(pos, size=(h, w), mode="bicubic", align_corners=False).flatten(2).transpose(1, 2)
        return tokens + pos + self.temporal_pos_embed.weight[0], h, w


class VisualPatchEmbedding(nn.Module):
    def __init__(self, img_size: int, patch_size: int, embed_dim: int):
        super().__init__()
        self.embeddings_norm = nn.LayerNorm(embed_dim)
        self.patch_embed = PatchEmbed(img_size, patch_size, embed_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        tokens, h, w = self.patch_embed(x)
        return self.embeddings_norm(tokens), h, w


class UnifiedBertEncoder(nn.Module):
    """The Uni-Perceiver part of Uni-Perceiver-Adapter (the block-stack interface of `AdapterBackbone`)."""

    adapter_norm_eps = 1e-5
    fixed_input_size = None

    def __init__(self, img_size: int = 224, patch_size: int = 16, embed_dim: int = 768, depth: int = 12,
                 num_heads: int = 12, mlp_ratio: float = 4.0, drop_path_rate: float = 0.0,
                 window_attn: Optional[Sequence[bool]] = None, window_size: Optional[Sequence[Optional[int]]] = None):
        super().__init__()
        self.embed_dim = embed_dim
        self.depth = depth
        windowed = list(window_attn) if window_attn is not None else [False] * depth
        sizes = list(window_size) if window_size is not None else [14] * depth
        rates = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist()
        self.layers = nn.ModuleList(
            BertLayer(embed_dim, num_heads, mlp_ratio, rates[i], sizes[i] if windowed[i] else None)
            for i in range(depth))
        self.visual_embed = VisualPatchEmbedding(img_size, patch_size, embed_dim)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        return self.visual_embed(x)

    def initial_cls(self, batch: int) -> None:
        return None

    def forward_blocks(self, x: torch.Tensor, first: int, last: int, h: int, w: int) -> torch.Tensor:
        for layer in self.layers[first:last + 1]:
            x = layer(x, h, w)
        return x

    def layer_id(self, name: str) -> Optional[int]:
        """None for every name: the official LayerDecayOptimizerConstructor knows only `blocks.i` / `patch_embed` /
        `cls_token` / `pos_embed`, so the released config trains `layers.i` and `visual_embed` at the top layer's
        rate, like the adapter's modules."""
        return None

    def no_weight_decay(self, name: str) -> bool:
        return False  # the official constructor exempts only 1-D tensors and biases


# ------------------------------------------------------------------------------------------------ the family


def is_official(state: dict) -> bool:
    return "backbone.visual_embed.patch_embed.proj.weight" in state


def infer_official(state: dict, meta: dict) -> tuple[dict[str, Any], list[str]]:
    """The backbone section that fits an official Uni-Perceiver-Adapter state dict, and what had to be assumed."""
    g = lambda k: state[f"backbone.{k}"]  # noqa: E731
    d, depth, n_inter = adapter_layout(state, "layers", "Uni-Perceiver layers")
    grid = math.isqrt(g("visual_embed.patch_embed.spatial_pos_embed.weight").shape[0])
    num_heads = conventional_num_heads(state, d)
    common, more = infer_adapter_fields(state, d, depth, n_inter)
    assumed = [f"num_heads={num_heads} (convention: as many as the deformable-attention heads)",
               "window_attn: none (global attention in every layer, as the released config)",
               "drop_path_rate=0.4, init_values=0 (training only)", *more]
    section = dict(
        type="uniperceiver_adapter", img_size=grid * PATCH, embed_dim=d, depth=depth, num_heads=num_heads,
        mlp_ratio=g("layers.0.linear1.weight").shape[0] / d, drop_path_rate=0.4, init_values=0.0, **common)
    return section, assumed


def build_uniperceiver_adapter(b) -> AdapterBackbone:
    stack = UnifiedBertEncoder(b.img_size, b.patch_size, b.embed_dim, b.depth, b.num_heads, b.mlp_ratio,
                               b.drop_path_rate, b.window_attn, b.window_size)
    return AdapterBackbone(stack, init_values=b.init_values, use_extra_extractor=True, **adapter_args(b))
