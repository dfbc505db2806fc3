"""Model families behind the spec's `type` fields: type name -> builder, for backbones and decode heads.

A family module registers itself with `@register_backbone(name)` / `@register_head(name)` and keeps, beside its
modules, what it knows of the official checkpoints of that family (timm's `checkpoint_filter_fn` pattern):
`detect(state)` says whether an official state dict is of this family, `infer(state, meta)` gives the spec section
that fits it and the fields it had to assume.

Contracts (DESIGN §1):
- a backbone takes a normalized (B, 3, H, W) batch and returns [f1, f2, f3, f4] at `out_strides` (4, 8, 16, 32) with
  `out_channels`; it declares `size_divisor` (inputs are padded to a multiple of it) and `fixed_input_size` ((H, W)
  it exclusively accepts, or None); it owns `layer_id(name)` (layer-decay id of one of its parameter names, as the
  official LayerDecayOptimizerConstructor numbers layers), `num_layers` (the id of the top layer) and
  `no_weight_decay(name, param)`.
- a decode head takes the four features and returns per-class scores at 1/4, which the inference engine treats as
  the official pipeline of that head does; it owns `loss(feats, target, ignore_index) -> dict` of weighted losses.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Optional

# The modules that register families; imported on first use so that importing the spec needs no torch.
_FAMILY_MODULES = ("vit", "beit", "uniperceiver", "dinov2", "heads.upernet", "heads.fcn", "heads.mask2former")


@dataclass(frozen=True)
class Family:
    name: str
    build: Callable[..., Any]
    detect: Optional[Callable[[dict], bool]] = None
    infer: Optional[Callable[..., tuple[dict, list[str]]]] = None
    pretrained: Optional[Callable[..., list[str]]] = None  # backbones: initialise from a classification checkpoint


BACKBONES: dict[str, Family] = {}
HEADS: dict[str, Family] = {}
_loaded = False


def _register(table: dict[str, Family], name: str, detect, infer, pretrained=None):
    def decorator(build):
        table[name] = Family(name, build, detect, infer, pretrained)
        return build
    return decorator


def register_backbone(name: str, detect=None, infer=None, pretrained=None):
    """`build(spec_section) -> nn.Module`; `detect(state) -> bool`, `infer(state, meta) -> (section, assumed)`,
    `pretrained(model, state, path) -> notes` (initialise the block stack from a pretraining checkpoint)."""
    return _register(BACKBONES, name, detect, infer, pretrained)


def register_head(name: str, detect=None, infer=None):
    """`build(spec_section, in_channels, num_classes) -> nn.Module`; detect/infer as for backbones, on the
    `decode_head.` (or `auxiliary_head.`) part of an official state dict."""
    return _register(HEADS, name, detect, infer)


def load_families() -> None:
    global _loaded
    if not _loaded:
        for module in _FAMILY_MODULES:
            importlib.import_module(f"{__package__}.{module}")
        _loaded = True


def backbone_family(name: str) -> Family:
    load_families()
    return BACKBONES[name]


def head_family(name: str) -> Family:
    load_families()
    return HEADS[name]


def build_backbone(section) -> Any:
    return backbone_family(section.type).build(section)


def build_head(section, in_channels: list[int], num_classes: int) -> Any:
    return head_family(section.type).build(section, in_channels, num_classes)


def detect_backbone(state: dict) -> Optional[Family]:
    """The backbone family of an official state dict (keys `backbone.*`), or None."""
    load_families()
    return next((f for f in BACKBONES.values() if f.detect and f.detect(state)), None)


def detect_head(state: dict, prefix: str = "decode_head.") -> Optional[Family]:
    load_families()
    part = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not part:
        return None
    return next((f for f in HEADS.values() if f.detect and f.detect(part)), None)
