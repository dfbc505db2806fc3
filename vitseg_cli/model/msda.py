"""Multi-scale deformable attention (Deformable DETR), in pure PyTorch for CPU and CUDA.

Interchangeable implementations of the sampling core, all with the same contract and result:

- `ms_deform_attn_reference`: the official pure-PyTorch fallback (one `grid_sample` per level); the test oracle.
- `ms_deform_attn_fast`: all levels packed side by side into one zero-separated canvas so that all heads,
  levels and points go through ONE `grid_sample`, with the grid laid out (points, queries) so the CPU kernel
  vectorises along the long query axis, and the weighted sum done in place when no gradient is needed.
- `ms_deform_attn_gather`: bilinear sampling written as index arithmetic and one gather, with no `grid_sample` and
  no shape-dependent Python, so an ONNX graph of it runs at any input size on any runtime.
- `ms_deform_attn_bag` (`msda_bag.py`): every point's four bilinear taps and attention weight as one weighted
  `embedding_bag` per (query, head), with no sampled tensor and no output transpose; the fastest on a CPU.
- the fused Triton kernel in `msda_triton.py`, imported only when used.

Names for `set_msda_impl`, the `msda_impl(...)` context manager and the environment variable `VITSEG_MSDA` (read at
import): 'fast' (default: the Triton kernel for CUDA tensors when Triton imports, the embedding_bag form on a CPU,
the packed grid_sample otherwise), 'grid' (always the packed grid_sample), 'bag' (always the embedding_bag form),
'triton' (always the kernel; on the CPU only under `TRITON_INTERPRET=1`), 'gather' and 'reference'. 'reference'
also keeps the backbone's other official forms (NCHW convs, ConvTranspose2d upsampling, see adapter.py; the blocks'
explicit attention, see attention.py), so it is the whole-model baseline too. `MSDeformAttn` is the module with the
official parameter names and initialisation; under autocast it samples in float32 (half-precision sampling locations
are off by whole pixels).
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
from functools import lru_cache
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from . import msda_bag
from .msda_bag import ms_deform_attn_bag

Shapes = list[tuple[int, int]]
IMPLS = ("fast", "reference", "grid", "gather", "triton", "bag")
_impl = os.environ.get("VITSEG_MSDA", "fast").strip().lower() or "fast"
if _impl not in IMPLS:
    raise ValueError(f"VITSEG_MSDA must be one of {IMPLS}, got {_impl!r}")


def set_msda_impl(name: str) -> None:
    """Select the deformable-attention sampling implementation used by every `MSDeformAttn`."""
    global _impl
    if name not in IMPLS:
        raise ValueError(f"unknown MSDA implementation {name!r} (choose from {IMPLS})")
    _impl = name


def get_msda_impl() -> str:
    return _impl


@contextlib.contextmanager
def msda_impl(name: str) -> Iterator[None]:
    """Temporarily use another implementation (benchmarks, tests)."""
    previous = get_msda_impl()
    set_msda_impl(name)
    try:
        yield
    finally:
        set_msda_impl(previous)


def ms_deform_attn_reference(value: torch.Tensor, spatial_shapes: Shapes,
                             sampling_locations: torch.Tensor, attention_weights: torch.Tensor) -> torch.Tensor:
    """value (N, S, M, Dh); locations (N, Lq, M, L, P, 2) in [0, 1] (x, y); weights (N, Lq, M, L, P) -> (N, Lq, M*Dh)."""
    n, _, m, dh = value.shape
    _, lq, _, n_levels, n_points, _ = sampling_locations.shape
    value_list = value.split([h * w for h, w in spatial_shapes], dim=1)
    grids = 2 * sampling_locations - 1
    sampled = []
    for lvl, (h, w) in enumerate(spatial_shapes):
        value_l = value_list[lvl].flatten(2).transpose(1, 2).reshape(n * m, dh, h, w)
        grid_l = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(value_l, grid_l, mode="bilinear", padding_mode="zeros", align_corners=False))
    weights = attention_weights.transpose(1, 2).reshape(n * m, 1, lq, n_levels * n_points)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1).view(n, m * dh, lq)
    return out.transpose(1, 2).contiguous()


class _Canvas:
    """Where each level sits in the packed canvas, and the per-level affine map from [0, 1] locations to it.

    Levels are placed left to right, top-aligned, with one zero column between neighbours; the canvas is as tall as
    the tallest level. A location is first clamped to [-1, size] in its level's pixel space: every bilinear tap of a
    point outside that range is zero-padding in the reference, and after the clamp its taps land in a zero gap or
    outside the canvas (weight exactly 0 on the in-level tap), so no other level's values can leak in.
    """

    def __init__(self, shapes: Shapes, device: torch.device, dtype: torch.dtype):
        self.shapes = shapes
        self.height = max(h for h, _ in shapes)
        self.width = sum(w for _, w in shapes) + len(shapes) - 1
        x0 = [sum(w + 1 for _, w in shapes[:i]) for i in range(len(shapes))]
        size = torch.tensor([[w, h] for h, w in shapes], dtype=torch.float64)
        canvas = torch.tensor([self.width, self.height], dtype=torch.float64)
        shift = torch.tensor([[x, 0.0] for x in x0], dtype=torch.float64)
        # pixel-space u = loc * size - 0.5 (align_corners=False), clamp u to [-1, size], then
        # grid = 2 * (u + 0.5 + shift) / canvas - 1, so: loc * size clamped to [-0.5, size + 0.5], times 2/canvas,
        # plus (2 * shift / canvas - 1)
        as_t = lambda t: t.to(device=device, dtype=dtype)[:, None, :]  # noqa: E731  (L, 1, 2): broadcast over P
        self.size = as_t(size)
        self.low = as_t(torch.full_like(size, -0.5))
        self.high = as_t(size + 0.5)
        self.scale = as_t((2.0 / canvas).expand_as(size))
        self.offset = as_t(2.0 * shift / canvas - 1.0)

    def pack(self, value: torch.Tensor) -> torch.Tensor:
        """(B, C, S) level-concatenated values -> (B, C, height, width) canvas."""
        if len(self.shapes) == 1:
            h, w = self.shapes[0]
            return value.unflatten(-1, (h, w))
        parts = value.split([h * w for h, w in self.shapes], dim=-1)
        last = len(self.shapes) - 1
        padded = [F.pad(p.unflatten(-1, (h, w)), (0, int(i < last), 0, self.height - h))
                  for i, (p, (h, w)) in enumerate(zip(parts, self.shapes))]
        return torch.cat(padded, dim=-1)

    def grid(self, locations: torch.Tensor) -> torch.Tensor:
        """(..., L, P, 2) locations in [0, 1] level coordinates -> grid in [-1, 1] canvas coordinates."""
        pixels = torch.minimum(torch.maximum(locations * self.size, self.low), self.high)
        return pixels * self.scale + self.offset


@lru_cache(maxsize=64)
def _canvas(shapes: tuple[tuple[int, int], ...], device: torch.device, dtype: torch.dtype) -> _Canvas:
    with torch.inference_mode(False), torch.no_grad():
        return _Canvas(list(shapes), device, dtype)


def ms_deform_attn_fast(value: torch.Tensor, spatial_shapes: Shapes,
                        sampling_locations: torch.Tensor, attention_weights: torch.Tensor) -> torch.Tensor:
    """Same contract and result as `ms_deform_attn_reference`, with a single `grid_sample` for all levels."""
    n, s, m, dh = value.shape
    _, lq, _, n_levels, n_points, _ = sampling_locations.shape
    k = n_levels * n_points
    canvas = _canvas(tuple((int(h), int(w)) for h, w in spatial_shapes), value.device, value.dtype)
    packed = canvas.pack(value.permute(0, 2, 3, 1).reshape(n * m, dh, s))
    # grid (N*M, K, Lq, 2): the kernel's inner loop runs over the last grid axis, so make it the long one
    grid = canvas.grid(sampling_locations).permute(0, 2, 3, 4, 1, 5).reshape(n * m, k, lq, 2)
    sampled = F.grid_sample(packed, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    weights = attention_weights.permute(0, 2, 3, 4, 1).reshape(n * m, 1, k, lq)
    if torch.is_grad_enabled() and (sampled.requires_grad or weights.requires_grad):
        out = (sampled * weights).sum(2)
    else:
        out = sampled.mul_(weights).sum(2)  # no autograd graph: reuse the sampled buffer
    return out.view(n, m * dh, lq).transpose(1, 2)


def ms_deform_attn_gather(value: torch.Tensor, spatial_shapes: Shapes, sampling_locations: torch.Tensor,
                          attention_weights: torch.Tensor) -> torch.Tensor:
    """Same contract and result as `ms_deform_attn_reference`, as one gather of the four taps of every point.

    Each tap's flat row is computed from the location; taps outside their level point at an extra zero row, which is
    the reference's zero padding. Level sizes enter only through arithmetic, so symbolic sizes export dynamically.
    """
    n, s, m, dh = value.shape
    _, lq, _, n_levels, n_points, _ = sampling_locations.shape
    rows, taps = [], []
    start = 0
    for lvl, (h, w) in enumerate(spatial_shapes):
        loc = sampling_locations[:, :, :, lvl]  # (N, Lq, M, P, 2)
        x = loc[..., 0] * w - 0.5
        y = loc[..., 1] * h - 0.5
        x0, y0 = x.floor(), y.floor()
        fx, fy = x - x0, y - y0
        for dx, dy, weight in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy),
                               (1, 1, fx * fy)):
            xi, yi = x0 + dx, y0 + dy
            inside = (xi >= 0) & (xi <= w - 1) & (yi >= 0) & (yi <= h - 1)
            flat = (yi * w + xi + start).clamp(0, s - 1)  # float: exact for any map below 2**24 positions
            rows.append(torch.where(inside, flat, torch.full_like(flat, s)).long())
            taps.append(weight * inside.to(weight.dtype))
        start = start + h * w
    # (N, Lq, M, P, L*4) -> (N, Lq, M, L*P*4) rows and weights; each attention weight covers its point's four taps
    rows = torch.stack(rows, -1).view(n, lq, m, n_points, n_levels, 4).transpose(3, 4).reshape(n, lq, m, -1)
    taps = torch.stack(taps, -1).view(n, lq, m, n_points, n_levels, 4).transpose(3, 4).reshape(n, lq, m, -1)
    per_tap = attention_weights.unsqueeze(-1).expand(n, lq, m, n_levels, n_points, 4)
    taps = taps * per_tap.reshape(n, lq, m, -1)
    table = F.pad(value, (0, 0, 0, 0, 0, 1)).permute(0, 2, 1, 3).reshape(-1, dh)  # + the zero row S
    base = (torch.arange(n * m, device=value.device).view(n, 1, m, 1) * (s + 1))
    picked = table.index_select(0, (rows + base).reshape(-1)).view(n, lq, m, -1, dh)
    out = (picked * taps.to(picked.dtype)[..., None]).sum(3)
    return out.reshape(n, lq, m * dh)


def _fast(value: torch.Tensor, *args) -> torch.Tensor:
    if value.is_cuda and _triton_importable():
        return _triton_fn()(value, *args)
    if value.device.type == "cpu":
        return ms_deform_attn_bag(value, *args)
    return ms_deform_attn_fast(value, *args)


@lru_cache(maxsize=1)
def _triton_importable() -> bool:
    try:
        _triton_fn()
    except ImportError:
        return False
    return True


def _triton_fn():
    # the kernel module imports Triton (~1 s, an optional dependency): loaded by name, only when this path runs
    return importlib.import_module(f"{__package__}.msda_triton").ms_deform_attn_triton


def ms_deform_attn(value: torch.Tensor, spatial_shapes: Shapes, sampling_locations: torch.Tensor,
                   attention_weights: torch.Tensor) -> torch.Tensor:
    """The sampling core with the selected implementation (see `set_msda_impl`)."""
    if _impl == "fast":
        fn = _fast
    elif _impl == "triton":
        fn = _triton_fn()
    else:
        fn = {"grid": ms_deform_attn_fast, "gather": ms_deform_attn_gather, "bag": ms_deform_attn_bag,
              "reference": ms_deform_attn_reference}[_impl]
    return fn(value, spatial_shapes, sampling_locations, attention_weights)


def split_levels(x: torch.Tensor, sizes: list, dim: int = 1) -> list[torch.Tensor]:
    """`x.split(sizes, dim)` of level-concatenated tokens. While tracing for ONNX export the sizes are traced tensors,
    which `split` would bake in as constants: there the parts are slices at traced offsets instead."""
    if not torch.jit.is_tracing():
        return list(x.split(sizes, dim=dim))
    parts, start, lead = [], 0, (slice(None),) * (dim % x.dim())
    for size in sizes:
        parts.append(x[(*lead, slice(start, start + size))])
        start = start + size
    return parts


class MSDeformAttn(nn.Module):
    """Deformable attention over L feature levels; `ratio` shrinks the value dimension (ViT-Adapter's deform_ratio)."""

    def __init__(self, d_model: int, n_levels: int, n_heads: int, n_points: int, ratio: float = 1.0):
        super().__init__()
        value_dim = int(d_model * ratio)
        if value_dim % n_heads:
            raise ValueError(f"d_model*ratio ({value_dim}) must be divisible by n_heads ({n_heads})")
        self.d_model, self.n_levels, self.n_heads, self.n_points = d_model, n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, value_dim)
        self.output_proj = nn.Linear(value_dim, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        theta = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([theta.cos(), theta.sin()], -1)
        grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(self.n_heads, 1, 1, 2)
        grid = grid.repeat(1, self.n_levels, self.n_points, 1)
        grid = grid * torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.view(-1))
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        for proj in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(proj.weight)
            nn.init.constant_(proj.bias, 0.0)

    def forward(self, query: torch.Tensor, reference_points: torch.Tensor, feat: torch.Tensor,
                spatial_shapes: Shapes) -> torch.Tensor:
        """query (N, Lq, D); reference_points (1 or N, Lq, 2) as (x, y) in [0, 1]; feat (N, S, D) -> (N, Lq, D)."""
        n, lq, _ = query.shape
        m, n_levels, n_points = self.n_heads, self.n_levels, self.n_points
        value = self.value_proj(feat)
        with torch.autocast(query.device.type, enabled=False):
            # offsets, weights and sampling in float32 even under autocast: a bf16 offset of ~10 px is off by ~0.05 px
            dtype = torch.float32 if query.dtype in (torch.float16, torch.bfloat16) else query.dtype
            query, value = query.to(dtype), value.to(dtype)
            value = value.view(n, feat.shape[1], m, -1)
            if not torch.jit.is_tracing() and (_impl == "bag" or (_impl == "fast" and value.device.type == "cpu")):
                pixels, logits = self._framed_pixels_and_logits(query, reference_points, spatial_shapes)
                weights = _softmax_short_rows(logits.view(n * lq, m, n_levels * n_points))
                out = msda_bag.sample(value, spatial_shapes, pixels, weights, n_points)
            else:
                offsets, logits = self.sampling_offsets(query), self.attention_weights(query)
                offsets = offsets.view(n, lq, m, n_levels, n_points, 2)
                weights = _softmax_short_rows(logits.reshape(n, lq, m, n_levels * n_points))
                weights = weights.view(n, lq, m, n_levels, n_points)
                # offsets are in pixels of each level: normalise by that level's (W, H)
                if torch.jit.is_tracing():  # ONNX export: the level sizes are traced tensors, nothing to cache
                    normalizer = torch.stack([torch.stack([w, h]) for h, w in spatial_shapes]).to(dtype)[:, None, :]
                else:
                    normalizer = _normalizer(tuple(spatial_shapes), query.device, dtype)
                locations = reference_points.to(dtype)[:, :, None, None, None, :] + offsets / normalizer
                out = ms_deform_attn(value, spatial_shapes, locations, weights)
        return self.output_proj(out)

    def _framed_pixels_and_logits(self, query: torch.Tensor, reference_points: torch.Tensor,
                                  spatial_shapes: Shapes) -> tuple[torch.Tensor, torch.Tensor]:
        """For `msda_bag.sample`: each point's pixel coordinates in its level's zero frame, planar (N*Lq, 2, M*L*P),
        and the attention logits (N*Lq, M*L*P), from one matmul of the query and one rank-2 update.

        The official locations are reference + offset / size, sampled at location * size - 0.5 (align_corners=False),
        i.e. at offset + reference * size - 0.5: the offset rows of the projection are reordered (x plane, y plane),
        the constant goes into their bias and reference * size is added as (N*Lq, 2) @ (2, ...) in place."""
        n, lq, d = query.shape
        k = self.n_heads * self.n_levels * self.n_points
        offsets, logits = self.sampling_offsets, self.attention_weights
        # rows (M, L, P, xy) -> (xy, M, L, P)
        planar = lambda t: t.view(k, 2, -1).transpose(0, 1).reshape(2 * k, -1)  # noqa: E731
        weight = torch.cat([planar(offsets.weight), logits.weight])
        bias = torch.cat([planar(offsets.bias.unsqueeze(1)).view(-1) + (msda_bag.FRAME_BEFORE - 0.5), logits.bias])
        both = torch.addmm(bias, query.reshape(n * lq, d), weight.t())
        sizes = _level_sizes(tuple(spatial_shapes), self.n_heads, self.n_points, query.device, query.dtype)
        refs = reference_points.to(query.dtype).expand(n, lq, 2).reshape(n * lq, 2)
        both = both.addmm_(refs, sizes) if not both.requires_grad else both + refs @ sizes
        return both[:, :2 * k].view(n * lq, 2, k), both[:, 2 * k:]


