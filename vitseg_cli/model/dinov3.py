"""DINOv3 ViT-Adapter (`dinov3_adapter`): the official `DINOv3_Adapter` on DINOv3's `DinoVisionTransformer`.

The ViT runs first and on its own (frozen; no injector feeds the adapter back into it). The outputs of four of its
blocks, each through the ViT's final norm, patch tokens only, go to four extractor interactions that update the
Spatial Prior Module's pyramid; the token maps are then resized and added to the pyramid as in ViT-Adapter.

The ViT: sequence [cls, storage tokens, patches], no absolute position embedding; rotary embeddings on the queries
and keys of the patch tokens (coordinates = patch centres in [-1, 1] per axis, rotate-half form); pre-norm blocks
with layer scale and a SwiGLU or GELU MLP. Parameter names are the official ones: the ViT's under `vit.` (the
official backbone file without prefix), the adapter's at the top (the head file's `segmentation_model.0.`).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..data.classes import ADE20K_CLASSES, ADE20K_PALETTE
from ..errors import VitsegError
from .adapter import Extractor, SpatialPriorModule, _geometry, count_indices
from .dinov3_config import OFFICIAL_TEST
from .heads.mask2former_d2 import official_head_keys
from .msda import MSDeformAttn

_NORM_EPS = {"layernorm": 1e-6, "layernormbf16": 1e-5}
_SWIGLU_ALIGN = {"swiglu": 8, "swiglu32": 32, "swiglu64": 64, "swiglu128": 128}


class RopeEmbedding(nn.Module):
    """(sin, cos), each (h*w, head_dim), of a patch grid; `periods` is a buffer read from the checkpoint."""

    def __init__(self, spec):
        super().__init__()
        head_dim = spec.embed_dim // spec.num_heads
        self.normalize = spec.pos_embed_rope_normalize_coords
        k = torch.arange(head_dim // 4, dtype=torch.float32)
        if spec.pos_embed_rope_base is not None:
            periods = spec.pos_embed_rope_base ** (2 * k / (head_dim // 2))
        else:
            lo, hi = spec.pos_embed_rope_min_period, spec.pos_embed_rope_max_period
            periods = (hi / lo) ** torch.linspace(0, 1, head_dim // 4) / (hi / lo) * hi
        self.register_buffer("periods", periods, persistent=True)

    def forward(self, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        dd = {"device": self.periods.device, "dtype": torch.float32}
        div_h, div_w = {"separate": (h, w), "max": (max(h, w),) * 2, "min": (min(h, w),) * 2}[self.normalize]
        ys = torch.arange(0.5, h, **dd) / div_h
        xs = torch.arange(0.5, w, **dd) / div_w
        coords = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).flatten(0, 1) * 2.0 - 1.0
        angles = 2 * math.pi * coords[:, :, None] / self.periods.float()[None, None, :]
        angles = angles.flatten(1, 2).tile(2)
        return angles.sin(), angles.cos()


def _rope(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """Rotary embedding in rotate-half form on the last len(sin) tokens of x (B, heads, N, head_dim), in float32."""
    prefix = x.shape[-2] - sin.shape[-2]
    dtype = x.dtype
    t = x[:, :, prefix:].float()
    t1, t2 = t.chunk(2, dim=-1)
    t = t * cos + torch.cat([-t2, t1], dim=-1) * sin
    return torch.cat([x[:, :, :prefix], t.to(dtype)], dim=-2)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, proj_bias: bool, mask_k_bias: bool):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        if qkv_bias and mask_k_bias:  # the official key bias is masked to zero by a stored buffer
            self.qkv.register_buffer("bias_mask", torch.ones(3 * dim))
        self.proj = nn.Linear(dim, dim, bias=proj_bias)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        b, n, c = x.shape
        bias = self.qkv.bias
        if bias is not None and hasattr(self.qkv, "bias_mask"):
            bias = bias * self.qkv.bias_mask.to(bias.dtype)
        qkv = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        q, k = _rope(q, *rope), _rope(k, *rope)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int, bias: bool, align: int):
        super().__init__()
        d = int(hidden * 2 / 3)
        d += -d % align
        self.w1, self.w2 = nn.Linear(dim, d, bias=bias), nn.Linear(dim, d, bias=bias)
        self.w3 = nn.Linear(d, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w3(F.silu(self.w1(x)) * self.w2(x))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, bias: bool):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden, bias=bias), nn.Linear(hidden, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    def __init__(self, spec):
        super().__init__()
        d, eps = spec.embed_dim, _NORM_EPS[spec.norm_layer]
        self.norm1, self.norm2 = nn.LayerNorm(d, eps=eps), nn.LayerNorm(d, eps=eps)
        self.attn = Attention(d, spec.num_heads, spec.qkv_bias, spec.proj_bias, spec.mask_k_bias)
        hidden = int(d * spec.ffn_ratio)
        self.mlp = (Mlp(d, hidden, spec.ffn_bias) if spec.ffn_layer == "mlp"
                    else SwiGLU(d, hidden, spec.ffn_bias, _SWIGLU_ALIGN[spec.ffn_layer]))
        ls = spec.layerscale_init
        self.ls1 = LayerScale(d, ls) if ls else nn.Identity()
        self.ls2 = LayerScale(d, ls) if ls else nn.Identity()

    def forward(self, x: torch.Tensor, rope) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), rope))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, patch)


class DinoVisionTransformer(nn.Module):
    """`intermediate(x, blocks)` -> the normed patch tokens (B, h*w, D) after each of those blocks, and (h, w)."""

    def __init__(self, spec):
        super().__init__()
        d, eps = spec.embed_dim, _NORM_EPS[spec.norm_layer]
        self.embed_dim, self.depth, self.patch_size = d, spec.depth, spec.patch_size
        self.patch_embed = PatchEmbed(spec.patch_size, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.n_storage_tokens = spec.n_storage_tokens
        if spec.n_storage_tokens:
            self.storage_tokens = nn.Parameter(torch.zeros(1, spec.n_storage_tokens, d))
        self.mask_token = nn.Parameter(torch.zeros(1, d))  # masked pretraining only; kept for the key set
        self.rope_embed = RopeEmbedding(spec)
        self.blocks = nn.ModuleList(Block(spec) for _ in range(spec.depth))
        self.norm = nn.LayerNorm(d, eps=eps)
        if spec.untie_cls_and_patch_norms:
            self.cls_norm = nn.LayerNorm(d, eps=eps)
        if spec.untie_global_and_local_cls_norm:
            self.local_cls_norm = nn.LayerNorm(d, eps=eps)  # used in pretraining only
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.normal_(self.cls_token, std=0.02)
        if self.n_storage_tokens:
            nn.init.normal_(self.storage_tokens, std=0.02)
        for m in self.blocks.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def intermediate(self, x: torch.Tensor, blocks: list[int]) -> tuple[list[torch.Tensor], int, int]:
        x = self.patch_embed.proj(x)
        h, w = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)
        prefix = [self.cls_token + 0 * self.mask_token]
        if self.n_storage_tokens:
            prefix.append(self.storage_tokens)
        x = torch.cat([p.expand(x.shape[0], -1, -1).to(x.dtype) for p in prefix] + [x], dim=1)
        rope = self.rope_embed(h, w)
        outs = []
        for i, blk in enumerate(self.blocks[:max(blocks) + 1]):
            x = blk(x, rope)
            if i in blocks:
                # LayerNorm is per token: norming the patch tokens alone equals the official norm of all then split
                outs.append(self.norm(x[:, 1 + self.n_storage_tokens:]))
        return outs, h, w


class ExtractorInteraction(nn.Module):
    """One interaction of the official `InteractionBlockWithCls` as DINOv3 uses it: the extractor (and, in the
    last one, two extra extractors) updating the SPM tokens from one block's ViT tokens."""

    def __init__(self, spec, extra: bool):
        super().__init__()
        make = lambda: Extractor(spec.embed_dim, spec.deform_num_heads, spec.n_points, spec.deform_ratio,  # noqa: E731
                                 spec.with_cffn, spec.cffn_ratio, spec.drop_path_rate, 1e-6)
        self.extractor = make()
        self.extra_extractors = nn.Sequential(make(), make()) if extra else None

    def forward(self, c: torch.Tensor, x: torch.Tensor, geometry) -> torch.Tensor:
        for extractor in [self.extractor, *(self.extra_extractors or [])]:
            c = extractor(c, geometry.prior_refs, x, geometry.vit_shapes, geometry.prior_shapes)
        return c


