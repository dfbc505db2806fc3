"""Deformable-attention sampling as one weighted `embedding_bag`: the CPU inference path.

Bilinear sampling is linear in the values, so the attention-weighted sum over levels, points and the four bilinear
taps of every point is one weighted sum of value rows per (query, head). `F.embedding_bag(mode="sum")` computes
exactly that from row indices and per-row weights without materialising the sampled points, and its output rows
(batch, query, head) are already the (N, Lq, M * Dh) layout the output projection reads, so no transpose follows.
The value table is the value tensor itself (rows (batch, position, head)): nothing is packed or padded.

Taps outside their level get weight 0 (the official zero padding, `align_corners=False`), with their index clamped
into the level so it stays a valid row. Per axis: a tap's weight is the product of its x and y factors, each zero
when that coordinate is outside the level, so validity costs nothing extra.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

Shapes = list[tuple[int, int]]


# float32 pixel arithmetic and int32 rows are exact while the value table has fewer rows than these
FLOAT32_ROWS, INT32_ROWS = 2 ** 24, 2 ** 31


class _Levels:
    """Per-level constants for one (shapes, heads, points), expanded to (M, L, P) so that every elementwise op below
    runs over long contiguous rows (a broadcast whose innermost run is 2 or 4 elements is ~20x slower on a CPU)."""

    def __init__(self, shapes: Shapes, m: int, p: int, device: torch.device, dtype: torch.dtype,
                 index: torch.dtype):
        def per_level(values: list[float], dt: torch.dtype) -> torch.Tensor:
            return torch.tensor(values, dtype=dt, device=device).view(1, -1, 1).expand(m, len(shapes), p).contiguous()

        widths, heights = [w for _, w in shapes], [h for h, _ in shapes]
        self.size = torch.stack([per_level(widths, dtype), per_level(heights, dtype)])[:, None]  # (2, 1, M, L, P)
        self.last = self.size - 1
        self.row_y = per_level([w * m for w in widths], index)  # one step in y moves W positions of M rows
        starts = [sum(h * w for h, w in shapes[:i]) * m for i in range(len(shapes))]
        self.row_base = per_level(starts, index) + torch.arange(m, dtype=index, device=device).view(m, 1, 1)


@lru_cache(maxsize=64)
def _levels(shapes: tuple[tuple[int, int], ...], m: int, p: int, device: torch.device, dtype: torch.dtype,
            index: torch.dtype) -> _Levels:
    with torch.inference_mode(False), torch.no_grad():
        return _Levels(list(shapes), m, p, device, dtype, index)


def _dtypes(value: torch.Tensor, locations: torch.Tensor) -> tuple[torch.dtype, torch.dtype]:
    rows = value.shape[0] * value.shape[1] * value.shape[2]
    exact32 = rows < FLOAT32_ROWS and locations.dtype != torch.float64
    return (torch.float32 if exact32 else torch.float64), (torch.int32 if rows < INT32_ROWS else torch.int64)


def ms_deform_attn_bag(value: torch.Tensor, spatial_shapes: Shapes, sampling_locations: torch.Tensor,
                       attention_weights: torch.Tensor) -> torch.Tensor:
    """value (N, S, M, Dh); locations (N, Lq, M, L, P, 2) in [0, 1] (x, y); weights (N, Lq, M, L, P) -> (N, Lq, M*Dh).

    Same contract and result as the reference (one `grid_sample` per level), to float rounding."""
    dtype, index = _dtypes(value, sampling_locations)
    lv = _levels(_key(spatial_shapes), value.shape[2], sampling_locations.shape[4], value.device, dtype, index)
    # (2, N*Lq, M, L, P): x and y planes, each contiguous; pixel coordinates with align_corners=False
    pixels = (sampling_locations.to(dtype).movedim(-1, 0).flatten(1, 2) * lv.size).sub_(0.5)
    return _sample(value, pixels, attention_weights, lv, index)


def ms_deform_attn_bag_offsets(value: torch.Tensor, spatial_shapes: Shapes, reference_points: torch.Tensor,
                               offsets: torch.Tensor, attention_weights: torch.Tensor) -> torch.Tensor:
    """The same from the module's raw pieces: reference points (1 or N, Lq, 2) and offsets (N, Lq, M, L, P, 2) in
    pixels of each level, locations = reference + offsets / (W, H) as the official module computes them, but in the
    planar layout (no (..., 2)-innermost broadcasts)."""
    n, lq = offsets.shape[:2]
    dtype, index = _dtypes(value, offsets)
    lv = _levels(_key(spatial_shapes), value.shape[2], offsets.shape[4], value.device, dtype, index)
    refs = reference_points.to(dtype).expand(n, lq, 2).movedim(-1, 0).reshape(2, n * lq, 1, 1, 1)
    locations = (offsets.to(dtype).movedim(-1, 0).flatten(1, 2) / lv.size).add_(refs)
    return _sample(value, locations.mul_(lv.size).sub_(0.5), attention_weights, lv, index)


def _key(shapes: Shapes) -> tuple[tuple[int, int], ...]:
    return tuple((int(h), int(w)) for h, w in shapes)


def _sample(value: torch.Tensor, pixels: torch.Tensor, attention_weights: torch.Tensor, lv: _Levels,
            index: torch.dtype) -> torch.Tensor:
    """pixels (2 axes, N*Lq, M, L, P) -> the weighted sums (N, Lq, M*Dh) as one embedding_bag."""
    n, s, m, dh = value.shape
    nlq, k = pixels.shape[1], pixels.shape[3] * pixels.shape[4]
    corner = pixels.floor().nan_to_num_(nan=-2.0)  # NaN / inf: a valid row; the weight is NaN, as the reference
    frac = pixels - corner
    taps = torch.stack([corner, corner + 1])  # (2 taps, 2 axes, N*Lq, M, L, P)
    # bilinear weight per tap and axis, zero where the tap is outside its level (the official zero padding)
    weight = torch.stack([1 - frac, frac]).mul_((taps >= 0) & (taps <= lv.last))  # a product: NaN stays NaN
    tap = torch.minimum(taps.clamp_(min=0), lv.last).to(index)
    wy = weight[:, 1] * attention_weights.to(pixels.dtype).view(nlq, m, -1, pixels.shape[4])
    ry = tap[:, 1] * lv.row_y + lv.row_base  # row of (y, x) in the (N*S*M, Dh) table: ry + x * M (+ batch * S * M)
    if n > 1:
        ry += (torch.arange(n, dtype=index, device=value.device) * (s * m)).repeat_interleave(nlq // n).view(-1, 1, 1, 1)
    # each (batch, query, head) is one bag of 4 * L * P rows; the outer products write straight into that layout
    rows = torch.empty(nlq * m, 2, 2, k, dtype=index, device=value.device)
    torch.add(ry.view(2, 1, -1, k), (tap[:, 0] * m).view(1, 2, -1, k), out=rows.permute(1, 2, 0, 3))
    wy, wx = wy.view(2, 1, -1, k).to(value.dtype), weight[:, 0].view(1, 2, -1, k).to(value.dtype)
    if torch.is_grad_enabled() and (wy.requires_grad or wx.requires_grad):
        weights = (wy * wx).permute(2, 0, 1, 3)
    else:
        weights = torch.empty(nlq * m, 2, 2, k, dtype=value.dtype, device=value.device)
        torch.mul(wy, wx, out=weights.permute(1, 2, 0, 3))
    out = F.embedding_bag(rows.view(-1, 4 * k), value.reshape(n * s * m, dh), mode="sum",
                          per_sample_weights=weights.reshape(-1, 4 * k))
    return out.view(n, nlq // n, m * dh)
