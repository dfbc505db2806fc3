"""Layer-wise lr decay groups, the no-weight-decay set, and the mmcv warmup + poly schedule (resumable)."""

from __future__ import annotations

import math

import pytest
import torch

from vitseg_cli.engine.optim import WarmupPolyLR, build_optimizer, build_scheduler
from vitseg_cli.model.segmentor import build_model
from vitseg_cli.spec import load_spec


@pytest.fixture(scope="module")
def nano():
    return build_model("nano")


def _scale_of(opt, name):
    for g in opt.param_groups:
        if name in g["param_names"]:
            return g["lr_scale"], g["weight_decay"]
    raise KeyError(name)


def test_layer_ids():
    tiny = build_model("tiny")  # depth 12: the official numbering, owned by the model
    assert tiny.num_layers == 13
    assert tiny.layer_id("backbone.pos_embed") == 0
    assert tiny.layer_id("backbone.patch_embed.proj.weight") == 0
    assert tiny.layer_id("backbone.blocks.0.attn.qkv.weight") == 1
    assert tiny.layer_id("backbone.blocks.11.mlp.fc2.weight") == 12
    for other in ("backbone.level_embed", "backbone.spm.stem.0.weight", "backbone.interactions.0.injector.gamma",
                  "backbone.up.weight", "backbone.norm1.weight", "decode_head.conv_seg.weight",
                  "auxiliary_head.convs.0.conv.weight"):
        assert tiny.layer_id(other) == 13, other


def test_layer_decay_scales_and_no_decay_set(nano):
    spec = load_spec("nano")
    depth = spec.model.backbone.depth
    rate = spec.train.layer_decay_rate
    opt = build_optimizer(nano, spec.train)
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.defaults["betas"] == (0.9, 0.999)
    scale, wd = _scale_of(opt, "backbone.blocks.0.attn.qkv.weight")
    assert scale == pytest.approx(rate ** depth) and wd == pytest.approx(0.01)
    scale, _ = _scale_of(opt, f"backbone.blocks.{depth - 1}.mlp.fc1.weight")
    assert scale == pytest.approx(rate ** 1)
    assert _scale_of(opt, "backbone.patch_embed.proj.weight")[0] == pytest.approx(rate ** (depth + 1))
    for adapter in ("backbone.spm.stem.0.weight", "backbone.interactions.0.injector.attn.value_proj.weight",
                    "decode_head.conv_seg.weight"):
        assert _scale_of(opt, adapter) == (1.0, pytest.approx(0.01)), adapter
    for nd in ("backbone.pos_embed", "backbone.level_embed", "backbone.blocks.0.gamma1",
               "backbone.blocks.0.attn.qkv.bias", "backbone.norm1.weight", "backbone.interactions.0.injector.gamma",
               "decode_head.conv_seg.bias"):
        assert _scale_of(opt, nd)[1] == 0.0, nd
    # every trainable parameter is in exactly one group
    n_grouped = sum(len(g["params"]) for g in opt.param_groups)
    assert n_grouped == len(list(nano.parameters()))
    # learning rates carry the scale
    g = next(g for g in opt.param_groups if "backbone.blocks.0.attn.qkv.weight" in g["param_names"])
    assert g["lr"] == pytest.approx(spec.train.lr * rate ** depth)


def test_no_weight_decay_rule(nano):
    assert nano.no_weight_decay("decode_head.x.weight", torch.zeros(4))
    assert nano.no_weight_decay("decode_head.x.bias", torch.zeros(4, 4))
    assert nano.no_weight_decay("backbone.pos_embed", torch.zeros(1, 5, 4))
    assert nano.no_weight_decay("backbone.level_embed", torch.zeros(3, 4))
    assert not nano.no_weight_decay("backbone.blocks.0.attn.qkv.weight", torch.zeros(4, 4))
    assert not nano.no_weight_decay("decode_head.x.weight", torch.zeros(4, 4))


def _opt(lr=1.0):
    p = torch.nn.Parameter(torch.zeros(2, 2))
    return torch.optim.AdamW([{"params": [p], "lr": lr * 0.5, "lr_scale": 0.5}, {"params": [], "lr": lr}], lr=lr)


def test_schedule_mmcv_values():
    opt = _opt(1.0)
    sch = WarmupPolyLR(opt, max_iters=100, warmup_iters=10, warmup_ratio=1e-6, power=1.0, min_lr=0.0)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[1]["lr"])
        sch.step()
    assert lrs[0] == pytest.approx(1e-6 * 1.0, rel=1e-3)  # (1 - 0/100) * warmup start
    k = (1 - 5 / 10) * (1 - 1e-6)
    assert lrs[5] == pytest.approx((1 - 5 / 100) * (1 - k))
    assert lrs[10] == pytest.approx(0.9) and lrs[50] == pytest.approx(0.5)
    assert lrs[99] == pytest.approx(0.01)
    assert max(lrs) == lrs[10]  # peak at the end of warmup
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5 * opt.param_groups[1]["lr"])


def test_schedule_min_lr_and_power():
    opt = _opt(1.0)
    sch = WarmupPolyLR(opt, max_iters=10, warmup_iters=0, power=2.0, min_lr=0.1)
    for _ in range(5):
        sch.step()
    assert opt.param_groups[1]["lr"] == pytest.approx(0.9 * 0.25 + 0.1)
    for _ in range(20):
        sch.step()
    assert opt.param_groups[1]["lr"] == pytest.approx(0.1)


def test_schedule_resumes():
    spec = load_spec("nano").train.model_copy(update={"iters": 50, "warmup_iters": 7})
    a = _opt()
    sa = build_scheduler(a, spec)
    for _ in range(13):
        sa.step()
    b = _opt()
    sb = build_scheduler(b, spec.model_copy(update={"warmup_iters": 0}))
    sb.load_state_dict(sa.state_dict())
    assert [g["lr"] for g in b.param_groups] == [g["lr"] for g in a.param_groups]
    sa.step(), sb.step()
    assert sb.last_iter == 14 and math.isclose(b.param_groups[1]["lr"], a.param_groups[1]["lr"])
