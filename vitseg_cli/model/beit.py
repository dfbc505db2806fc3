"""The `beit_adapter` family: BEiT / BEiTv2 blocks inside the adapter, as the official `BEiTAdapter`.

The stack is BEiT's (official `base/beit.py`): a cls token carried through the interactions, attention whose `qkv`
bias is cat(q_bias, 0, v_bias), a relative position bias table per block (or one shared table, which the official
adapter builds but never passes to its blocks), layer scale `gamma_1`/`gamma_2`, LayerNorm eps 1e-6 everywhere. The
bias table is fixed to the window img_size / 16, so the model takes inputs of exactly img_size. Parameter and buffer
names are the official ones, so official checkpoints load strictly as they are.

Beside the modules: how an official state dict of this family is recognised and its spec inferred, and how a BEiT /
BEiTv2 pretraining file initialises the stack (relative position tables resized to the training window as the
official loader does).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, trunc_normal_
from torch import nn

from ..errors import VitsegError
from .adapter import (AdapterBackbone, adapter_args, adapter_layout, conventional_num_heads, infer_adapter_fields,
                      load_stack_pretrained)
from .attention import attention
from .vit import PatchEmbed

Window = tuple[int, int]
EXTRA_ROWS = 3  # table rows after the (2Wh-1)(2Ww-1) patch offsets: cls->patch, patch->cls, cls->cls


def relative_position_index(window: Window) -> torch.Tensor:
    """Which table row each (query, key) pair of the Wh*Ww patches plus a leading cls token reads:
    (Wh*Ww+1, Wh*Ww+1) int64. Patch pairs read the row of their (dy, dx) offset, rows after the offsets serve cls."""
    wh, ww = window
    ys, xs = torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    offsets = (2 * wh - 1) * (2 * ww - 1)
    index = torch.empty(wh * ww + 1, wh * ww + 1, dtype=torch.long)
    index[1:, 1:] = (ys[:, None] - ys[None, :] + wh - 1) * (2 * ww - 1) + (xs[:, None] - xs[None, :] + ww - 1)
    index[0, :] = offsets          # cls attends to a patch
    index[:, 0] = offsets + 1      # a patch attends to cls
    index[0, 0] = offsets + 2      # cls attends to cls
    return index


def table_rows(window: Window) -> int:
    return (2 * window[0] - 1) * (2 * window[1] - 1) + EXTRA_ROWS


def _gather_bias(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(heads, n, n) attention-logit bias of a table (rows, heads) read through an (n, n) index."""
    n = index.shape[0]
    return table[index.reshape(-1)].view(n, n, -1).permute(2, 0, 1)


class RelativePositionBias(nn.Module):
    """One table shared by all blocks (`use_shared_rel_pos_bias`; `rel_pos_bias.*` in checkpoints)."""

    def __init__(self, window: Window, num_heads: int):
        super().__init__()
        self.relative_position_bias_table = nn.Parameter(torch.zeros(table_rows(window), num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window))

    def forward(self) -> torch.Tensor:
        return _gather_bias(self.relative_position_bias_table, self.relative_position_index)


class Attention(nn.Module):
    """BEiT attention: bias-free `qkv` plus `q_bias`/`v_bias` (k gets none), and a relative position bias per head
    when the block has its own window."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, window: Optional[Window]):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.q_bias = self.v_bias = None
        if window is not None:
            self.relative_position_bias_table = nn.Parameter(torch.zeros(table_rows(window), num_heads))
            self.register_buffer("relative_position_index", relative_position_index(window))
        else:
            self.relative_position_bias_table = None
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        bias = None
        if self.q_bias is not None:
            bias = torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])
        q, k, v = F.linear(x, self.qkv.weight, bias).view(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        mask = None
        if self.relative_position_bias_table is not None:
            mask = _gather_bias(self.relative_position_bias_table, self.relative_position_index)[None].to(q.dtype)
        out = attention(q, k, v, mask, scale_query=True)  # softmax(q k^T / sqrt(d) + bias) v
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """x += gamma_1 * attn(norm1(x)); x += gamma_2 * mlp(norm2(x)); gammas exist whenever init_values is set."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, drop_path: float,
                 init_values: Optional[float], window: Optional[Window]):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias, window)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)
        if init_values is not None:
            self.gamma_1 = nn.Parameter(init_values * torch.ones(dim))
            self.gamma_2 = nn.Parameter(init_values * torch.ones(dim))
        else:
            self.gamma_1 = self.gamma_2 = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attn = self.attn(self.norm1(x))
        if self.gamma_1 is None:
            x = x + self.drop_path(attn)
            return x + self.drop_path(self.mlp(self.norm2(x)))
        x = x + self.drop_path(self.gamma_1 * attn)
        return x + self.drop_path(self.gamma_2 * self.mlp(self.norm2(x)))


