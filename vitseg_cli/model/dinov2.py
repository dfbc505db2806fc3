"""The `dinov2_adapter` family: ViT-Adapter on DINOv2's patch-14 ViT, as the `ViTAdapter` of DINOv2's
`segmentation_m2f` evaluation computes it.

What differs from the plain `vit_adapter`: tokens on the /14 grid while the adapter pyramid stays on /16 (the adapter
resizes between them), a cls token (with its own position-embedding slot) carried through the interactions, an
optional SwiGLU FFN with separate `w1`/`w2`/`w3` matrices, optional qkv bias, and `freeze_vit`, which keeps the ViT's
own weights out of training as the official evaluation does. Key names are the official ones (`cls_token`,
`pos_embed`, `blocks.i.gamma1`, `blocks.i.mlp.w1`, ...), so released checkpoints load as they are. Beside the modules:
how an official state dict of this family is recognised and its spec inferred (the spec section and the
official-config translation are in `dinov2_config.py`).
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Attention
from torch import nn

from .adapter import AdapterBackbone, adapter_args, adapter_layout, conventional_num_heads, infer_adapter_fields
from .vit import Block, VisionTransformer


def swiglu_hidden(dim: int, mlp_ratio: float) -> int:
    """The official SwiGLU width: two thirds of the MLP width, rounded up to a multiple of 8 (ViT-g: 4096)."""
    hidden = int(2 * int(dim * mlp_ratio) / 3)
    return (hidden + 7) // 8 * 8


class SwiGLUFFN(nn.Module):
    """silu(w1 x) * (w2 x) -> w3, three separate linear layers with bias."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden)
        self.w2 = nn.Linear(dim, hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w3(F.silu(self.w1(x)) * self.w2(x))


class Dinov2Block(Block):
    """The plain ViT block with the DINOv2 options: qkv bias on or off, GELU MLP or SwiGLU FFN."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, drop_path: float, layer_scale: bool,
                 qkv_bias: bool, ffn_type: str):
        super().__init__(dim, num_heads, mlp_ratio, drop_path, layer_scale)
        if not qkv_bias:
            self.attn = Attention(dim, num_heads=num_heads, qkv_bias=False)
        if ffn_type == "swiglu":
            self.mlp = SwiGLUFFN(dim, swiglu_hidden(dim, mlp_ratio))


class Dinov2VisionTransformer(VisionTransformer):
    """DINOv2's ViT as the adapter's block stack: patch-14 tokens, a bicubically resized position embedding and,
    with `use_cls`, a cls token (plus its position slot) that runs through every block."""

    def __init__(self, b):
        def make_block(drop_path: float) -> nn.Module:
            return Dinov2Block(b.embed_dim, b.num_heads, b.mlp_ratio, drop_path, b.layer_scale, b.qkv_bias,
                               b.ffn_type)

        super().__init__(b.pretrain_size, b.patch_size, b.embed_dim, b.depth, b.num_heads, b.mlp_ratio,
                         b.drop_path_rate, b.layer_scale, make_block=make_block)
        self.use_cls = b.use_cls
        if b.use_cls:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, b.embed_dim))
            trunc_normal_(self.cls_token, std=0.02)

    def initial_cls(self, batch: int) -> Optional[torch.Tensor]:
        if not self.use_cls:
            return None
        return (self.cls_token + self.pos_embed[:, :1]).expand(batch, -1, -1)

    def layer_id(self, name: str) -> Optional[int]:
        return 0 if name == "cls_token" else super().layer_id(name)

    def no_weight_decay(self, name: str) -> bool:
        return name == "cls_token" or super().no_weight_decay(name)


def vit_parameter_names(backbone: nn.Module) -> list[str]:
    """The names of the ViT's own weights inside a dinov2_adapter backbone (what `freeze_vit` freezes)."""
    return [name for name, _ in backbone.named_parameters() if backbone.stack.layer_id(name) is not None]


def set_vit_trainable(backbone: nn.Module, trainable: bool) -> None:
    """Freeze (official `freeze_vit`) or unfreeze the ViT's own weights; the adapter always trains."""
    params = dict(backbone.named_parameters())
    for name in vit_parameter_names(backbone):
        params[name].requires_grad_(trainable)


# ------------------------------------------------------------------------------------------------ the family


def is_dinov2_vit(state: dict) -> bool:
    """Whether an official ViT-Adapter state dict holds DINOv2's ViT: an absolute position embedding (BEiT has none)
    with a cls token, a patch other than 16 or SwiGLU weights (the plain ViT-Adapter has none of these)."""
    proj = state.get("backbone.patch_embed.proj.weight")
    return ("backbone.pos_embed" in state and proj is not None and proj.ndim == 4
            and ("backbone.cls_token" in state or proj.shape[-1] != 16 or "backbone.blocks.0.mlp.w1.weight" in state))


def is_official(state: dict) -> bool:
    return is_dinov2_vit(state) and "backbone.interactions.0.injector.gamma" in state


def infer_official(state: dict, meta: dict) -> tuple[dict[str, Any], list[str]]:
    """The backbone section that fits an official DINOv2 ViT-Adapter state dict, and the fields it had to assume."""
    g = lambda k: state[f"backbone.{k}"]  # noqa: E731
    d, depth, n_inter = adapter_layout(state, "blocks", "ViT blocks")
    patch = g("patch_embed.proj.weight").shape[-1]
    grid = int(round(math.sqrt(g("pos_embed").shape[1] - 1)))
    num_heads = conventional_num_heads(state, d)
    assumed = [f"num_heads={num_heads} (as many as the deformable-attention heads)"]
    swiglu = "backbone.blocks.0.mlp.w1.weight" in state
    hidden = g("blocks.0.mlp.w1.weight" if swiglu else "blocks.0.mlp.fc1.weight").shape[0]
    mlp_ratio = 4.0 if swiglu and hidden == swiglu_hidden(d, 4.0) else hidden / d
    if swiglu and mlp_ratio != 4.0:
        mlp_ratio = hidden * 3 / 2 / d
        assumed.append(f"mlp_ratio={mlp_ratio:g} (from the SwiGLU width {hidden})")
    common, more = infer_adapter_fields(state, d, depth, n_inter)
    assumed += ["drop_path_rate=0.4 (training only)", "freeze_vit=true (training only)", *more]
    section = dict(
        type="dinov2_adapter", pretrain_size=grid * patch, patch_size=patch, embed_dim=d, depth=depth,
        num_heads=num_heads, mlp_ratio=mlp_ratio, drop_path_rate=0.4, **common,
        use_extra_extractor=any(".extra_extractors." in k for k in state),
        layer_scale="backbone.blocks.0.gamma1" in state, qkv_bias="backbone.blocks.0.attn.qkv.bias" in state,
        ffn_type="swiglu" if swiglu else "mlp", use_cls="backbone.cls_token" in state, freeze_vit=True,
    )
    return section, assumed


def build_dinov2_adapter(b) -> AdapterBackbone:
    backbone = AdapterBackbone(Dinov2VisionTransformer(b), use_extra_extractor=b.use_extra_extractor,
                               init_values=b.init_values, **adapter_args(b))
    if b.freeze_vit:
        set_vit_trainable(backbone, False)
    return backbone