def _softmax_short_rows(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis. The rows here are 4-16 long, where `Tensor.softmax` runs a slow per-row loop on
    the CPU; max-subtract, exp and divide as whole-tensor ops are about 4x faster and equal to within 2e-7."""
    if logits.requires_grad or logits.device.type != "cpu":
        return logits.softmax(-1)
    e = (logits - logits.amax(-1, keepdim=True)).exp_()
    return e.div_(e.sum(-1, keepdim=True))


@lru_cache(maxsize=64)
def _level_sizes(shapes: tuple[tuple[int, int], ...], m: int, p: int, device: torch.device,
                 dtype: torch.dtype) -> torch.Tensor:
    """(2, 3 * M*L*P): row 0 holds each point's level width under the x plane, row 1 its height under the y plane,
    zeros under the logits (the columns of `_framed_pixels_and_logits`' projection)."""
    with torch.inference_mode(False), torch.no_grad():
        per_point = lambda i: torch.tensor([s[i] for s in shapes], dtype=dtype, device=device).view(1, -1, 1).expand(
            m, len(shapes), p).reshape(-1)  # noqa: E731
        k = m * len(shapes) * p
        sizes = torch.zeros(2, 3 * k, dtype=dtype, device=device)
        sizes[0, :k], sizes[1, k:2 * k] = per_point(1), per_point(0)
        return sizes


@lru_cache(maxsize=64)
def _normalizer(shapes: tuple[tuple[int, int], ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(L, 1, 2) tensor of each level's (W, H), cached so no host-to-device copy happens per call."""
    with torch.inference_mode(False), torch.no_grad():
        return torch.tensor([[w, h] for h, w in shapes], dtype=dtype, device=device)[:, None, :]