class BEiT(nn.Module):
    """The BEiT part of BEiT-Adapter (the block-stack interface of `AdapterBackbone`)."""

    adapter_norm_eps = 1e-6

    def __init__(self, img_size: Window = (512, 512), patch_size: int = 16, embed_dim: int = 768, depth: int = 12,
                 num_heads: int = 12, mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_path_rate: float = 0.0,
                 init_values: Optional[float] = None, use_rel_pos_bias: bool = True,
                 use_shared_rel_pos_bias: bool = False):
        super().__init__()
        self.embed_dim = embed_dim
        self.depth = depth
        self.img_size = tuple(img_size)
        self.window: Window = (img_size[0] // patch_size, img_size[1] // patch_size)
        self.use_rel_pos_bias = use_rel_pos_bias
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.rel_pos_bias = RelativePositionBias(self.window, num_heads) if use_shared_rel_pos_bias else None
        rates = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist()
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, rates[i], init_values,
                  self.window if use_rel_pos_bias else None)
            for i in range(depth))
        trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @property
    def fixed_input_size(self) -> Optional[Window]:
        return self.img_size if self.use_rel_pos_bias else None

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        fixed = self.fixed_input_size
        if fixed is not None and tuple(x.shape[-2:]) != fixed:
            raise VitsegError(f"this BEiT-Adapter takes inputs of exactly {fixed[1]}x{fixed[0]} (W x H, its img_size: "
                              f"the relative position bias is fixed to a {self.window[1]}x{self.window[0]} window), "
                              f"got {x.shape[-1]}x{x.shape[-2]}")
        return self.patch_embed(x)

    def initial_cls(self, batch: int) -> torch.Tensor:
        return self.cls_token.expand(batch, -1, -1)

    def forward_blocks(self, x: torch.Tensor, first: int, last: int, h: int, w: int) -> torch.Tensor:
        # the official adapter calls its blocks without the shared table: `rel_pos_bias` is stored, never used
        for blk in self.blocks[first:last + 1]:
            x = blk(x)
        return x

    def layer_id(self, name: str) -> Optional[int]:
        """The official LayerDecayOptimizerConstructor: cls token / pos embed / patch embed 0, blocks.i -> i + 1;
        the shared `rel_pos_bias` falls to the top layer like the adapter's modules."""
        if name in ("cls_token", "mask_token", "pos_embed") or name.startswith("patch_embed."):
            return 0
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        return None

    def no_weight_decay(self, name: str) -> bool:
        # the official constructor exempts only 1-D tensors and biases (its 'cls_token'/'pos_embed' names never match
        # the 'backbone.'-prefixed names it sees), so nothing more here
        return False


# ------------------------------------------------------------------------------------- BEiT / BEiTv2 pretrained

_STACK_PREFIXES = ("cls_token", "patch_embed.", "blocks.", "rel_pos_bias.")
_SHARED_TABLE = "rel_pos_bias.relative_position_bias_table"


