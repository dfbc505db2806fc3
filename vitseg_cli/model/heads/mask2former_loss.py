"""The official Mask2Former training loss (ViT-Adapter `Mask2FormerHead.loss` with mmdet's matcher and point sampling).

For every decoder stage (the prediction from the learned queries and one per layer: deep supervision):

1. Ground truth: each image's semantic map becomes one binary mask per class present in it (sorted class ids; the
   `ignore_index` pixels belong to no mask, so they count as background of every mask), as the official `ToMask`.
2. Matching, per image, without gradient: on `num_points` uniform random points shared by all queries and masks,
   cost = cls_weight * -softmax(class)[gt] + mask_weight * mean sigmoid-BCE + dice_weight * dice (eps 1), solved by
   `scipy.optimize.linear_sum_assignment`; unmatched queries are "no object".
3. Losses: class cross-entropy over all queries (the no-object slot weighted `no_object_weight`, normalised by the
   summed class weights); for the matched queries, sigmoid BCE and dice on `num_points` points per mask, of which
   `importance_sample_ratio` are the most uncertain (|logit| smallest) among `oversample_ratio` times as many random
   ones and the rest uniform; both divided by the number of matched masks (averaged over ranks under DDP).

Stage losses are summed: the result is {'loss_cls', 'loss_mask', 'loss_dice'}, each weighted, and their sum is the
official total loss.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .mask2former_config import Mask2FormerLossSpec

DICE_EPS = 1.0  # the released configs' DiceLoss / DiceCost eps


def semantic_to_instances(target: torch.Tensor, ignore_index: int,
                          num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(H, W) class ids -> (labels (n,) sorted present classes, masks (n, H, W) float 0/1); ignore pixels in none."""
    labels = torch.unique(target).long()  # long: uint8 labels would index as a boolean mask
    labels = labels[labels != ignore_index]
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)].tolist()
        raise ValueError(f"target holds class ids {bad} outside 0..{num_classes - 1} that are not the "
                         f"ignore_index {ignore_index}")
    return labels, (target[None] == labels[:, None, None]).float()


