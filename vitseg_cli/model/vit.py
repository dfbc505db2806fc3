"""The `vit_adapter` family: a plain (DeiT / AugReg) ViT block stack inside the adapter, as the official `ViTAdapter`.

The stack is timm's attention and MLP blocks with layer scale and bicubic position-embedding resizing. Parameter names
follow the official code (`patch_embed.proj`, `blocks.i.gamma1/gamma2`, `pos_embed`) so official checkpoints load as
they are. There is no cls token and no final norm: the adapter reads the patch tokens. Beside the modules: how an
official state dict of this family is recognised and its spec inferred, and how a timm/DeiT classification
checkpoint initialises the stack.
"""

from __future__ import annotations

import math
from pathlib import Path
from functools import partial
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, trunc_normal_
from timm.models.vision_transformer import Attention as TimmAttention
from torch import nn

from ..errors import VitsegError
from .vit_config import BACKBONE_PRESETS
from .attention import attention
from .adapter import AdapterBackbone, adapter_args, adapter_layout, infer_adapter_fields, load_stack_pretrained


class Attention(TimmAttention):
    """timm's attention (its `qkv`/`proj` names are the official ones), through `attention.attention`, so that the
    'reference' path computes the official explicit form."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        return self.proj(attention(q, k, v).transpose(1, 2).reshape(b, n, c))


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
    """The ViT part of ViT-Adapter: patch embedding, position embedding at `pretrain_size`, and the blocks (the
    block-stack interface of `AdapterBackbone`)."""

    adapter_norm_eps = 1e-6
    fixed_input_size = None

    def __init__(self, pretrain_size: int = 224, patch_size: int = 16, embed_dim: int = 192, depth: int = 12,
                 num_heads: int = 3, mlp_ratio: float = 4.0, drop_path_rate: float = 0.0, layer_scale: bool = True,
                 make_block: Optional[Callable[[float], nn.Module]] = None):
        super().__init__()
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.depth = depth
        self.pretrain_grid = pretrain_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.pretrain_grid ** 2 + 1, embed_dim))
        rates = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist()  # cpu: builds under device("meta") too
        if make_block is None:  # the plain ViT's block; other families pass theirs (drop-path rate -> block)
            make_block = partial(Block, embed_dim, num_heads, mlp_ratio, layer_scale=layer_scale)
        self.blocks = nn.ModuleList(make_block(drop_path=rates[i]) for i in range(depth))
        trunc_normal_(self.pos_embed, std=0.02)

    def resized_pos_embed(self, h: int, w: int) -> torch.Tensor:
        """Position embedding for an h x w token grid (cls slot dropped, bicubic resize)."""
        g = self.pretrain_grid
        pos = self.pos_embed[:, 1:].reshape(1, g, g, -1).permute(0, 3, 1, 2)
        if torch.jit.is_tracing() or (h, w) != (g, g):  # traced sizes (ONNX export) are free at run time
            pos = F.interpolate(pos, size=(h, w), mode="bicubic", align_corners=False)
        return pos.reshape(1, -1, h * w).permute(0, 2, 1)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        tokens, h, w = self.patch_embed(x)
        return tokens + self.resized_pos_embed(h, w), h, w

    def initial_cls(self, batch: int) -> None:
        return None

    def forward_blocks(self, x: torch.Tensor, first: int, last: int, h: int, w: int) -> torch.Tensor:
        for blk in self.blocks[first:last + 1]:
            x = blk(x)
        return x

    def layer_id(self, name: str) -> Optional[int]:
        if name == "pos_embed" or name.startswith("patch_embed."):
            return 0
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        return None

    def no_weight_decay(self, name: str) -> bool:
        return name in ("pos_embed", "level_embed")


# ------------------------------------------------------------------------------------------ timm / DeiT pretrained

_TIMM_DROPPED = ("cls_token", "dist_token", "norm.", "fc_norm.", "head.", "head_dist.", "pre_logits.")


def load_vit_pretrained(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> list[str]:
    """Initialise the ViT part (patch embed, pos embed, blocks) of a vit_adapter segmentor from the state dict of a
    timm/DeiT classification checkpoint read from `path`."""
    vit: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if k.startswith(_TIMM_DROPPED):
            continue
        k = k.replace(".ls1.gamma", ".gamma1").replace(".ls2.gamma", ".gamma2")
        vit[k] = v
    backbone = model.backbone
    own = backbone.state_dict()
    wanted = [k for k in own if k == "pos_embed" or k.startswith(("patch_embed.", "blocks."))]
    if "pos_embed" in vit:
        pos = vit["pos_embed"]
        if pos.shape[1] == own["pos_embed"].shape[1] - 1:  # no cls slot: add an unused one
            pos = torch.cat([pos.new_zeros(1, 1, pos.shape[2]), pos], dim=1)
        if pos.shape != own["pos_embed"].shape:
            grid = int(round(math.sqrt(pos.shape[1] - 1)))
            raise VitsegError(f"{path}: pos_embed {tuple(pos.shape)} fits pretrain_size {grid * 16}, the spec has "
                              f"{backbone.stack.pretrain_grid * 16} (set model.backbone.pretrain_size)")
        vit["pos_embed"] = pos
    optional = {k for k in wanted if k.endswith((".gamma1", ".gamma2"))}
    loaded = load_stack_pretrained(backbone, vit, wanted, optional, path, "ViT")
    notes = [f"ViT initialised from {path.name} ({loaded} tensors)"]
    if any(k not in vit for k in optional):
        notes.append("the checkpoint has no layer-scale gammas: they start at 1.0")
    return notes


# ------------------------------------------------------------------------------------------------ the family


def is_official(state: dict) -> bool:
    proj = state.get("backbone.patch_embed.proj.weight")
    return ("backbone.blocks.0.attn.qkv.bias" in state and "backbone.cls_token" not in state
            and "backbone.blocks.0.mlp.w1.weight" not in state and (proj is None or proj.shape[-1] == 16))


HEADS_BY_DIM = {192: 3, 384: 6, 768: 12, 1024: 16}  # official ViT convention: head dim 64


def infer_official(state: dict, meta: dict) -> tuple[dict[str, Any], list[str]]:
    """The backbone section that fits an official ViT-Adapter state dict, and the fields that had to be assumed."""
    g = lambda k: state[f"backbone.{k}"]  # noqa: E731
    d, depth, n_inter = adapter_layout(state, "blocks", "ViT blocks")
    assumed: list[str] = []
    num_heads = HEADS_BY_DIM.get(d) or (max(3, d // 64) if d % max(3, d // 64) == 0 else 1)
    assumed.append(f"num_heads={num_heads} (convention for embed_dim {d})")
    common, more = infer_adapter_fields(state, d, depth, n_inter)
    preset = {v["embed_dim"]: k for k, v in BACKBONE_PRESETS.items() if k != "nano"}.get(d)
    dpr = BACKBONE_PRESETS[preset]["drop_path_rate"] if preset else 0.1
    assumed += [f"drop_path_rate={dpr} (training only)", *more]
    section = dict(
        type="vit_adapter", pretrain_size=int(round(math.sqrt(g("pos_embed").shape[1] - 1))) * 16,
        embed_dim=d, depth=depth, num_heads=num_heads, mlp_ratio=g("blocks.0.mlp.fc1.weight").shape[0] / d,
        drop_path_rate=dpr, **common,
        use_extra_extractor=any(".extra_extractors." in k for k in state),
        layer_scale="backbone.blocks.0.gamma1" in state,
    )
    return section, assumed


def build_vit_adapter(b) -> AdapterBackbone:
    stack = VisionTransformer(b.pretrain_size, b.patch_size, b.embed_dim, b.depth, b.num_heads, b.mlp_ratio,
                              b.drop_path_rate, b.layer_scale)
    return AdapterBackbone(stack, use_extra_extractor=b.use_extra_extractor, init_values=b.init_values,
                           **adapter_args(b))
