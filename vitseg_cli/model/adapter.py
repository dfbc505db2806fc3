"""ViT-Adapter: Spatial Prior Module, Injector, Extractor, ConvFFN, InteractionBlock and `AdapterBackbone`, which
composes any block stack (plain ViT, BEiT, Uni-Perceiver) into a four-level pyramid.

Exactly the official architecture; names match official checkpoint keys. The ViT token grid is at 1/16,
the spatial-prior tokens `c` are the concatenated 1/8, 1/16 and 1/32 maps.
"""

from __future__ import annotations

import math
from functools import lru_cache, partial
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from timm.layers import DropPath, trunc_normal_
from torch import nn

from ..errors import VitsegError
from .keys import count_indices
from .msda import MSDeformAttn, get_msda_impl, split_levels

Shapes = list[tuple[int, int]]


def _norm(dim: int, eps: float) -> nn.LayerNorm:
    return nn.LayerNorm(dim, eps=eps)


def _conv_bn_relu(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SpatialPriorModule(nn.Module):
    """ResNet-style conv stem giving c1 (1/4, as a map) and c2, c3, c4 (1/8, 1/16, 1/32, as D-dim tokens)."""

    def __init__(self, inplanes: int, embed_dim: int):
        super().__init__()
        c = inplanes
        self.stem = nn.Sequential(*_conv_bn_relu(3, c, 2), *_conv_bn_relu(c, c, 1), *_conv_bn_relu(c, c, 1),
                                  nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        self.conv2 = nn.Sequential(*_conv_bn_relu(c, 2 * c, 2))
        self.conv3 = nn.Sequential(*_conv_bn_relu(2 * c, 4 * c, 2))
        self.conv4 = nn.Sequential(*_conv_bn_relu(4 * c, 4 * c, 2))
        self.fc1 = nn.Conv2d(c, embed_dim, 1)
        self.fc2 = nn.Conv2d(2 * c, embed_dim, 1)
        self.fc3 = nn.Conv2d(4 * c, embed_dim, 1)
        self.fc4 = nn.Conv2d(4 * c, embed_dim, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        plain = self.training or torch.is_grad_enabled() or torch.jit.is_tracing() or get_msda_impl() == "reference"
        run = None if plain else _folded
        c1 = run(self.stem, x) if run else self.stem(x)
        c2 = run(self.conv2, c1) if run else self.conv2(c1)
        c3 = run(self.conv3, c2) if run else self.conv3(c2)
        c4 = run(self.conv4, c3) if run else self.conv4(c3)
        tokens = [fc(c).flatten(2).transpose(1, 2) for fc, c in ((self.fc2, c2), (self.fc3, c3), (self.fc4, c4))]
        return self.fc1(c1), *tokens


def _folded(seq: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """`seq` in inference with each eval-mode BatchNorm folded into the conv before it: conv(x, w * s) + (b - m * s),
    s = gamma / sqrt(var + eps), the same affine map with one pass over the activations fewer. The folded weights
    are recomputed on every call (a few hundred thousand numbers), so nothing goes stale when the weights change."""
    mods = list(seq)
    i = 0
    while i < len(mods):
        m = mods[i]
        bn = mods[i + 1] if i + 1 < len(mods) else None
        if isinstance(m, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and m.bias is None and bn.track_running_stats:
            scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
            x = F.conv2d(x, m.weight * scale.view(-1, 1, 1, 1), bn.bias - bn.running_mean * scale, m.stride,
                         m.padding, m.dilation, m.groups)
            i += 2
        else:
            x = m(x)
            i += 1
    return x


class DWConv(nn.Module):
    """Depthwise 3x3 conv applied to each of the three pyramid levels of the token sequence, weights shared."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, bias=True, groups=dim)

    def forward(self, x: torch.Tensor, shapes: Shapes) -> torch.Tensor:
        b, _, ch = x.shape
        parts = split_levels(x, [h * w for h, w in shapes])
        if get_msda_impl() != "reference" and not torch.is_grad_enabled() and not torch.jit.is_tracing():
            # fast inference: each level's tokens are a channels_last map as they are, and so is the conv's output,
            # so no transpose copies on either side (the official NCHW form is kept as the reference and for training)
            out = [self.dwconv(p.unflatten(1, (h, w)).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).reshape(b, h * w, ch)
                   for p, (h, w) in zip(parts, shapes)]
        else:
            out = [self.dwconv(p.transpose(1, 2).reshape(b, ch, h, w)).flatten(2).transpose(1, 2)
                   for p, (h, w) in zip(parts, shapes)]
        return torch.cat(out, dim=1)


class ConvFFN(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, shapes: Shapes) -> torch.Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x), shapes)))


class Injector(nn.Module):
    """Spatial Feature Injector: ViT tokens (queries) attend to the multi-scale spatial-prior tokens."""

    def __init__(self, dim: int, num_heads: int, n_points: int, n_levels: int, deform_ratio: float,
                 init_values: float, norm_eps: float):
        super().__init__()
        self.query_norm = _norm(dim, norm_eps)
        self.feat_norm = _norm(dim, norm_eps)
        self.attn = MSDeformAttn(dim, n_levels, num_heads, n_points, deform_ratio)
        self.gamma = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, query, reference_points, feat, feat_shapes: Shapes) -> torch.Tensor:
        attn = self.attn(self.query_norm(query), reference_points, self.feat_norm(feat), feat_shapes)
        return query + self.gamma * attn


class Extractor(nn.Module):
    """Multi-Scale Feature Extractor: spatial-prior tokens (queries) attend back to the ViT tokens, then a ConvFFN."""

    def __init__(self, dim: int, num_heads: int, n_points: int, deform_ratio: float, with_cffn: bool,
                 cffn_ratio: float, drop_path: float, norm_eps: float):
        super().__init__()
        self.query_norm = _norm(dim, norm_eps)
        self.feat_norm = _norm(dim, norm_eps)
        self.attn = MSDeformAttn(dim, 1, num_heads, n_points, deform_ratio)
        self.with_cffn = with_cffn
        if with_cffn:
            self.ffn = ConvFFN(dim, int(dim * cffn_ratio))
            self.ffn_norm = _norm(dim, norm_eps)
            self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, query, reference_points, feat, feat_shapes: Shapes, query_shapes: Shapes) -> torch.Tensor:
        query = query + self.attn(self.query_norm(query), reference_points, self.feat_norm(feat), feat_shapes)
        if self.with_cffn:
            query = query + self.drop_path(self.ffn(self.ffn_norm(query), query_shapes))
        return query


class InteractionBlock(nn.Module):
    """Injector, then a range of the stack's blocks, then the extractor(s). A stack with a cls token (BEiT) gets it
    prepended for its blocks only (the official `InteractionBlockWithCls`); the injector and extractors never see it."""

    def __init__(self, dim: int, num_heads: int, n_points: int, init_values: float, drop_path: float,
                 with_cffn: bool, cffn_ratio: float, deform_ratio: float, extra_extractor: bool, norm_eps: float):
        super().__init__()
        self.injector = Injector(dim, num_heads, n_points, 3, deform_ratio, init_values, norm_eps)
        make_extractor = lambda: Extractor(dim, num_heads, n_points, deform_ratio, with_cffn, cffn_ratio,  # noqa: E731
                                           drop_path, norm_eps)
        self.extractor = make_extractor()
        self.extra_extractors = nn.Sequential(make_extractor(), make_extractor()) if extra_extractor else None

    def forward(self, x, c, cls, run_blocks: Callable[[torch.Tensor], torch.Tensor],
                geometry: "_Geometry") -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        x = self.injector(x, geometry.vit_refs, c, geometry.prior_shapes)
        if cls is None:
            x = run_blocks(x)
        else:
            x = run_blocks(torch.cat([cls, x], dim=1))
            cls, x = x[:, :1], x[:, 1:]
        extractors = [self.extractor, *(self.extra_extractors or [])]
        for extractor in extractors:
            c = extractor(c, geometry.prior_refs, x, geometry.vit_shapes, geometry.prior_shapes)
        return x, c, cls


def _reference_points(shapes: Shapes, device: torch.device) -> torch.Tensor:
    """Pixel-centre (x, y) points in [0, 1] for every position of every level, shape (1, sum(h*w), 2)."""
    refs = []
    for h, w in shapes:
        if torch.jit.is_tracing():  # ONNX export: h, w are traced tensors, which linspace's count cannot take
            ys, xs = ((torch.arange(n, dtype=torch.float32, device=device) + 0.5) / n for n in (h, w))
        else:
            ys = torch.linspace(0.5, h - 0.5, h, device=device) / h
            xs = torch.linspace(0.5, w - 0.5, w, device=device) / w
        ys, xs = torch.meshgrid(ys, xs, indexing="ij")
        refs.append(torch.stack([xs.reshape(-1), ys.reshape(-1)], -1))
    return torch.cat(refs, 0)[None]


class _Geometry:
    """Token-grid shapes and reference points for one input size, computed once and reused by every interaction.

    The spatial-prior pyramid is always on the /8, /16, /32 grids; the ViT tokens are on the /patch grid (the patch
    conv floors), which coincides with the /16 level only for patch 16."""

    def __init__(self, height: int, width: int, device: torch.device, patch: int = 16):
        self.vit_shapes: Shapes = [(height // patch, width // patch)]
        self.prior_shapes: Shapes = [(height // 8, width // 8), (height // 16, width // 16),
                                     (height // 32, width // 32)]
        self.vit_refs = _reference_points(self.vit_shapes, device)
        self.prior_refs = _reference_points(self.prior_shapes, device)


def _resized(x: torch.Tensor, size: "torch.Size") -> torch.Tensor:
    """A token map resized bilinearly (align_corners=False) to a pyramid level; the level of its own size as is."""
    if not torch.jit.is_tracing() and x.shape[-2:] == size:  # traced sizes (ONNX export) may differ at run time
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def _upsample2x(up: nn.ConvTranspose2d, tokens: torch.Tensor, h: int, w: int,
                into: Optional[torch.Tensor] = None) -> torch.Tensor:
    """`up` (ConvTranspose2d, kernel 2, stride 2) on an (B, h*w, C) token map, as one matmul and a pixel shuffle.

    Same result as `up(map)`, about twice as fast on CPU, and the output is channels_last so adding it to the other
    channels_last maps needs no layout conversion. `into`: a channels_last (B, C, 2h, 2w) map to add the result to
    in place, WITHOUT `up`'s bias (the caller folds it into what follows): no pixel-shuffle copy, no bias fill.
    """
    b, _, c = tokens.shape
    cout = up.out_channels
    weight = up.weight.permute(0, 2, 3, 1).reshape(c, 4 * cout)  # columns ordered (di, dj, cout)
    if into is not None:
        y = torch.mm(tokens.reshape(b * h * w, c), weight).view(b, h, w, 2, 2, cout).permute(0, 1, 3, 2, 4, 5)
        into.permute(0, 2, 3, 1).view(b, h, 2, w, 2, cout).add_(y)
        return into
    y = torch.addmm(up.bias.repeat(4), tokens.reshape(b * h * w, c), weight)
    y = y.view(b, h, w, 2, 2, cout).permute(0, 1, 3, 2, 4, 5).reshape(b, 2 * h, 2 * w, cout)
    return y.permute(0, 3, 1, 2)


def _norm_with_shift(norm: nn.BatchNorm2d, x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """`norm(x + shift)` for an eval-mode BatchNorm and a per-channel `shift`, in one pass: the shift moves into the
    running mean."""
    return F.batch_norm(x, norm.running_mean - shift, norm.running_var, norm.weight, norm.bias, False, 0.0, norm.eps)


@lru_cache(maxsize=16)
def _geometry(height: int, width: int, device: torch.device, patch: int = 16) -> _Geometry:
    # plain tensors even when first built under inference_mode, so a cached entry also serves training
    with torch.inference_mode(False), torch.no_grad():
        return _Geometry(height, width, device, patch)


class AdapterBackbone(nn.Module):
    """The ViT-Adapter around any block stack (plain ViT, BEiT, Uni-Perceiver); `forward(x)` with H, W multiples of
    32 returns [f1, f2, f3, f4] at 1/4, 1/8, 1/16, 1/32, each with `embed_dim` channels.

    The stack is composed, not inherited: the adapter calls its `embed`, `initial_cls` and `forward_blocks`. Its
    submodules and parameters are registered here under their own names, because the official classes inherit from
    their ViT and their checkpoints hold those weights at the top level (`blocks.0...`, `cls_token`, `patch_embed...`).

    A stack provides: `embed_dim`, `depth`, `embed(x) -> (tokens, h, w)` (patch tokens with position embedding, no cls
    token), `initial_cls(batch) -> (B, 1, D) or None`, `forward_blocks(x, first, last, h, w)`, `layer_id(name)` (None
    for a name that is not its own), `no_weight_decay(name) -> bool`, `fixed_input_size` and `adapter_norm_eps`,
    optionally `patch_size` (16 when absent); no buffers of its own outside its submodules.
    """

    out_strides = (4, 8, 16, 32)
    size_divisor = 32

    def __init__(self, stack: nn.Module, *, conv_inplane: int = 64, n_points: int = 4, deform_num_heads: int = 6,
                 init_values: float = 0.0,
                 interaction_indexes: Sequence[tuple[int, int]] = ((0, 2), (3, 5), (6, 8), (9, 11)),
                 with_cffn: bool = True, cffn_ratio: float = 0.25, deform_ratio: float = 1.0,
                 add_vit_feature: bool = True, use_extra_extractor: bool = True, drop_path_rate: float = 0.0):
        super().__init__()
        self._adopt(stack)
        self.patch_size = getattr(stack, "patch_size", 16)
        self.interaction_indexes = [tuple(p) for p in interaction_indexes]
        self.add_vit_feature = add_vit_feature
        d = self.embed_dim = stack.embed_dim
        self.level_embed = nn.Parameter(torch.zeros(3, d))
        self.spm = SpatialPriorModule(conv_inplane, d)
        n = len(self.interaction_indexes)
        self.interactions = nn.Sequential(*[
            InteractionBlock(d, deform_num_heads, n_points, init_values, drop_path_rate, with_cffn, cffn_ratio,
                             deform_ratio, extra_extractor=use_extra_extractor and i == n - 1,
                             norm_eps=stack.adapter_norm_eps)
            for i in range(n)])
        self.up = nn.ConvTranspose2d(d, d, 2, 2)
        self.norm1, self.norm2, self.norm3, self.norm4 = (nn.BatchNorm2d(d) for _ in range(4))
        self._init_adapter_weights()

    def _adopt(self, stack: nn.Module) -> None:
        object.__setattr__(self, "stack", stack)  # a plain attribute: its weights are registered one by one below
        if next(stack.named_buffers(recurse=False), None) is not None:
            raise TypeError("a block stack keeps its buffers inside submodules")
        for name, child in stack.named_children():
            self.add_module(name, child)
        for name, param in stack.named_parameters(recurse=False):
            self.register_parameter(name, param)

    @property
    def out_channels(self) -> list[int]:
        return [self.embed_dim] * 4

    @property
    def fixed_input_size(self) -> Optional[tuple[int, int]]:
        return self.stack.fixed_input_size

    @property
    def num_layers(self) -> int:
        """The layer-decay id of everything above the stack's blocks (adapter, heads): depth + 1."""
        return self.stack.depth + 1

    def layer_id(self, name: str) -> int:
        """Official layer ids: embeddings 0, block i -> i + 1, the adapter's own modules -> depth + 1."""
        own = self.stack.layer_id(name)
        return self.num_layers if own is None else own

    def no_weight_decay(self, name: str, param: torch.Tensor) -> bool:
        """1-D parameters (norms, biases, layer scales), and what the stack names (the adapter's own names too:
        whether `level_embed` decays differs between the families' official recipes)."""
        return param.ndim <= 1 or name.endswith(".bias") or self.stack.no_weight_decay(name)

    def _init_adapter_weights(self) -> None:
        for module in (self.up, self.spm, self.interactions):
            for m in module.modules():
                if isinstance(m, nn.Linear):
                    trunc_normal_(m.weight, std=0.02)
                    if m.bias is not None:
                        nn.init.constant_(m.bias, 0)
                elif isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
                    nn.init.constant_(m.bias, 0)
                    nn.init.constant_(m.weight, 1.0)
                elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                    fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                    m.weight.data.normal_(0, math.sqrt(2.0 / fan_out))
                    if m.bias is not None:
                        m.bias.data.zero_()
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m.reset_parameters()
        nn.init.normal_(self.level_embed)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        height, width = x.shape[-2:]
        tracing = torch.jit.is_tracing()  # an ONNX export: sizes are traced tensors, nothing size-bound is cached
        if not tracing and (height % 32 or width % 32):
            raise ValueError(f"the adapter needs H and W divisible by 32, got {height}x{width} "
                             "(the segmentor pads for you)")
        geometry = (_Geometry if tracing else _geometry)(height, width, x.device, self.patch_size)
        fast = get_msda_impl() != "reference"  # 'reference' keeps every official form, as the oracle and the baseline
        if fast:
            # channels_last: mkldnn/cuDNN convs run faster and the conv-map -> token flatten becomes a free view
            x = x.contiguous(memory_format=torch.channels_last)
        c1, c2, c3, c4 = self.spm(x)
        sizes = [c2.shape[1], c3.shape[1], c4.shape[1]]
        c = torch.cat([c2 + self.level_embed[0], c3 + self.level_embed[1], c4 + self.level_embed[2]], dim=1)
        x, h, w = self.stack.embed(x)
        bs, _, dim = x.shape
        cls = self.stack.initial_cls(bs)
        # token sequences (B, h*w, C) are channels_last maps already: in fast inference, view them as such (no copy,
        # and every later add / interpolate / norm stays in one layout). Otherwise copy to NCHW as the official code
        # does, which training needs: CPU BatchNorm backward gives wrong gradients for these transposed views when the
        # batch is 1 (checked against finite differences in tests/test_model_grad.py).
        views = fast and not torch.is_grad_enabled()

        def as_map(tokens: torch.Tensor, hh: int, ww: int) -> torch.Tensor:
            if views:
                # reshape, not unflatten: the ONNX exporter bakes unflatten's sizes in as constants
                return tokens.reshape(bs, hh, ww, dim).permute(0, 3, 1, 2)
            return tokens.transpose(1, 2).reshape(bs, dim, hh, ww).contiguous()

        outs = []
        for layer, (first, last) in zip(self.interactions, self.interaction_indexes):
            run = partial(self.stack.forward_blocks, first=first, last=last, h=h, w=w)
            x, c, cls = layer(x, c, cls, run, geometry)
            outs.append(as_map(x, h, w))
        hc, wc = height // 16, width // 16  # the pyramid's own grid (the token grid too, for patch 16)
        c2_tokens, c3, c4 = split_levels(c, sizes)
        c2, c3, c4 = as_map(c2_tokens, hc * 2, wc * 2), as_map(c3, hc, wc), as_map(c4, hc // 2, wc // 2)
        if (views and self.add_vit_feature and not tracing and not self.norm1.training
                and self.norm1.track_running_stats):
            # the 1/4 level, the largest map, in three passes: interpolate, add c1, add the upsampled c2 in place;
            # the upsampling's bias joins the norm (not in an ONNX trace: it records the in-place add into a view
            # wrongly, so the exported graph would differ)
            f1 = _resized(outs[0], c1.shape[-2:])
            f1 = (f1 if f1 is not outs[0] else f1.clone()).add_(c1)
            f1 = _norm_with_shift(self.norm1, _upsample2x(self.up, c2_tokens, hc * 2, wc * 2, into=f1), self.up.bias)
        else:
            c1 = (_upsample2x(self.up, c2_tokens, hc * 2, wc * 2) if fast else self.up(c2)) + c1
            if self.add_vit_feature:
                c1 = c1 + _resized(outs[0], c1.shape[-2:])
            f1 = self.norm1(c1)
        if self.add_vit_feature:
            c2, c3, c4 = (level + _resized(tokens, level.shape[-2:]) for level, tokens in zip((c2, c3, c4), outs[1:]))
        return [f1, self.norm2(c2), self.norm3(c3), self.norm4(c4)]


# ------------------------------------------------------------------------- shared by every adapter family


def adapter_args(b) -> dict:
    """The `AdapterBackbone` keyword arguments of a backbone spec section (fields common to all families)."""
    return dict(conv_inplane=b.conv_inplane, n_points=b.n_points, deform_num_heads=b.deform_num_heads,
                interaction_indexes=b.interaction_indexes, with_cffn=b.with_cffn, cffn_ratio=b.cffn_ratio,
                deform_ratio=b.deform_ratio, add_vit_feature=b.add_vit_feature, drop_path_rate=b.drop_path_rate)


def adapter_layout(state: dict, blocks: str, what: str) -> tuple[int, int, int]:
    """(embed_dim, depth, interactions) of an official backbone state dict whose stack keeps its layers under
    `backbone.<blocks>.<i>.` (`what` names them in the error when they do not split into the interactions)."""
    dim = state["backbone.level_embed"].shape[1]
    depth = count_indices(state, rf"backbone\.{blocks}\.(\d+)\.norm1\.weight")
    n_inter = count_indices(state, r"backbone\.interactions\.(\d+)\.injector\.gamma")
    if depth == 0 or n_inter == 0 or depth % n_inter:
        raise VitsegError(f"cannot infer the spec: {depth} {what} and {n_inter} interaction blocks")
    return dim, depth, n_inter


def infer_adapter_fields(state: dict, dim: int, depth: int, n_inter: int) -> tuple[dict, list[str]]:
    """The adapter fields of an official backbone state dict (`backbone.*` keys), and what had to be assumed.

    Interaction ranges are not stored in checkpoints: they are assumed to split the blocks evenly, as every released
    config does; n_points is assumed 4 (offsets hold heads * levels * points * 2 rows)."""
    g = lambda k: state[f"backbone.{k}"]  # noqa: E731
    per = depth // n_inter
    n_points = 4
    offsets_rows = g("interactions.0.injector.attn.sampling_offsets.weight").shape[0]
    ffn_key = "backbone.interactions.0.extractor.ffn.fc1.weight"
    fields = dict(
        conv_inplane=g("spm.stem.0.weight").shape[0], n_points=n_points,
        deform_num_heads=offsets_rows // (3 * n_points * 2),
        cffn_ratio=(state[ffn_key].shape[0] / dim) if ffn_key in state else 0.25,
        deform_ratio=g("interactions.0.injector.attn.value_proj.weight").shape[0] / dim,
        interaction_indexes=[[i * per, i * per + per - 1] for i in range(n_inter)],
        add_vit_feature=n_inter == 4, with_cffn=ffn_key in state)
    assumed = ["n_points=4", f"interaction_indexes: {n_inter} even ranges of {per} blocks",
               f"add_vit_feature={'true' if n_inter == 4 else 'false'}"]
    return fields, assumed


def conventional_num_heads(state: dict, dim: int) -> int:
    """Attention heads of a block stack whose weights do not show them: as many as the deformable-attention heads
    (every released BEiT- and Uni-Perceiver-Adapter config has them equal, at head dim 64), else head dim 64."""
    rows = state["backbone.interactions.0.injector.attn.sampling_offsets.weight"].shape[0]
    deform_heads = rows // (3 * 4 * 2)  # levels * points (4, assumed as above) * (x, y)
    return deform_heads if deform_heads and dim % deform_heads == 0 else max(1, dim // 64)


def load_stack_pretrained(backbone: nn.Module, src: dict, wanted: list[str], optional: set[str], path,
                          family: str) -> int:
    """Load a pretraining file's tensors `src` (already under this backbone's names) into `backbone` for the names
    `wanted`: every one must be there (except `optional`) with the spec's shape. Returns how many were loaded."""
    own = backbone.state_dict()
    missing = [k for k in wanted if k not in src and k not in optional]
    if missing:
        raise VitsegError(f"{path}: not a matching {family} checkpoint: {len(missing)} {family} weights missing "
                          f"({', '.join(missing[:4])}, ...)")
    wrong = [k for k in wanted if k in src and src[k].shape != own[k].shape]
    if wrong:
        raise VitsegError(f"{path}: {family} shapes differ from the spec: " + "; ".join(
            f"{k} {tuple(src[k].shape)} vs {tuple(own[k].shape)}" for k in wrong[:4]))
    backbone.load_state_dict({k: src[k] for k in wanted if k in src}, strict=False)
    return sum(k in src for k in wanted)
