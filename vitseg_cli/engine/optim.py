"""The official ViT-Adapter optimiser recipe: AdamW with layer-wise lr decay, and mmcv's warmup + poly lr schedule.

Layer ids and no-weight-decay names are the model's (each backbone family numbers its layers as the official
`LayerDecayOptimizerConstructor` does: embeddings 0, block i -> i+1, the rest -> depth+1); lr scale =
rate ** (top - layer).

`WarmupPolyLR` reproduces mmcv's `PolyLrUpdaterHook(power, min_lr, by_epoch=False)` with linear warmup: for iteration
i (0-based, set before the iteration runs) regular = (base - min_lr) * (1 - i / max_iters) ** power + min_lr, and while
i < warmup_iters: lr = regular * (1 - (1 - i / warmup_iters) * (1 - warmup_ratio)).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..spec import TrainSpec

def param_groups(model: nn.Module, lr: float, weight_decay: float, layer_decay_rate: float) -> list[dict[str, Any]]:
    """AdamW parameter groups, one per (layer, decay/no-decay), each with `lr_scale` and `name`. The model says which
    layer a parameter belongs to (`layer_id`, top layer `num_layers`) and which go without weight decay."""
    top = model.num_layers
    groups: dict[str, dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        layer = model.layer_id(name)
        nwd = model.no_weight_decay(name, param)
        key = f"layer_{layer}_{'no_decay' if nwd else 'decay'}"
        if key not in groups:
            scale = layer_decay_rate ** (top - layer)
            groups[key] = {"name": key, "params": [], "param_names": [], "lr_scale": scale, "lr": lr * scale,
                           "initial_lr": lr * scale, "weight_decay": 0.0 if nwd else weight_decay}
        groups[key]["params"].append(param)
        groups[key]["param_names"].append(name)
    return sorted(groups.values(), key=lambda g: g["name"])


def build_optimizer(model: nn.Module, train: TrainSpec) -> torch.optim.AdamW:
    """AdamW over layer-decay groups (the official recipe's numbers come from the spec's `train` section)."""
    groups = param_groups(model, train.lr, train.weight_decay, train.layer_decay_rate)
    return torch.optim.AdamW(groups, lr=train.lr, betas=tuple(train.betas), weight_decay=train.weight_decay)


class WarmupPolyLR:
    """Linear warmup then poly decay, mmcv semantics, per parameter group (base lr = the group's `initial_lr`).

    Like `LambdaLR`: construction sets the lr of iteration 0; `step()` after each optimizer step moves to the next
    iteration. `state_dict()` / `load_state_dict()` hold everything needed to continue the schedule.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, max_iters: int, warmup_iters: int = 0,
                 warmup_ratio: float = 1e-6, power: float = 1.0, min_lr: float = 0.0):
        self.optimizer = optimizer
        self.max_iters = max_iters
        self.warmup_iters = warmup_iters
        self.warmup_ratio = warmup_ratio
        self.power = power
        self.min_lr = min_lr
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.last_iter = 0
        self._apply()

    def lr_at(self, it: int, base_lr: float) -> float:
        progress = min(max(it, 0), self.max_iters)
        coeff = (1.0 - progress / self.max_iters) ** self.power
        lr = (base_lr - self.min_lr) * coeff + self.min_lr
        if it < self.warmup_iters:
            k = (1.0 - it / self.warmup_iters) * (1.0 - self.warmup_ratio)
            lr = lr * (1.0 - k)
        return lr

    def _apply(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.last_iter, group["initial_lr"])

    def step(self) -> None:
        self.last_iter += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    @property
    def base_lr(self) -> float:
        """The lr of the top layer (scale 1): the number the logs show."""
        groups = self.optimizer.param_groups
        top = max(groups, key=lambda g: g.get("lr_scale", 1.0))
        return top["lr"] / top.get("lr_scale", 1.0)

    def state_dict(self) -> dict[str, Any]:
        return {"last_iter": self.last_iter, "max_iters": self.max_iters, "warmup_iters": self.warmup_iters,
                "warmup_ratio": self.warmup_ratio, "power": self.power, "min_lr": self.min_lr}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("last_iter", "max_iters", "warmup_iters", "warmup_ratio", "power", "min_lr"):
            setattr(self, key, state[key])
        self._apply()


def build_scheduler(optimizer: torch.optim.Optimizer, train: TrainSpec) -> WarmupPolyLR:
    return WarmupPolyLR(optimizer, max_iters=train.iters, warmup_iters=train.warmup_iters,
                        warmup_ratio=train.warmup_ratio, power=train.power, min_lr=train.min_lr)

