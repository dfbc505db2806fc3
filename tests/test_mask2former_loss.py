"""The Mask2Former loss: ground-truth masks, the matcher, point-sampled losses against dense ones, gradients."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from vitseg_cli.model.heads.mask2former import Mask2FormerHead
from vitseg_cli.model.heads.mask2former_loss import (Mask2FormerLoss, hungarian_match, match_cost,
                                                     semantic_to_instances)
from vitseg_cli.model.heads.mask2former_config import Mask2FormerHeadSpec, Mask2FormerLossSpec

IGNORE = 255
OFFICIAL = Mask2FormerLossSpec()  # the released configs' weights: cls 2, mask 5, dice 5, no-object 0.1


def test_official_loss_settings():
    assert (OFFICIAL.cls_weight, OFFICIAL.mask_weight, OFFICIAL.dice_weight, OFFICIAL.no_object_weight) == (2, 5, 5, 0.1)
    assert (OFFICIAL.num_points, OFFICIAL.oversample_ratio, OFFICIAL.importance_sample_ratio) == (12544, 3, 0.75)


def test_semantic_target_to_class_masks_without_ignored_pixels():
    target = torch.tensor([[0, 2, IGNORE], [2, 2, 0]])
    labels, masks = semantic_to_instances(target, IGNORE, num_classes=3)
    assert labels.tolist() == [0, 2]
    assert masks.tolist() == [[[1, 0, 0], [0, 0, 1]], [[0, 1, 0], [1, 1, 0]]]
    labels8, masks8 = semantic_to_instances(target.to(torch.uint8), IGNORE, num_classes=3)
    assert labels8.dtype == torch.long and labels8.tolist() == [0, 2] and torch.equal(masks8, masks)
    assert semantic_to_instances(torch.full((2, 2), IGNORE), IGNORE, 3)[1].shape == (0, 2, 2)
    with pytest.raises(ValueError, match=r"\[5\]"):
        semantic_to_instances(torch.tensor([[0, 5]]), IGNORE, num_classes=3)


def test_match_cost_of_one_pair_by_hand():
    # sigmoid(0) = 1/2, sigmoid(ln 3) = 3/4; target (1, 0); uniform class logits over K+1 = 3 slots
    cost = match_cost(torch.zeros(1, 3), torch.tensor([[0.0, math.log(3)]]), torch.tensor([1]),
                      torch.tensor([[1.0, 0.0]]), OFFICIAL)
    bce = (math.log(2) + math.log(4)) / 2
    dice = 1 - (2 * 0.5 + 1) / (0.5 + 0.75 + 1 + 1)
    assert cost.item() == pytest.approx(2 * (-1 / 3) + 5 * bce + 5 * dice, rel=1e-6)


def test_matcher_finds_the_optimum_that_greedy_misses():
    # class probabilities (K = 2, last slot no-object); all masks equal, so only the class cost differs:
    # cost = -2 p: q0 (-1.1, -0.8), q1 (-1.0, -0.0002), q2 (-0.2, -0.2). Greedy takes q0->g0, then q1->g1 (-1.1002);
    # the optimum is q0->g1, q1->g0 (-1.8), q2 unmatched.
    probs = torch.tensor([[0.55, 0.4, 0.05], [0.5, 0.0001, 0.4999], [0.1, 0.1, 0.8]])
    point_logits = torch.zeros(3, 4)
    gt_points = torch.tensor([[1.0, 1, 0, 0], [0, 0, 1, 1]])
    cost = match_cost(probs.log(), point_logits, torch.tensor([0, 1]), gt_points, OFFICIAL)
    queries, gts = hungarian_match(cost)
    assert queries.tolist() == [0, 1] and gts.tolist() == [1, 0]


class _AllPixels(Mask2FormerLoss):
    """Every point sampler returns the centres of all pixels of an (h, w) grid: point losses become dense."""

    def __init__(self, spec, num_classes, h, w):
        super().__init__(spec.model_copy(update={"num_points": h * w}), num_classes)
        ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                                indexing="ij")
        self.centres = torch.stack(((xs.flatten() + 0.5) / w, (ys.flatten() + 0.5) / h), -1)

    def uniform_points(self, num, device):
        return self.centres.expand(num, -1, -1)

    def importance_points(self, mask_logits):
        return self.centres.expand(mask_logits.shape[0], -1, -1)


def _pair_cost(cls_logits, mask_logits, gt_mask, label, spec):
    p, t = mask_logits.sigmoid(), gt_mask
    bce = -(t * p.log() + (1 - t) * (1 - p).log()).mean()
    dice = 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
    cls = -cls_logits.softmax(-1)[label]
    return spec.cls_weight * cls + spec.mask_weight * bce + spec.dice_weight * dice


def _dense_reference(cls_preds, mask_preds, target, num_classes, spec):
    """Brute-force matching and the losses on whole masks, written from the official formulas."""
    weights = torch.ones(num_classes + 1, dtype=torch.float64)
    weights[-1] = spec.no_object_weight
    total = {"loss_cls": 0.0, "loss_mask": 0.0, "loss_dice": 0.0}
    for cls_pred, mask_pred in zip(cls_preds, mask_preds):
        labels = torch.full(cls_pred.shape[:2], num_classes)
        pairs = []
        for b in range(len(target)):
            present = [c for c in range(num_classes) if (target[b] == c).any()]
            gts = [(target[b] == c).double().flatten() for c in present]
            preds = mask_pred[b].flatten(1)
            costs = [[_pair_cost(cls_pred[b, q], preds[q], gts[g], present[g], spec) for g in range(len(gts))]
                     for q in range(cls_pred.shape[1])]
            best = min(itertools.permutations(range(cls_pred.shape[1]), len(present)),
                       key=lambda qs: sum(costs[q][g] for g, q in enumerate(qs)))
            for g, q in enumerate(best):
                labels[b, q] = present[g]
                pairs.append((preds[q], gts[g]))
        logp = cls_pred.log_softmax(-1)
        w = weights[labels]
        nll = -logp.gather(-1, labels[..., None])[..., 0]
        total["loss_cls"] += spec.cls_weight * (w * nll).sum() / w.sum()
        p = torch.stack([pp for pp, _ in pairs]).sigmoid()
        t = torch.stack([tt for _, tt in pairs])
        bce = -(t * p.log() + (1 - t) * (1 - p).log())
        total["loss_mask"] += spec.mask_weight * bce.mean()
        dice = 1 - (2 * (p * t).sum(-1) + 1) / (p.sum(-1) + t.sum(-1) + 1)
        total["loss_dice"] += spec.dice_weight * dice.sum() / len(pairs)
    return total


def test_point_sampled_losses_equal_dense_losses_when_every_pixel_is_a_point():
    g = torch.Generator().manual_seed(0)
    num_classes, queries, h, w = 3, 4, 6, 5
    target = torch.randint(0, num_classes, (3, h, w), generator=g)
    target[0, :2, :2] = IGNORE
    target[1] = 1
    target[2] = IGNORE  # an image with no labelled pixel: all its queries are "no object"
    cls_preds = [torch.randn(3, queries, num_classes + 1, generator=g, dtype=torch.float64) for _ in range(2)]
    mask_preds = [3 * torch.randn(3, queries, h, w, generator=g, dtype=torch.float64) for _ in range(2)]
    spec = Mask2FormerLossSpec(cls_weight=2.0, mask_weight=5.0, dice_weight=3.0, no_object_weight=0.2)
    loss = _AllPixels(spec, num_classes, h, w)
    # float64 all through, so the comparison is tight
    got = {}
    for cls_pred, mask_pred in zip(cls_preds, mask_preds):
        gts = [semantic_to_instances(t, IGNORE, num_classes) for t in target]
        gts = [(labels, masks.double()) for labels, masks in gts]
        for name, value in zip(("loss_cls", "loss_mask", "loss_dice"), loss.stage_loss(cls_pred, mask_pred, gts)):
            got[name] = got.get(name, 0.0) + value
    want = _dense_reference(cls_preds, mask_preds, target, num_classes, spec)
    for name in want:
        assert got[name].item() == pytest.approx(want[name].item(), rel=1e-9), name


def test_importance_points_favour_uncertain_pixels():
    torch.manual_seed(0)
    logits = torch.full((1, 1, 8, 8), 10.0)
    logits[..., :4] = 0.0  # left half: maximally uncertain
    loss = Mask2FormerLoss(Mask2FormerLossSpec(num_points=1000), num_classes=2)
    points = loss.importance_points(logits)
    assert points.shape == (1, 1000, 2) and points.min() >= 0 and points.max() <= 1
    # the 750 importance points lie in the uncertain half (or the one-pixel band bilinear blurs it into)
    assert points[0, :750, 0].max() <= (4 + 0.5) / 8
    assert points[0, 750:, 0].max() > 0.6  # the other 250 are uniform over the whole map


def _tiny_head(num_classes=3):
    spec = Mask2FormerHeadSpec(feat_channels=32, out_channels=32, num_queries=5,
                               pixel_decoder={"num_layers": 1, "feedforward_channels": 32, "num_groups": 8},
                               transformer_decoder={"num_layers": 2, "feedforward_channels": 32},
                               loss={"num_points": 64})
    return Mask2FormerHead(spec, [16] * 4, num_classes)


def test_head_loss_is_finite_and_reaches_the_queries():
    torch.manual_seed(0)
    head = _tiny_head()
    feats = [torch.randn(2, 16, 64 // s, 64 // s) for s in (4, 8, 16, 32)]
    target = torch.randint(0, 3, (2, 60, 62))  # smaller than the padded input: padded with ignore_index
    target[0, 10:20] = IGNORE
    losses = head.loss(feats, target, IGNORE)
    assert set(losses) == {"loss_cls", "loss_mask", "loss_dice"}
    assert all(v.ndim == 0 and torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    for p in (head.query_feat.weight, head.query_embed.weight, head.cls_embed.weight):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_head_loss_on_a_fully_ignored_batch_trains_the_no_object_class_only():
    torch.manual_seed(0)
    head = _tiny_head()
    feats = [torch.randn(1, 16, 32 // s, 32 // s) for s in (4, 8, 16, 32)]
    losses = head.loss(feats, torch.full((1, 32, 32), IGNORE), IGNORE)
    assert losses["loss_mask"].item() == 0 and losses["loss_dice"].item() == 0 and losses["loss_cls"] > 0
    sum(losses.values()).backward()
    assert head.cls_embed.weight.grad.abs().sum() > 0
