"""Deformable-attention sampling as one weighted `embedding_bag`: the CPU inference path.

Bilinear sampling is linear in the values, so the attention-weighted sum over levels, points and the four bilinear
taps of every point is one weighted sum of value rows per (query, head). `F.embedding_bag(mode="sum")` computes
exactly that from row indices and per-row weights without materialising the sampled points, and its output rows
(batch, query, head) are already the (N, Lq, M * Dh) layout the output projection reads, so no transpose follows.

The value table is the value tensor with each level framed by zero rows and columns (one before, two after). The
official zero padding (`align_corners=False`) then needs no per-tap validity test: a pixel coordinate is clamped
into the frame, and every tap of a point outside its level lands on the zero frame or gets weight 0. Taps (ty, tx)
of a point sit at fixed row offsets from its top-left tap, so the row arithmetic is done once per point.

The pixel coordinates arrive planar, (N*Lq, 2 axes, M*L*P), already shifted into the frame: `MSDeformAttn` makes
them with its offset projection (`_framed_pixels_and_logits`), and `ms_deform_attn_bag` from normalised locations.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

Shapes = list[tuple[int, int]]

# float32 pixel and row arithmetic is exact while the table has fewer rows than these, int32 rows likewise
FLOAT32_ROWS, INT32_ROWS = 2 ** 24, 2 ** 31
FRAME_BEFORE, FRAME_AFTER = 1, 2  # zero rows / columns around each level in the value table


class _Levels:
    """Per-level constants for one (shapes, heads, points), expanded over (M, L, P) so that every elementwise op
    below broadcasts only along its leading (query) axis: a broadcast whose innermost run is 2 or 4 elements is
    ~20x slower on a CPU."""

    def __init__(self, shapes: Shapes, m: int, p: int, device: torch.device, dtype: torch.dtype,
                 index: torch.dtype):
        def per_level(values: list[float], dt: torch.dtype) -> torch.Tensor:
            return torch.tensor(values, dtype=dt, device=device).view(1, -1, 1).expand(m, len(shapes), p)

        framed = [(h + FRAME_BEFORE + FRAME_AFTER, w + FRAME_BEFORE + FRAME_AFTER) for h, w in shapes]
        lp = len(shapes) * p
        # clamp range of framed pixel coordinates: [0, size + 1], so a point's taps (floor, floor + 1) stay in frame
        self.low = torch.zeros(1, dtype=dtype, device=device)
        self.high = torch.stack([per_level([w + 1 for _, w in shapes], dtype),
                                 per_level([h + 1 for h, _ in shapes], dtype)]).reshape(2, m * lp)
        starts = [sum(hh * ww for hh, ww in framed[:i]) * m for i in range(len(shapes))]
        heads = torch.arange(m, dtype=dtype, device=device).view(m, 1, 1)
        self.base = (per_level(starts, dtype) + heads).reshape(m, lp)  # row of framed (0, 0) per head and level
        self.row_y = per_level([ww * m for _, ww in framed], dtype).reshape(m, lp)  # one step in y
        self.step_y = self.row_y.to(index)  # the same, as row indices
        self.rows = sum(hh * ww for hh, ww in framed) * m  # table rows per batch element


@lru_cache(maxsize=64)
def _levels(shapes: tuple[tuple[int, int], ...], m: int, p: int, device: torch.device, dtype: torch.dtype,
            index: torch.dtype) -> _Levels:
    with torch.inference_mode(False), torch.no_grad():
        return _Levels(list(shapes), m, p, device, dtype, index)


def framed_rows(value: torch.Tensor, spatial_shapes: Shapes) -> int:
    """Rows of the framed value table of `value` (N, S, M, Dh)."""
    frame = FRAME_BEFORE + FRAME_AFTER
    per_level = sum((h + frame) * (w + frame) for h, w in _key(spatial_shapes))
    return value.shape[0] * per_level * value.shape[2]


def arithmetic_dtypes(rows: int, dtype: torch.dtype) -> tuple[torch.dtype, torch.dtype]:
    """(pixel / row arithmetic dtype, row index dtype) exact for a table of `rows` rows and `dtype` coordinates."""
    exact32 = rows < FLOAT32_ROWS and dtype != torch.float64
    return (torch.float32 if exact32 else torch.float64), (torch.int32 if rows < INT32_ROWS else torch.int64)


def ms_deform_attn_bag(value: torch.Tensor, spatial_shapes: Shapes, sampling_locations: torch.Tensor,
                       attention_weights: torch.Tensor) -> torch.Tensor:
    """value (N, S, M, Dh); locations (N, Lq, M, L, P, 2) in [0, 1] (x, y); weights (N, Lq, M, L, P) -> (N, Lq, M*Dh).

    Same contract and result as the reference (one `grid_sample` per level), to float rounding."""
    n, lq, m, n_levels, p, _ = sampling_locations.shape
    dtype, index = arithmetic_dtypes(framed_rows(value, spatial_shapes), sampling_locations.dtype)
    lv = _levels(_key(spatial_shapes), m, p, value.device, dtype, index)
    sizes = (lv.high - 1).to(dtype)  # (2, K): each level's (W, H)
    # framed pixel coordinates, align_corners=False: location * size - 0.5 + FRAME_BEFORE
    pixels = sampling_locations.to(dtype).reshape(n * lq, -1, 2).transpose(1, 2) * sizes + (FRAME_BEFORE - 0.5)
    return sample(value, spatial_shapes, pixels, attention_weights.reshape(n * lq, m, n_levels * p), p)


def sample(value: torch.Tensor, spatial_shapes: Shapes, pixels: torch.Tensor, attention: torch.Tensor,
           n_points: int) -> torch.Tensor:
    """value (N, S, M, Dh); framed pixel coordinates (N*Lq, 2 axes, M*L*P), any float (NaN and inf give NaN, as
    the reference); attention weights (N*Lq, M, L*P) -> the weighted sums (N, Lq, M*Dh) as one embedding_bag."""
    n, _, m, dh = value.shape
    nlq, lp = pixels.shape[0], attention.shape[-1]
    table = _framed_table(value, spatial_shapes)
    dtype, index = arithmetic_dtypes(table.shape[0], pixels.dtype)
    lv = _levels(_key(spatial_shapes), m, n_points, value.device, dtype, index)
    pixels = pixels.to(dtype)
    clamped = torch.clamp(pixels, lv.low, lv.high)
    corner = clamped.floor()
    frac = clamped - corner
    if not math.isfinite(pixels.sum().item()):  # one pass (huge finite coordinates may land here too: harmless)
        frac = frac + (pixels - pixels)  # NaN where the coordinate is NaN or infinite; a clamped row stays valid
        corner = corner.nan_to_num(nan=0.0)
    cx, cy = corner.view(nlq, 2, m, lp).unbind(1)
    top_left = torch.addcmul(lv.base, cy, lv.row_y).add_(cx, alpha=m)
    if n > 1:  # each batch element has its own table of lv.rows rows
        top_left = top_left + (torch.arange(n, dtype=dtype, device=value.device) * lv.rows).repeat_interleave(
            nlq // n).view(-1, 1, 1)
    # the four taps (ty, tx) of every point, each computed as a whole plane and interleaved by one stack (a broadcast
    # into the interleaved layout runs 2-4x slower: its innermost run is only L*P long)
    top_left = top_left.to(index)
    below = top_left + lv.step_y
    rows = torch.stack([top_left, top_left + m, below, below + m], 2).view(nlq * m, 4 * lp)
    fx, fy = frac.view(nlq, 2, m, lp).unbind(1)
    attention = attention.to(dtype)
    lower = attention * fy  # attention x the y factor of the lower taps
    upper = attention - lower
    left = 1 - fx
    weights = torch.stack([upper * left, upper * fx, lower * left, lower * fx], 2)
    weights = weights.to(value.dtype).view(nlq * m, 4 * lp)
    out = F.embedding_bag(rows, table, mode="sum", per_sample_weights=weights)
    return out.view(n, nlq // n, m * dh)


def _framed_table(value: torch.Tensor, spatial_shapes: Shapes) -> torch.Tensor:
    """(N * framed rows * M, Dh): every level of `value` (N, S, M, Dh) inside its frame of zeros."""
    n, _, m, dh = value.shape
    shapes = _key(spatial_shapes)
    levels = value.split([h * w for h, w in shapes], dim=1)
    framed = [F.pad(level.reshape(n, h, w, m * dh), (0, 0, FRAME_BEFORE, FRAME_AFTER, FRAME_BEFORE, FRAME_AFTER))
              for level, (h, w) in zip(levels, shapes)]
    table = framed[0].reshape(n, -1) if len(framed) == 1 else torch.cat([f.reshape(n, -1) for f in framed], 1)
    return table.reshape(-1, dh)


def _key(shapes: Shapes) -> tuple[tuple[int, int], ...]:
    return tuple((int(h), int(w)) for h, w in shapes)
