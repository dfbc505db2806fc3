"""The block stacks' attention: the fused kernel in the fast path, the official explicit form under 'reference'."""

from __future__ import annotations

import pytest
import torch

from vitseg_cli import build_model
from vitseg_cli.model import attention as attention_module
from vitseg_cli.model.attention import attention
from vitseg_cli.model.msda import msda_impl


def _explicit(q, k, v, bias=None):
    """softmax(q k^T / sqrt(d) + bias) v, written out by hand."""
    scores = torch.einsum("hnd,hmd->hnm", q, k) / q.shape[-1] ** 0.5
    if bias is not None:
        scores = scores + bias
    return torch.einsum("hnm,hmd->hnd", scores.softmax(-1), v)


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("scale_query", [False, True])
def test_both_forms_equal_the_written_out_formula(with_bias, scale_query):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 7, 8, generator=g, dtype=torch.float64) for _ in range(3))
    bias = torch.randn(3, 7, 7, generator=g, dtype=torch.float64) if with_bias else None
    expected = _explicit(q, k, v, bias)
    for impl in ("fast", "reference"):
        with msda_impl(impl):
            out = attention(q, k, v, bias, scale_query=scale_query)
        assert torch.allclose(out, expected, atol=1e-12), impl


SMALL = dict(img_size=64, embed_dim=64, depth=4, num_heads=4, deform_num_heads=4, conv_inplane=16,
             interaction_indexes=[[0, 0], [1, 1], [2, 2], [3, 3]])
BACKBONES = {"vit": "nano",
             "beit": {"model": {"backbone": {"type": "beit_adapter", "use_shared_rel_pos_bias": True, **SMALL},
                                "decode_head": {"type": "upernet", "channels": 16}, "num_classes": 3}},
             "uniperceiver": {"model": {"backbone": {"type": "uniperceiver_adapter", **SMALL},
                                        "decode_head": {"type": "upernet", "channels": 16}, "num_classes": 3}}}


@pytest.mark.parametrize("family", sorted(BACKBONES))
def test_reference_path_never_uses_the_fused_kernel_and_fast_path_does(family, monkeypatch):
    calls = []
    fused = attention_module.F.scaled_dot_product_attention
    monkeypatch.setattr(attention_module.F, "scaled_dot_product_attention",
                        lambda *a, **kw: calls.append(1) or fused(*a, **kw))
    model = build_model(BACKBONES[family]).eval()
    x = torch.randn(1, 3, 64, 64)
    outs = {}
    with torch.no_grad():
        for impl in ("reference", "fast"):
            calls.clear()
            with msda_impl(impl):
                outs[impl] = model.backbone(x)
            assert bool(calls) == (impl == "fast"), impl
    for a, b in zip(outs["reference"], outs["fast"]):
        assert (a - b).abs().max().item() < 1e-4
