"""Backbone gradients against central finite differences (float64), so training follows the true loss slope."""

from __future__ import annotations

import pytest
import torch

from vitseg_cli import build_model
from vitseg_cli.model.msda import msda_impl


@pytest.mark.parametrize("impl", ["reference", "fast"])
def test_backbone_gradients_match_finite_differences(impl):
    torch.manual_seed(0)
    model = build_model("nano").backbone
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # away from the zero init, so every path carries gradient
    model = model.double().eval()
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)  # batch 1: the case CPU BatchNorm got wrong on views
    probes = [torch.randn(1, 96, 64 // s, 64 // s, dtype=torch.float64) for s in (4, 8, 16, 32)]
    params = dict(model.named_parameters())
    names = ["patch_embed.proj.bias", "level_embed", "blocks.3.gamma2", "interactions.1.injector.gamma"]

    def loss() -> torch.Tensor:
        return sum((f * p).sum() for f, p in zip(model(x), probes))

    with msda_impl(impl):
        model.zero_grad()
        loss().backward()
        for name in names:
            p = params[name]
            direction = torch.randn_like(p)
            analytic = (p.grad * direction).sum().item()
            eps = 1e-6
            with torch.no_grad():
                p.add_(eps * direction)
                plus = loss().item()
                p.sub_(2 * eps * direction)
                minus = loss().item()
                p.add_(eps * direction)
            numeric = (plus - minus) / (2 * eps)
            assert analytic == pytest.approx(numeric, rel=1e-4, abs=1e-6), name
