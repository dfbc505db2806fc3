"""Fast multi-scale deformable attention against the official per-level grid_sample form (the oracle)."""

from __future__ import annotations

import json

import pytest
import torch

from vitseg_cli import build_model, load_model
from vitseg_cli.model import msda_bag
from vitseg_cli.model.msda import (MSDeformAttn, get_msda_impl, ms_deform_attn_fast, ms_deform_attn_gather,
                                   ms_deform_attn_reference, msda_impl, set_msda_impl)
from vitseg_cli.model.msda_bag import ms_deform_attn_bag

TORCH_IMPLS = {"fast": ms_deform_attn_fast, "gather": ms_deform_attn_gather, "bag": ms_deform_attn_bag}

CASES = [  # (spatial shapes, batch, queries, heads, head dim, points)
    ([(5, 7), (3, 4), (2, 2)], 2, 11, 2, 8, 4),
    ([(6, 6)], 1, 9, 3, 4, 3),
    ([(4, 9), (1, 1)], 3, 5, 1, 3, 2),
    ([(2, 3), (7, 5), (3, 3), (1, 6)], 1, 13, 4, 2, 1),
]


def _inputs(shapes, n, lq, m, dh, p, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    s = sum(h * w for h, w in shapes)
    value = torch.randn(n, s, m, dh, generator=g, dtype=dtype)
    # well outside [0, 1] too: zero padding, and nothing may leak from a neighbouring level of the packed canvas
    loc = torch.rand(n, lq, m, len(shapes), p, 2, generator=g, dtype=dtype) * 2.0 - 0.5
    weights = torch.rand(n, lq, m, len(shapes), p, generator=g, dtype=dtype)
    return value, loc, weights


@pytest.mark.parametrize("impl", sorted(TORCH_IMPLS))
@pytest.mark.parametrize("case", range(len(CASES)))
def test_fast_equals_reference_forward_and_backward(case, impl):
    shapes, *dims = CASES[case]
    value, loc, weights = (t.requires_grad_() for t in _inputs(shapes, *dims, seed=case))
    ref = ms_deform_attn_reference(value, shapes, loc, weights)
    fast = TORCH_IMPLS[impl](value, shapes, loc, weights)
    assert fast.shape == ref.shape
    assert torch.allclose(fast, ref, atol=1e-10)
    probe = torch.randn_like(ref)
    grads_ref = torch.autograd.grad((ref * probe).sum(), (value, loc, weights))
    grads_fast = torch.autograd.grad((fast * probe).sum(), (value, loc, weights))
    for name, a, b in zip(("value", "locations", "weights"), grads_ref, grads_fast):
        assert torch.allclose(a, b, atol=1e-9), name


def test_fast_float32_and_no_grad_path():
    shapes, *dims = CASES[0]
    value, loc, weights = _inputs(shapes, *dims, seed=7, dtype=torch.float32)
    ref = ms_deform_attn_reference(value, shapes, loc, weights)
    with torch.no_grad():  # the in-place weighted sum
        fast = ms_deform_attn_fast(value, shapes, loc, weights)
    assert (fast - ref).abs().max().item() < 1e-5


def test_points_at_level_edges_and_far_outside_read_zero_padding():
    shapes = [(3, 4), (2, 2)]
    value = torch.randn(1, 16, 1, 5, dtype=torch.float64)
    edges = torch.tensor([-10.0, -0.25, -1 / 8, 0.0, 0.5, 1.0, 1 + 1 / 8, 1.25, 3.0], dtype=torch.float64)
    xs, ys = torch.meshgrid(edges, edges, indexing="ij")
    loc = torch.stack([xs.flatten(), ys.flatten()], -1)[None, :, None, None, None, :].expand(1, -1, 1, 2, 1, 2)
    weights = torch.ones(1, loc.shape[1], 1, 2, 1, dtype=torch.float64)
    ref = ms_deform_attn_reference(value, shapes, loc, weights)
    for fn in TORCH_IMPLS.values():
        assert torch.allclose(fn(value, shapes, loc, weights), ref, atol=1e-12)


def test_module_switch_and_autocast_keeps_float32_sampling():
    attn = MSDeformAttn(16, 2, 2, 2).double()
    torch.nn.init.normal_(attn.sampling_offsets.weight, std=0.5)
    torch.nn.init.normal_(attn.attention_weights.weight)
    shapes = [(4, 4), (2, 2)]
    query, feat = torch.randn(2, 6, 16, dtype=torch.float64), torch.randn(2, 20, 16, dtype=torch.float64)
    refs = torch.rand(1, 6, 2, dtype=torch.float64)
    with msda_impl("reference"):
        ref = attn(query, refs, feat, shapes)
    assert get_msda_impl() == "fast"
    assert torch.allclose(attn(query, refs, feat, shapes), ref, atol=1e-10)
    with msda_impl("gather"):
        assert torch.allclose(attn(query, refs, feat, shapes), ref, atol=1e-10)
    with pytest.raises(ValueError):
        set_msda_impl("cuda")
    attn = attn.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attn(query.float(), refs.float(), feat.float(), shapes)
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref.float()).abs().max().item() < 0.1


