"""The segmentor: a backbone + a decode head (+ an auxiliary head), each built from its spec section by its family.

`build_model(spec)` is the one place a model is constructed; loading, train, eval and predict all go through it.
Segmenting an image from Python is `vitseg_cli.predict(model, image)` (the engine's; the model knows no engine).
Any input size works: the input is padded (bottom/right) to the backbone's size divisor, or to the one size a backbone
accepts (BEiT's relative position bias), and the outputs are cropped back.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import VitsegError
from ..spec import Spec, load_spec
from .registry import build_backbone, build_head


class Segmentor(nn.Module):
    """`forward(x)` on a normalized (B, 3, H, W) batch gives per-class scores (B, K, ceil(H/4), ceil(W/4)), or the
    four backbone features when the spec has no decode head; `loss(x, target)` gives the dict of weighted losses."""

    def __init__(self, spec: Spec):
        super().__init__()
        self.spec = spec
        m = spec.model
        self.backbone = build_backbone(m.backbone)
        dims = list(self.backbone.out_channels)
        self.decode_head: Optional[nn.Module] = (
            build_head(m.decode_head, dims, m.num_classes) if m.decode_head else None)
        self.auxiliary_head: Optional[nn.Module] = (
            build_head(m.auxiliary_head, dims, m.num_classes) if m.auxiliary_head else None)

    @property
    def half_dtype(self) -> Optional[str]:
        """The half precision the backbone asks for under `--half` (None: the device's default)."""
        return getattr(self.backbone, "half_dtype", None)

    @property
    def num_classes(self) -> int:
        return self.spec.model.num_classes

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        fixed = self.backbone.fixed_input_size
        # (while tracing for ONNX export this is checked on the example input only; the exported graph's runner
        # checks its inputs against the size recorded with it)
        if fixed is not None and (h > fixed[0] or w > fixed[1]):
            raise VitsegError(f"this {self.spec.model.backbone.type} backbone takes inputs of at most "
                              f"{fixed[1]}x{fixed[0]} (W x H; its img_size), got {w}x{h}: use slide mode with "
                              f"crop {fixed[0]}x{fixed[1]}")
        if torch.jit.is_tracing():
            # an ONNX export: h and w are traced tensors; pad by arithmetic on them so any input size stays symbolic
            d = self.backbone.size_divisor  # non-negative operands only: ONNX's integer Div and Mod truncate
            th, tw = fixed if fixed is not None else ((h + d - 1) // d * d, (w + d - 1) // d * d)
            return F.pad(x, (0, tw - w, 0, th - h))
        if fixed is not None:
            th, tw = fixed
        else:
            d = self.backbone.size_divisor
            th, tw = math.ceil(h / d) * d, math.ceil(w / d) * d
        return F.pad(x, (0, tw - w, 0, th - h)) if (th, tw) != (h, w) else x

    def padded_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Backbone features of x zero-padded (bottom/right) to a size the backbone takes."""
        return self.backbone(self._pad(x))

    def forward(self, x: torch.Tensor, scores_at_input_size: bool = False, score_dtype: Optional[torch.dtype] = None):
        """`scores_at_input_size`: a head that defines its scores at the input size (`scores_at`, e.g. the DINOv3
        Mask2Former) gives them there, their final product taken in `score_dtype`; other heads give 1/4 scores."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"Segmentor() takes a normalized (B, 3, H, W) tensor, got {type(x).__name__}: segment an "
                            "image with vitseg_cli.predict(model, image), or call a model from vitseg_cli.load_model")
        h, w = x.shape[-2:]
        feats = self.padded_features(x)
        if self.decode_head is None:
            return feats
        at_size = getattr(self.decode_head, "scores_at", None) if scores_at_input_size else None
        if at_size is not None:
            padded = (4 * feats[0].shape[-2], 4 * feats[0].shape[-1])
            return at_size(feats, padded, score_dtype)[..., :h, :w]
        scores = self.decode_head(feats)
        # ceil(h / 4), written so that it also holds for the traced sizes of an ONNX export
        return scores[..., :(h + 3) // 4, :(w + 3) // 4]

    def loss(self, x: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Weighted losses of a training batch: the decode head's, plus `loss_aux` (the auxiliary head's losses times
        its loss_weight). `target` (B, H, W) holds class ids at the input size, `data.ignore_index` where unlabelled.
        The train loop optimises their sum."""
        if self.decode_head is None:
            raise VitsegError("this model has no decode head to train")
        ignore = self.spec.data.ignore_index
        feats = self.padded_features(x)
        losses = dict(self.decode_head.loss(feats, target, ignore))
        if self.auxiliary_head is not None:
            aux = self.auxiliary_head.loss(feats, target, ignore)
            losses["loss_aux"] = self.spec.model.auxiliary_head.loss_weight * sum(aux.values())
        return losses

    # -- what the optimiser asks of the model (the official layer-decay recipe); engine/ names no layer itself
    @property
    def num_layers(self) -> int:
        """The largest layer-decay id (heads and adapter modules get it)."""
        return self.backbone.num_layers

    def layer_id(self, name: str) -> int:
        if name.startswith("backbone."):
            return self.backbone.layer_id(name[len("backbone."):])
        head, _, rest = name.partition(".")
        owner = getattr(self, head, None)
        own = getattr(owner, "layer_id", None)
        return own(rest) if own is not None else self.num_layers

    def no_weight_decay(self, name: str, param: torch.Tensor) -> bool:
        head, _, rest = name.partition(".")
        owner = getattr(self, head, None)
        rule = getattr(owner, "no_weight_decay", None)
        if rule is not None:
            return rule(rest, param)
        return param.ndim <= 1 or name.endswith(".bias")

    def class_layers(self) -> list[str]:
        """Parameter-name prefixes whose shape depends on the class count (re-initialised when fine-tuning)."""
        out = []
        for head in ("decode_head", "auxiliary_head"):
            module = getattr(self, head)
            if module is not None:
                out += [f"{head}.{p}" for p in getattr(module, "class_layers", ())]
        return out


def build_model(spec: "Spec | dict | str | None" = None) -> Segmentor:
    """A freshly initialised model for a spec (YAML path, dict, preset name or Spec)."""
    return Segmentor(load_spec(spec))
