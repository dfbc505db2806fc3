"""The fused Triton deformable-attention kernel against the reference, on the CPU under Triton's interpreter.

TRITON_INTERPRET must be set before Triton is first imported, so the check runs in a fresh interpreter. Values and
the gradients of value, locations and attention weights must agree within 1e-5 in float32; the half-precision
inputs must come back in their own dtype, within their rounding of the float32 result.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("triton")

SCRIPT = textwrap.dedent('''
    import torch
    from vitseg_cli.model.msda import ms_deform_attn_reference, msda_impl, MSDeformAttn
    from vitseg_cli.model.msda_triton import ms_deform_attn_triton

    cases = [([(5, 7), (3, 4), (2, 2)], 2, 9, 2, 6, 2), ([(4, 9), (1, 1)], 1, 5, 3, 3, 3)]
    for i, (shapes, n, lq, m, dh, p) in enumerate(cases):
        g = torch.Generator().manual_seed(i)
        s = sum(h * w for h, w in shapes)
        value = torch.randn(n, s, m, dh, generator=g).requires_grad_()
        loc = (torch.rand(n, lq, m, len(shapes), p, 2, generator=g) * 2.0 - 0.5)
        loc[0, 0, 0, 0, 0] = torch.tensor([0.0, 1.0])  # exactly on the borders
        loc[0, 1, 0, 0, 0] = torch.tensor([-30.0, 1e6])  # far outside: all zero padding
        loc.requires_grad_()
        weights = torch.rand(n, lq, m, len(shapes), p, generator=g).requires_grad_()
        ref = ms_deform_attn_reference(value, shapes, loc, weights)
        out = ms_deform_attn_triton(value, shapes, loc, weights)
        assert out.shape == ref.shape and out.dtype == torch.float32
        assert (out - ref).abs().max().item() <= 1e-5, "values"
        probe = torch.randn(ref.shape, generator=g)
        for name, a, b in zip(("value", "locations", "weights"),
                              torch.autograd.grad(out, (value, loc, weights), probe),
                              torch.autograd.grad(ref, (value, loc, weights), probe)):
            assert (a - b).abs().max().item() <= 1e-5, name
        for dtype in (torch.bfloat16, torch.float16):
            half = ms_deform_attn_triton(value.detach().to(dtype), shapes, loc.detach(), weights.detach())
            expect = ms_deform_attn_reference(value.detach().to(dtype).float(), shapes, loc.detach(),
                                              weights.detach())
            assert half.dtype == dtype
            tol = 2e-2 if dtype == torch.bfloat16 else 2e-3
            assert (half.float() - expect).abs().max().item() <= tol * expect.abs().max().item(), dtype
    attn = MSDeformAttn(12, 2, 2, 2)
    torch.nn.init.normal_(attn.sampling_offsets.weight, std=0.5)
    q, feat, refs = torch.randn(1, 6, 12), torch.randn(1, 20, 12), torch.rand(1, 6, 2)
    with msda_impl("reference"):
        ref = attn(q, refs, feat, [(4, 4), (2, 2)])
    with msda_impl("triton"):
        assert (attn(q, refs, feat, [(4, 4), (2, 2)]) - ref).abs().max().item() <= 1e-5, "module"
    print("triton-ok")
''')


def test_triton_kernel_matches_reference_under_the_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "triton-ok" in done.stdout, done.stderr[-3000:]


def test_importing_the_model_does_not_import_triton():
    code = ("import sys, vitseg_cli.model.adapter, vitseg_cli.model.msda; "
            "print('vitseg_cli.model.msda_triton' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr[-2000:]
