"""Multi-scale deformable attention as one fused Triton kernel, forward and backward.

Same contract and sampling rules as `msda.ms_deform_attn_reference` (bilinear, zero padding, align_corners=False):
value (N, S, M, Dh) in float32/bfloat16/float16; locations (N, Lq, M, L, P, 2) in [0, 1] as (x, y); weights
(N, Lq, M, L, P) -> (N, Lq, M*Dh) in value's dtype. All arithmetic accumulates in float32.

One program handles a block of queries of one (batch, head) pair with the head's channels as the second block axis:
the four taps of every (level, point) are loaded as contiguous Dh-vectors, weighted and summed in registers, so no
(N*M, Dh, K, Lq) sampled tensor is ever written. The backward recomputes the taps, scatters the value gradient with
float32 atomics and writes the location and weight gradients directly (each belongs to exactly one program).

Importing this module imports Triton (about a second), so `msda.py` imports it only when the Triton path is used.
On the CPU it runs under Triton's interpreter (`TRITON_INTERPRET=1` set before Triton is first imported).
"""

from __future__ import annotations

from functools import lru_cache

import torch
import triton
import triton.language as tl

Shapes = list[tuple[int, int]]


@triton.jit
def _tap(value_ptr, row0, m, M, h, w, xi, yi, d, q_ok, d_ok, Dh):
    """The Dh-vector at integer pixel (xi, yi) of one level, zero outside it; (BLOCK_Q, BLOCK_D) float32."""
    inside = q_ok & (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    row = (row0 + (yi * w + xi).to(tl.int64)) * M + m
    ptrs = value_ptr + row[:, None] * Dh + d[None, :]
    return tl.load(ptrs, mask=inside[:, None] & d_ok[None, :], other=0.0).to(tl.float32), row, inside


@triton.jit
def _point(loc_ptr, attw_ptr, idx, q_ok, h, w):
    """Attention weight, pixel-space corner (x0, y0) and fractions (fx, fy) of one sampling point per query."""
    lx = tl.load(loc_ptr + idx * 2, mask=q_ok, other=0.0).to(tl.float32)
    ly = tl.load(loc_ptr + idx * 2 + 1, mask=q_ok, other=0.0).to(tl.float32)
    a = tl.load(attw_ptr + idx, mask=q_ok, other=0.0).to(tl.float32)
    wf = w.to(tl.float32)
    hf = h.to(tl.float32)
    # align_corners=False: pixel u = loc * size - 0.5. Beyond [-1, size] every tap is padding, so clamping there
    # changes nothing but keeps the int conversion in range (and NaN/inf locations harmless).
    x = tl.minimum(tl.maximum(lx * wf - 0.5, -2.0), wf + 1.0)
    y = tl.minimum(tl.maximum(ly * hf - 0.5, -2.0), hf + 1.0)
    x0f = tl.floor(x)
    y0f = tl.floor(y)
    return a, x0f.to(tl.int32), y0f.to(tl.int32), x - x0f, y - y0f


@triton.jit
def _forward_kernel(value_ptr, shapes_ptr, starts_ptr, loc_ptr, attw_ptr, out_ptr, S, Lq, M, Dh,
                    L: tl.constexpr, P: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_D: tl.constexpr):
    nm = tl.program_id(1)
    n = nm // M
    m = nm % M
    q = tl.program_id(0) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    d = tl.arange(0, BLOCK_D)
    q_ok = q < Lq
    d_ok = d < Dh
    qm = (n * Lq + q).to(tl.int64) * M + m
    acc = tl.zeros([BLOCK_Q, BLOCK_D], dtype=tl.float32)
    for lvl in tl.static_range(L):
        h = tl.load(shapes_ptr + 2 * lvl)
        w = tl.load(shapes_ptr + 2 * lvl + 1)
        row0 = n.to(tl.int64) * S + tl.load(starts_ptr + lvl)
        for p in tl.static_range(P):
            a, x0, y0, fx, fy = _point(loc_ptr, attw_ptr, (qm * L + lvl) * P + p, q_ok, h, w)
            v00, _, _ = _tap(value_ptr, row0, m, M, h, w, x0, y0, d, q_ok, d_ok, Dh)
            v01, _, _ = _tap(value_ptr, row0, m, M, h, w, x0 + 1, y0, d, q_ok, d_ok, Dh)
            v10, _, _ = _tap(value_ptr, row0, m, M, h, w, x0, y0 + 1, d, q_ok, d_ok, Dh)
            v11, _, _ = _tap(value_ptr, row0, m, M, h, w, x0 + 1, y0 + 1, d, q_ok, d_ok, Dh)
            top = v00 * (1.0 - fx)[:, None] + v01 * fx[:, None]
            bottom = v10 * (1.0 - fx)[:, None] + v11 * fx[:, None]
            acc += (top * (1.0 - fy)[:, None] + bottom * fy[:, None]) * a[:, None]
    ptrs = out_ptr + qm[:, None] * Dh + d[None, :]
    tl.store(ptrs, acc.to(out_ptr.dtype.element_ty), mask=q_ok[:, None] & d_ok[None, :])


@triton.jit
def _scatter(grad_value_ptr, row, inside, d, d_ok, Dh, contribution):
    tl.atomic_add(grad_value_ptr + row[:, None] * Dh + d[None, :], contribution,
                  mask=inside[:, None] & d_ok[None, :])


@triton.jit
def _backward_kernel(value_ptr, shapes_ptr, starts_ptr, loc_ptr, attw_ptr, grad_out_ptr,
                     grad_value_ptr, grad_loc_ptr, grad_attw_ptr, S, Lq, M, Dh,
                     L: tl.constexpr, P: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_D: tl.constexpr):
    nm = tl.program_id(1)
    n = nm // M
    m = nm % M
    q = tl.program_id(0) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    d = tl.arange(0, BLOCK_D)
    q_ok = q < Lq
    d_ok = d < Dh
    qm = (n * Lq + q).to(tl.int64) * M + m
    go = tl.load(grad_out_ptr + qm[:, None] * Dh + d[None, :], mask=q_ok[:, None] & d_ok[None, :],
                 other=0.0).to(tl.float32)
    for lvl in tl.static_range(L):
        h = tl.load(shapes_ptr + 2 * lvl)
        w = tl.load(shapes_ptr + 2 * lvl + 1)
        row0 = n.to(tl.int64) * S + tl.load(starts_ptr + lvl)
        for p in tl.static_range(P):
            idx = (qm * L + lvl) * P + p
            a, x0, y0, fx, fy = _point(loc_ptr, attw_ptr, idx, q_ok, h, w)
            v00, r00, i00 = _tap(value_ptr, row0, m, M, h, w, x0, y0, d, q_ok, d_ok, Dh)
            v01, r01, i01 = _tap(value_ptr, row0, m, M, h, w, x0 + 1, y0, d, q_ok, d_ok, Dh)
            v10, r10, i10 = _tap(value_ptr, row0, m, M, h, w, x0, y0 + 1, d, q_ok, d_ok, Dh)
            v11, r11, i11 = _tap(value_ptr, row0, m, M, h, w, x0 + 1, y0 + 1, d, q_ok, d_ok, Dh)
            gx = 1.0 - fx
            gy = 1.0 - fy
            sampled = (v00 * gx[:, None] + v01 * fx[:, None]) * gy[:, None] \
                + (v10 * gx[:, None] + v11 * fx[:, None]) * fy[:, None]
            # d(sampled)/dx and /dy in pixels; the location is in [0, 1] units, hence the * w and * h below
            dx = (v01 - v00) * gy[:, None] + (v11 - v10) * fy[:, None]
            dy = (v10 - v00) * gx[:, None] + (v11 - v01) * fx[:, None]
            tl.store(grad_attw_ptr + idx, tl.sum(go * sampled, axis=1).to(grad_attw_ptr.dtype.element_ty), mask=q_ok)
            glx = a * tl.sum(go * dx, axis=1) * w.to(tl.float32)
            gly = a * tl.sum(go * dy, axis=1) * h.to(tl.float32)
            tl.store(grad_loc_ptr + idx * 2, glx.to(grad_loc_ptr.dtype.element_ty), mask=q_ok)
            tl.store(grad_loc_ptr + idx * 2 + 1, gly.to(grad_loc_ptr.dtype.element_ty), mask=q_ok)
            ga = go * a[:, None]
            _scatter(grad_value_ptr, r00, i00, d, d_ok, Dh, ga * (gx * gy)[:, None])
            _scatter(grad_value_ptr, r01, i01, d, d_ok, Dh, ga * (fx * gy)[:, None])
            _scatter(grad_value_ptr, r10, i10, d, d_ok, Dh, ga * (gx * fy)[:, None])
            _scatter(grad_value_ptr, r11, i11, d, d_ok, Dh, ga * (fx * fy)[:, None])


@lru_cache(maxsize=64)
def _level_tables(shapes: tuple[tuple[int, int], ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(L, 2) int32 (h, w) and (L,) int32 start row of each level, cached per device."""
    with torch.inference_mode(False), torch.no_grad():
        starts, total = [], 0
        for h, w in shapes:
            starts.append(total)
            total += h * w
        return (torch.tensor(shapes, dtype=torch.int32, device=device).reshape(-1, 2),
                torch.tensor(starts, dtype=torch.int32, device=device))


def _launch_shape(lq: int, dh: int, n: int, m: int) -> tuple[tuple[int, int], int, int]:
    block_d = triton.next_power_of_2(dh)
    block_q = max(1, min(64, 2048 // block_d, triton.next_power_of_2(lq)))
    return (triton.cdiv(lq, block_q), n * m), block_q, block_d


class _MSDeformAttnFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, value, shapes, locations, weights):
        value, locations, weights = value.contiguous(), locations.contiguous(), weights.contiguous()
        n, s, m, dh = value.shape
        _, lq, _, n_levels, n_points, _ = locations.shape
        hw, starts = _level_tables(shapes, value.device)
        out = torch.empty(n, lq, m, dh, dtype=value.dtype, device=value.device)
        grid, block_q, block_d = _launch_shape(lq, dh, n, m)
        _forward_kernel[grid](value, hw, starts, locations, weights, out, s, lq, m, dh,
                              L=n_levels, P=n_points, BLOCK_Q=block_q, BLOCK_D=block_d)
        ctx.save_for_backward(value, locations, weights)
        ctx.shapes = shapes
        return out.view(n, lq, m * dh)

    @staticmethod
    def backward(ctx, grad_out):
        value, locations, weights = ctx.saved_tensors
        n, s, m, dh = value.shape
        _, lq, _, n_levels, n_points, _ = locations.shape
        hw, starts = _level_tables(ctx.shapes, value.device)
        grad_value = torch.zeros(value.shape, dtype=torch.float32, device=value.device)
        grad_loc = torch.empty_like(locations)
        grad_weights = torch.empty_like(weights)
        grid, block_q, block_d = _launch_shape(lq, dh, n, m)
        _backward_kernel[grid](value, hw, starts, locations, weights, grad_out.contiguous(), grad_value, grad_loc,
                               grad_weights, s, lq, m, dh, L=n_levels, P=n_points, BLOCK_Q=block_q,
                               BLOCK_D=block_d)
        return grad_value.to(value.dtype), None, grad_loc, grad_weights


def ms_deform_attn_triton(value: torch.Tensor, spatial_shapes: Shapes, sampling_locations: torch.Tensor,
                          attention_weights: torch.Tensor) -> torch.Tensor:
    """Same contract and result as `msda.ms_deform_attn_reference`, in one fused kernel."""
    shapes = tuple((int(h), int(w)) for h, w in spatial_shapes)
    return _MSDeformAttnFunction.apply(value, shapes, sampling_locations, attention_weights)