def point_sample(maps: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinear values of (N, C, H, W) maps at (N, P, 2) points (x, y) in [0, 1] -> (N, C, P); zero outside."""
    return F.grid_sample(maps, 2.0 * coords.unsqueeze(2) - 1.0, mode="bilinear", padding_mode="zeros",
                         align_corners=False).squeeze(3)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-row 'naive' dice loss of (M, P) logits against (M, P) targets: 1 - (2 p.t + 1) / (sum p + sum t + 1)."""
    p = logits.sigmoid()
    return 1 - (2 * (p * targets).sum(-1) + DICE_EPS) / (p.sum(-1) + targets.sum(-1) + DICE_EPS)


def match_cost(cls_logits: torch.Tensor, point_logits: torch.Tensor, gt_labels: torch.Tensor,
               gt_points: torch.Tensor, spec: Mask2FormerLossSpec) -> torch.Tensor:
    """(Q, K+1) class logits, (Q, P) mask logits, (n,) labels, (n, P) target values -> (Q, n) matching cost."""
    cls_cost = -cls_logits.softmax(-1)[:, gt_labels]
    pos = F.binary_cross_entropy_with_logits(point_logits, torch.ones_like(point_logits), reduction="none")
    neg = F.binary_cross_entropy_with_logits(point_logits, torch.zeros_like(point_logits), reduction="none")
    bce_cost = (pos @ gt_points.T + neg @ (1 - gt_points).T) / point_logits.shape[1]
    p = point_logits.sigmoid()
    dice_cost = 1 - (2 * p @ gt_points.T + DICE_EPS) / (p.sum(-1)[:, None] + gt_points.sum(-1)[None] + DICE_EPS)
    return spec.cls_weight * cls_cost + spec.mask_weight * bce_cost + spec.dice_weight * dice_cost


def hungarian_match(cost: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimum-cost one-to-one matching of a (Q, n) cost -> (query indices ascending, their gt indices)."""
    from scipy.optimize import linear_sum_assignment  # imported here: only training needs scipy (start-up time)

    rows, cols = linear_sum_assignment(cost.detach().cpu().numpy())
    return (torch.as_tensor(rows, dtype=torch.long, device=cost.device),
            torch.as_tensor(cols, dtype=torch.long, device=cost.device))


def _mean_over_ranks(count: int, device: torch.device) -> float:
    """The official `reduce_mean`: the average of a count over the distributed ranks (itself when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return float(count)
    t = torch.tensor(float(count), device=device)
    dist.all_reduce(t)
    return t.item() / dist.get_world_size()


class Mask2FormerLoss:
    """`loss(cls_preds, mask_preds, target, ignore_index)` with per-stage (B, Q, K+1) class logits, (B, Q, h, w) mask
    logits and a (B, H, W) semantic target covering the same image extent -> dict of weighted losses."""

    def __init__(self, spec: Mask2FormerLossSpec, num_classes: int):
        self.spec = spec
        self.num_classes = num_classes

    def uniform_points(self, num: int, device: torch.device) -> torch.Tensor:
        """(num, P, 2) uniform random points (one draw per row)."""
        return torch.rand(num, self.spec.num_points, 2, device=device)

    def importance_points(self, mask_logits: torch.Tensor) -> torch.Tensor:
        """(M, 1, h, w) logits -> (M, P, 2) points: the most uncertain of oversample_ratio * P random ones, then
        uniform ones for the rest."""
        s = self.spec
        m = mask_logits.shape[0]
        candidates = torch.rand(m, int(s.num_points * s.oversample_ratio), 2, device=mask_logits.device)
        uncertainty = -point_sample(mask_logits, candidates)[:, 0].abs()
        n_uncertain = int(s.importance_sample_ratio * s.num_points)
        idx = uncertainty.topk(n_uncertain, dim=1).indices
        chosen = candidates.gather(1, idx[..., None].expand(-1, -1, 2))
        uniform = torch.rand(m, s.num_points - n_uncertain, 2, device=mask_logits.device)
        return torch.cat((chosen, uniform), dim=1)

    def __call__(self, cls_preds: list[torch.Tensor], mask_preds: list[torch.Tensor], target: torch.Tensor,
                 ignore_index: int) -> dict[str, torch.Tensor]:
        gts = [semantic_to_instances(t, ignore_index, self.num_classes) for t in target]
        totals = {"loss_cls": 0.0, "loss_mask": 0.0, "loss_dice": 0.0}
        for cls_pred, mask_pred in zip(cls_preds, mask_preds):
            for name, value in zip(totals, self.stage_loss(cls_pred.float(), mask_pred.float(), gts)):
                totals[name] = totals[name] + value
        return totals

    def stage_loss(self, cls_pred: torch.Tensor, mask_pred: torch.Tensor,
                   gts: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, ...]:
        """(loss_cls, loss_mask, loss_dice) of one decoder stage, weighted."""
        s = self.spec
        batch, num_queries = cls_pred.shape[:2]
        labels = cls_pred.new_full((batch, num_queries), self.num_classes, dtype=torch.long)
        matched_preds, matched_targets = [], []
        for b, (gt_labels, gt_masks) in enumerate(gts):
            if not len(gt_labels):
                continue
            with torch.no_grad():
                coords = self.uniform_points(1, cls_pred.device)
                pred_points = point_sample(mask_pred[b][:, None], coords.expand(num_queries, -1, -1))[:, 0]
                gt_points = point_sample(gt_masks[:, None], coords.expand(len(gt_labels), -1, -1))[:, 0]
                queries, gt_idx = hungarian_match(match_cost(cls_pred[b], pred_points, gt_labels, gt_points, s))
            labels[b, queries] = gt_labels[gt_idx]
            matched_preds.append(mask_pred[b, queries])
            matched_targets.append(gt_masks[gt_idx])
        class_weight = cls_pred.new_ones(self.num_classes + 1)
        class_weight[-1] = s.no_object_weight
        loss_cls = s.cls_weight * F.cross_entropy(cls_pred.flatten(0, 1), labels.flatten(), weight=class_weight)
        num_matched = sum(len(p) for p in matched_preds)
        num_masks = max(_mean_over_ranks(num_matched, cls_pred.device), 1.0)
        if num_matched == 0:  # nothing to match anywhere: mask losses are zero but stay in the graph
            zero = mask_pred.sum() * 0
            return loss_cls, zero, zero
        preds, targets = torch.cat(matched_preds)[:, None], torch.cat(matched_targets)[:, None]
        with torch.no_grad():
            coords = self.importance_points(preds)
            target_points = point_sample(targets, coords)[:, 0]
        pred_points = point_sample(preds, coords)[:, 0]
        loss_mask = F.binary_cross_entropy_with_logits(pred_points, target_points, reduction="sum")
        loss_mask = s.mask_weight * loss_mask / (num_masks * pred_points.shape[1])
        loss_dice = s.dice_weight * dice_loss(pred_points, target_points).sum() / num_masks
        return loss_cls, loss_mask, loss_dice