def _stretched_offsets(src: int, dst: int) -> list[float]:
    """Positions of the `src` (odd) offsets of a pretraining table spread over the `dst` offsets of the new window
    the official way: unit steps near 0 growing by a ratio q chosen (by bisection in [1.01, 1.5]) so that the
    outermost offset reaches dst // 2."""
    half, target = src // 2, dst // 2
    lo, hi = 1.01, 1.5
    q = lo
    while hi - lo > 1e-6:
        q = (lo + hi) / 2.0
        if (1.0 - q ** half) / (1.0 - q) > target:
            hi = q
        else:
            lo = q
    steps, reach = [], 0.0
    for i in range(half):
        reach += q ** i
        steps.append(reach)
    return [-s for s in reversed(steps)] + [0.0] + steps


def resize_relative_position_table(table: torch.Tensor, window: Window) -> torch.Tensor:
    """A pretraining table ((2S-1)^2 + 3 rows, heads) for the offsets of `window`: each head's (2S-1)x(2S-1) grid
    is interpolated by a bicubic spline through stretched source offsets (as the official BEiT loader does with
    scipy's interp2d), the 3 cls rows are carried over unchanged."""
    from scipy.interpolate import RectBivariateSpline

    grid, extra = table[:-EXTRA_ROWS], table[-EXTRA_ROWS:]
    src = math.isqrt(grid.shape[0])
    if src * src != grid.shape[0] or src % 2 == 0:
        raise ValueError(f"a relative position table of {table.shape[0]} rows is not of a square window")
    dst_h, dst_w = 2 * window[0] - 1, 2 * window[1] - 1
    if (src, src) == (dst_h, dst_w):
        return table
    ys, xs = _stretched_offsets(src, dst_h), _stretched_offsets(src, dst_w)
    ty = [float(v) for v in range(-(dst_h // 2), dst_h // 2 + 1)]
    tx = [float(v) for v in range(-(dst_w // 2), dst_w // 2 + 1)]
    heads = []
    for z in grid.double().T.reshape(-1, src, src).numpy():  # z[row, col]: (dy, dx) offsets
        spline = RectBivariateSpline(ys, xs, z, kx=3, ky=3, s=0)
        heads.append(torch.from_numpy(spline(ty, tx)).reshape(-1))
    resized = torch.stack(heads, dim=1).to(table.dtype)
    return torch.cat([resized, extra], dim=0)


def load_beit_pretrained(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> list[str]:
    """Initialise the BEiT part (cls token, patch embed, blocks) of a beit_adapter segmentor from an official BEiT /
    BEiTv2 pretraining or fine-tuning file (unilm key layout). A shared pretraining table goes to every block;
    relative position tables are resized to this model's window; the classification head and norms are dropped."""
    backbone = model.backbone
    stack: BEiT = backbone.stack
    src = {k: v for k, v in state.items() if "relative_position_index" not in k}
    per_block = stack.use_rel_pos_bias
    if _SHARED_TABLE in src and per_block:
        shared = src.pop(_SHARED_TABLE)
        for i in range(stack.depth):
            src[f"blocks.{i}.attn.relative_position_bias_table"] = shared.clone()
    own = backbone.state_dict()
    wanted = [k for k in own if k.startswith(_STACK_PREFIXES) and "relative_position_index" not in k]
    notes: list[str] = []
    resized = 0
    for k in wanted:
        if k.endswith("relative_position_bias_table") and k in src and src[k].shape[0] != own[k].shape[0]:
            try:
                src[k] = resize_relative_position_table(src[k], stack.window)
            except ValueError as err:
                raise VitsegError(f"{path}: {k}: {err}") from None
            resized += 1
    optional = {k for k in wanted if k.endswith(("gamma_1", "gamma_2", "relative_position_bias_table"))}
    loaded = load_stack_pretrained(backbone, src, wanted, optional, path, "BEiT")
    notes.append(f"BEiT initialised from {path.name} ({loaded} tensors)")
    if resized:
        notes.append(f"{resized} relative position bias tables resized to the {stack.window[1]}x{stack.window[0]} "
                     "window")
    absent = sorted({re.sub(r"blocks\.\d+\.", "blocks.*.", k) for k in optional if k not in src})
    if absent:
        notes.append(f"not in the file, left at their initial values: {', '.join(absent)}")
    dropped = sorted({k.split(".")[0] for k in src if k not in own})
    if dropped:
        notes.append(f"not used: {', '.join(dropped)}")
    return notes


# ------------------------------------------------------------------------------------------------ the family


def is_official(state: dict) -> bool:
    # BEiT's position information is its relative bias: an absolute `pos_embed` beside the cls token is DINOv2's ViT
    return ("backbone.cls_token" in state and "backbone.blocks.0.attn.qkv.weight" in state
            and "backbone.pos_embed" not in state)


def _window_of(table: torch.Tensor, index: Optional[torch.Tensor]) -> tuple[Window, Optional[str]]:
    """The patch window of a relative position table and its index buffer, and an assumption if one was needed.

    The index is (Wh*Ww+1)^2 and the table has (2Wh-1)(2Ww-1)+3 rows: together they give Wh+Ww and Wh*Ww, whose
    order the index values settle."""
    offsets = table.shape[0] - EXTRA_ROWS
    if index is None:
        side = (math.isqrt(offsets) + 1) // 2
        if (2 * side - 1) ** 2 != offsets:
            raise ValueError(f"a relative position table of {table.shape[0]} rows without its index")
        return (side, side), "a square window (no relative_position_index stored)"
    area = index.shape[0] - 1
    total = (4 * area + 1 - offsets) // 2  # Wh + Ww
    root = math.isqrt(max(total * total - 4 * area, 0))
    a, b = (total - root) // 2, (total + root) // 2
    for window in ((a, b), (b, a)):
        if window[0] * window[1] == area and torch.equal(relative_position_index(window), index):
            return window, None
    raise ValueError(f"relative_position_index {tuple(index.shape)} does not fit a table of {table.shape[0]} rows")


def infer_official(state: dict, meta: dict) -> tuple[dict[str, Any], list[str]]:
    """The backbone section that fits an official BEiT-Adapter state dict, and the fields that had to be assumed."""
    g = lambda k: state[f"backbone.{k}"]  # noqa: E731
    d, depth, n_inter = adapter_layout(state, "blocks", "BEiT blocks")
    assumed: list[str] = []
    per_block = "backbone.blocks.0.attn.relative_position_bias_table" in state
    shared = f"backbone.{_SHARED_TABLE}" in state
    prefix = "blocks.0.attn." if per_block else "rel_pos_bias." if shared else None
    if prefix is not None:
        table = g(prefix + "relative_position_bias_table")
        num_heads = table.shape[1]
        window, note = _window_of(table, state.get(f"backbone.{prefix}relative_position_index"))
        if note:
            assumed.append(note)
        img_size = [16 * window[0], 16 * window[1]]
    else:
        img_size = [512, 512]
        num_heads = conventional_num_heads(state, d)
        assumed += [f"num_heads={num_heads} (convention)", "img_size=512 (no relative position bias: any size runs)"]
    common, more = infer_adapter_fields(state, d, depth, n_inter)
    assumed += ["drop_path_rate=0.3, init_values=1e-6 (training only)", *more]
    section = dict(
        type="beit_adapter", img_size=img_size, embed_dim=d, depth=depth, num_heads=num_heads,
        mlp_ratio=g("blocks.0.mlp.fc1.weight").shape[0] / d, qkv_bias="backbone.blocks.0.attn.q_bias" in state,
        use_abs_pos_emb="backbone.pos_embed" in state, use_rel_pos_bias=per_block,
        use_shared_rel_pos_bias=shared, init_values=1e-6, drop_path_rate=0.3, **common)
    return section, assumed


def build_beit_adapter(b) -> AdapterBackbone:
    stack = BEiT(tuple(b.img_size), b.patch_size, b.embed_dim, b.depth, b.num_heads, b.mlp_ratio, b.qkv_bias,
                 b.drop_path_rate, b.init_values, b.use_rel_pos_bias, b.use_shared_rel_pos_bias)
    # the official BEiTAdapter always has the two extra extractors in its last interaction
    return AdapterBackbone(stack, init_values=b.init_values, use_extra_extractor=True, **adapter_args(b))