def test_backbone_fast_path_reproduces_official_outputs(parity_dir):
    config = json.loads((parity_dir / "mini_config.json").read_text())
    case = torch.load(parity_dir / "mini_case.pt", weights_only=True)
    model = load_model(parity_dir / "mini_checkpoint.pth", spec={"model": {"backbone": config}})
    with torch.no_grad():
        for impl in ("fast", "reference"):
            with msda_impl(impl):
                outs = model.backbone(case["input"])
            for ours, ref in zip(outs, case["outputs"]):
                assert (ours - ref).abs().max().item() <= 1e-3, impl


def test_backbone_gradients_match_reference():
    torch.manual_seed(0)
    model = build_model("nano").backbone.train()
    for p in model.parameters():  # perturb so offsets, weights and gammas all matter
        p.data.add_(torch.randn_like(p) * 0.05)
    model.eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        probes = [torch.randn_like(f) for f in model(x)]
    grads = {}
    for impl in ("reference", "fast"):
        model.zero_grad()
        with msda_impl(impl):
            loss = sum((f * p).sum() for f, p in zip(model(x), probes))
        loss.backward()
        grads[impl] = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    scale = grads["reference"].abs().max()
    assert (grads["fast"] - grads["reference"]).abs().max() <= 1e-4 * scale


def _module_inputs(dtype=torch.float64):
    torch.manual_seed(3)
    attn = MSDeformAttn(32, 3, 4, 4).to(dtype)
    with torch.no_grad():  # non-trivial offsets and weights (their init is zero)
        for p in attn.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    shapes = [(8, 6), (4, 3), (2, 2)]
    query = torch.randn(2, 10, 32, dtype=dtype, requires_grad=True)
    feat = torch.randn(2, sum(h * w for h, w in shapes), 32, dtype=dtype)
    refs = torch.rand(1, 10, 2, dtype=dtype)
    return attn, (query, refs, feat, shapes)


def test_module_bag_path_equals_reference_values_and_gradients():
    attn, args = _module_inputs()
    out = {}
    for impl in ("reference", "bag"):
        with msda_impl(impl):
            out[impl] = attn(*args)
    assert torch.allclose(out["bag"], out["reference"], atol=1e-12)
    grads = [torch.autograd.grad(out[k].square().sum(), [args[0], *attn.parameters()]) for k in ("reference", "bag")]
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-10)


def test_fast_on_cpu_is_the_bag_path(monkeypatch):
    calls = []
    real = msda_bag.sample
    monkeypatch.setattr(msda_bag, "sample", lambda *a: calls.append(1) or real(*a))
    attn, args = _module_inputs(torch.float32)
    with torch.no_grad(), msda_impl("fast"):
        fast = attn(*args)
    with torch.no_grad(), msda_impl("reference"):
        ref = attn(*args)
    assert calls and (fast - ref).abs().max().item() < 1e-5


def test_bag_wide_index_path_for_large_tables(monkeypatch):
    """Past 2**24 rows float32 arithmetic is no longer exact, past 2**31 int32 overflows: float64 / int64 then
    (forced here by lowering the limits, a real table that large would not fit a test)."""
    shapes, *dims = CASES[0]
    value, loc, weights = _inputs(shapes, *dims, seed=5, dtype=torch.float32)
    ref = ms_deform_attn_reference(value, shapes, loc, weights)
    monkeypatch.setattr(msda_bag, "FLOAT32_ROWS", 0)
    monkeypatch.setattr(msda_bag, "INT32_ROWS", 0)
    assert msda_bag.arithmetic_dtypes(10, torch.float32) == (torch.float64, torch.int64)
    assert (ms_deform_attn_bag(value, shapes, loc, weights) - ref).abs().max().item() < 1e-5


def test_bag_nan_or_inf_location_gives_nan_as_the_reference_not_an_out_of_range_row():
    shapes = [(3, 4), (2, 2)]
    value = torch.randn(1, 16, 1, 5)
    loc = torch.rand(1, 3, 1, 2, 1, 2)
    loc[0, 1, 0, 0, 0, 0] = float("nan")
    loc[0, 2, 0, 1, 0, 1] = float("inf")
    weights = torch.ones(1, 3, 1, 2, 1)
    out = ms_deform_attn_bag(value, shapes, loc, weights)
    ref = ms_deform_attn_reference(value, shapes, loc, weights)
    assert torch.isnan(ref[0, 1:]).all() and torch.isnan(out[0, 1:]).all()
    assert torch.allclose(out[0, 0], ref[0, 0], atol=1e-6)


def test_backbone_fast_path_equals_reference_with_every_weight_and_norm_statistic_perturbed():
    """Covers what zero-initialised official weights leave out: the upsampling bias folded into the 1/4 norm, folded
    SPM norms with real statistics, nonzero offsets."""
    torch.manual_seed(1)
    backbone = build_model("nano").backbone.eval()
    with torch.no_grad():
        for p in backbone.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        for m in backbone.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    assert backbone.up.bias.abs().min() > 0
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        outs = {}
        for impl in ("fast", "reference"):
            with msda_impl(impl):
                outs[impl] = backbone(x)
    for fast, ref in zip(outs["fast"], outs["reference"]):
        assert fast.shape == ref.shape
        assert (fast - ref).abs().max().item() <= 1e-4 * ref.abs().max().item()