class Dinov3Adapter(nn.Module):
    """forward(x) with H, W multiples of 32 -> [f1, f2, f3, f4] at 1/4 .. 1/32, `embed_dim` channels each."""

    out_strides = (4, 8, 16, 32)
    size_divisor = 32
    fixed_input_size = None
    half_dtype = "bfloat16"  # `--half`: the ViT was trained and is released in bfloat16 (float16 may overflow)

    def __init__(self, spec):
        super().__init__()
        self.spec = spec
        self.vit = DinoVisionTransformer(spec)
        self.out_indices = spec.out_indices
        self.freeze_vit = spec.freeze_vit
        if spec.freeze_vit:
            self.vit.requires_grad_(False)
        d = self.embed_dim = spec.embed_dim
        self.level_embed = nn.Parameter(torch.zeros(3, d))
        self.spm = SpatialPriorModule(spec.conv_inplane, d)
        self.interactions = nn.Sequential(*[
            ExtractorInteraction(spec, extra=spec.use_extra_extractor and i == 3) for i in range(4)])
        self.up = nn.ConvTranspose2d(d, d, 2, 2)
        self.norm1, self.norm2, self.norm3, self.norm4 = (nn.BatchNorm2d(d) for _ in range(4))
        self._init_adapter_weights()

    def _init_adapter_weights(self) -> None:
        for module in (self.up, self.spm, self.interactions):
            for m in module.modules():
                if isinstance(m, nn.Linear):
                    nn.init.trunc_normal_(m.weight, std=0.02)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
                elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                    fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                    m.weight.data.normal_(0, math.sqrt(2.0 / fan_out))
                    if m.bias is not None:
                        m.bias.data.zero_()
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m.reset_parameters()
        nn.init.normal_(self.level_embed)

    @property
    def out_channels(self) -> list[int]:
        return [self.embed_dim] * 4

    @property
    def num_layers(self) -> int:
        return self.spec.depth + 1

    def layer_id(self, name: str) -> int:
        """Layer-decay ids: the ViT's embeddings 0, block i -> i + 1, the adapter -> depth + 1."""
        if name.startswith("vit.blocks."):
            return int(name.split(".")[2]) + 1
        if name.startswith("vit.") and not name.startswith(("vit.norm", "vit.cls_norm", "vit.local_cls_norm")):
            return 0
        return self.num_layers

    def no_weight_decay(self, name: str, param: torch.Tensor) -> bool:
        return param.ndim <= 1 or name.endswith(".bias") or name.endswith(("_token", "tokens", "level_embed"))

    def vit_tokens(self, x: torch.Tensor) -> tuple[list[torch.Tensor], int, int]:
        x = x.to(self.vit.patch_embed.proj.weight.dtype)  # a bfloat16 release runs its ViT in bfloat16
        if self.freeze_vit:
            with torch.no_grad():
                return self.vit.intermediate(x, self.out_indices)
        return self.vit.intermediate(x, self.out_indices)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        height, width = x.shape[-2:]
        if height % 32 or width % 32:
            raise ValueError(f"the adapter needs H and W divisible by 32, got {height}x{width}")
        geometry = _geometry(height, width, x.device)
        c1, c2, c3, c4 = self.spm(x)
        sizes = [c2.shape[1], c3.shape[1], c4.shape[1]]
        c = torch.cat([c2 + self.level_embed[0], c3 + self.level_embed[1], c4 + self.level_embed[2]], dim=1)
        layers, h, w = self.vit_tokens(x)
        bs, dim = x.shape[0], self.embed_dim
        outs = []
        for interaction, tokens in zip(self.interactions, layers):
            tokens = tokens if torch.is_autocast_enabled() else tokens.to(c.dtype)
            c = interaction(c, tokens, geometry)
            outs.append(tokens.transpose(1, 2).reshape(bs, dim, h, w))
        hc, wc = height // 16, width // 16
        c2, c3, c4 = (t.transpose(1, 2).reshape(bs, dim, hh, ww) for t, (hh, ww) in
                      zip(c.split(sizes, dim=1), [(2 * hc, 2 * wc), (hc, wc), (hc // 2, wc // 2)]))
        c1 = self.up(c2) + c1
        pyramid = [c1, c2, c3, c4]
        if self.spec.add_vit_feature:
            sizes2d = [(4 * hc, 4 * wc), (2 * hc, 2 * wc), (hc, wc), (hc // 2, wc // 2)]
            pyramid = [p + F.interpolate(o.to(p.dtype), size=s, mode="bilinear", align_corners=False)
                       for p, o, s in zip(pyramid, outs, sizes2d)]
        return [norm(p) for norm, p in zip((self.norm1, self.norm2, self.norm3, self.norm4), pyramid)]


# ------------------------------------------------------------------------------------------------ the family

HEAD_PREFIX, ADAPTER_PREFIX = "segmentation_model.1.", "segmentation_model.0."


def is_head_file(state: dict) -> bool:
    """The head file of an official DINOv3 segmentor (adapter + head, no ViT)."""
    return f"{ADAPTER_PREFIX}level_embed" in state and f"{HEAD_PREFIX}predictor.query_feat.weight" in state


def is_backbone_file(state: dict) -> bool:
    """An official DINOv3 ViT state dict (the backbone file of a two-file release)."""
    return "rope_embed.periods" in state and "patch_embed.proj.weight" in state and "cls_token" in state


def official_backbone_keys(state: dict) -> dict:
    """Head-file adapter keys and backbone-file ViT keys -> this family's names under `backbone.`."""
    out = {}
    for k, v in state.items():
        if k.startswith(ADAPTER_PREFIX):
            out["backbone." + k[len(ADAPTER_PREFIX):]] = v
        elif not k.startswith(HEAD_PREFIX):
            out["backbone.vit." + k] = v
    return out


def infer_vit(state: dict) -> tuple[dict, list[str]]:
    """The ViT fields of a backbone file (keys without prefix), and what had to be assumed."""
    dim = state["cls_token"].shape[-1]
    depth = count_indices(state, r"blocks\.(\d+)\.norm1\.weight")
    head_dim = 4 * state["rope_embed.periods"].shape[0]
    w1 = state.get("blocks.0.mlp.w1.weight")
    hidden = (w1.shape[0] if w1 is not None else state["blocks.0.mlp.fc1.weight"].shape[0])
    section = {
        "embed_dim": dim, "depth": depth, "num_heads": dim // head_dim,
        "n_storage_tokens": state["storage_tokens"].shape[1] if "storage_tokens" in state else 0,
        "qkv_bias": "blocks.0.attn.qkv.bias" in state, "proj_bias": "blocks.0.attn.proj.bias" in state,
        "layerscale_init": 1e-5 if "blocks.0.ls1.gamma" in state else None,
        "untie_cls_and_patch_norms": "cls_norm.weight" in state,
        "untie_global_and_local_cls_norm": "local_cls_norm.weight" in state,
        "mask_k_bias": "blocks.0.attn.qkv.bias_mask" in state,
    }
    if w1 is not None:
        section.update(ffn_layer="swiglu64", ffn_ratio=_swiglu_ratio(dim, hidden),
                       ffn_bias="blocks.0.mlp.w1.bias" in state)
    else:
        section.update(ffn_layer="mlp", ffn_ratio=hidden / dim, ffn_bias="blocks.0.mlp.fc1.bias" in state)
    assumed = ["LayerNorm eps 1e-5 (layernormbf16)", "RoPE normalize_coords separate",
               "the SwiGLU hidden size aligned to 64" if w1 is not None else "GELU MLP"]
    return section, assumed


def _swiglu_ratio(dim: int, hidden: int) -> float:
    """An ffn_ratio whose aligned SwiGLU hidden size (int(dim*ratio*2/3) rounded up to 64) is `hidden`."""
    for ratio in (3.0, 4.0, 2.0, 8 / 3, 5.0, 6.0):
        d = int(int(dim * ratio) * 2 / 3)
        if d + (-d % 64) == hidden:
            return ratio
    return hidden * 1.5 / dim


def infer(state: dict, meta: dict) -> tuple[dict, list[str]]:
    """The backbone section of a two-file release state (`backbone.vit.*` + `backbone.*` adapter keys)."""
    vit = {k[len("backbone.vit."):]: v for k, v in state.items() if k.startswith("backbone.vit.")}
    section, assumed = infer_vit(vit)
    g = lambda k: state[f"backbone.{k}"]  # noqa: E731
    rows = g("interactions.0.extractor.attn.sampling_offsets.weight").shape[0]
    ffn_key = "backbone.interactions.0.extractor.ffn.fc1.weight"
    dim = section["embed_dim"]
    section.update(
        type="dinov3_adapter", conv_inplane=g("spm.stem.0.weight").shape[0], n_points=4,
        deform_num_heads=rows // (4 * 2), with_cffn=ffn_key in state,
        cffn_ratio=state[ffn_key].shape[0] / dim if ffn_key in state else 0.25,
        deform_ratio=g("interactions.0.extractor.attn.value_proj.weight").shape[0] / dim,
        use_extra_extractor="backbone.interactions.3.extra_extractors.0.query_norm.weight" in state)
    assumed += ["adapter n_points=4", "blocks feeding the adapter: four even intervals"]
    return section, assumed


def is_own(state: dict) -> bool:
    """A state dict of this family under vitseg's names (what `two_file_state` gives)."""
    return "backbone.vit.rope_embed.periods" in state and "backbone.level_embed" in state


def build_dinov3_adapter(section) -> Dinov3Adapter:
    return Dinov3Adapter(section)


# ------------------------------------------------------------------------------- the official two-file release

def two_file_state(head: dict, backbone: Optional[dict], head_name: str, backbone_name: str) -> tuple[dict, dict]:
    """(state under this family's names, meta) of an official head file plus its backbone file."""
    if backbone is None:
        raise VitsegError(f"{head_name}: the head file of a DINOv3 segmentor holds no ViT weights: give its "
                          "backbone file with --backbone-weights (e.g. dinov3_vit7b16_pretrain_lvd1689m-*.pth)")
    if not is_backbone_file(backbone):
        sample = ", ".join(list(backbone)[:3])
        raise VitsegError(f"{backbone_name}: not a DINOv3 ViT backbone file (no rope_embed.periods / "
                          f"patch_embed.proj.weight; keys look like {sample}, ...)")
    clash = [k for k in backbone if k.startswith("segmentation_model.")]
    if clash:
        raise VitsegError(f"{backbone_name}: holds segmentor keys ({clash[0]}, ...): give the ViT backbone file")
    state = {**official_backbone_keys(head), **official_backbone_keys(backbone),
             **official_head_keys(head, HEAD_PREFIX)}
    return state, {"release": "dinov3_m2f"}


def release_spec(state: dict) -> tuple[dict, list[str]]:
    """The whole spec of a converted two-file release (`two_file_state`) and what had to be assumed; 150 classes
    are ADE20K's (the released head)."""
    backbone, assumed = infer(state, {})
    part = {k[len("decode_head."):]: v for k, v in state.items() if k.startswith("decode_head.")}
    hidden = part["query_feat.weight"].shape[1]
    num_classes = part["cls_embed.weight"].shape[0] - 1
    spec = {"model": {"backbone": backbone, "num_classes": num_classes,
                      "decode_head": {"type": "mask2former_d2", "feat_channels": hidden, "out_channels": hidden,
                                      "num_queries": part["query_feat.weight"].shape[0]}},
            "test": dict(OFFICIAL_TEST)}
    if num_classes == len(ADE20K_CLASSES):
        spec["data"] = {"classes": list(ADE20K_CLASSES), "palette": [list(c) for c in ADE20K_PALETTE],
                        "reduce_zero_label": True}
        assumed.append("150 classes: ADE20K's")
    assumed += ["head sizes fixed in the official code (16 heads, FFN 4096, 6 encoder / 9 decoder layers)",
                "test: the official DINOv3 procedure (short side 896, slide 896 / 596, ratios 0.9-1.1, flip)"]
    return spec, assumed
