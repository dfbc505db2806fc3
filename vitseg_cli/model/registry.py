"""The model families behind the spec's `type` fields: one `Family` entry per backbone and per head (torch-free).

Each family's torch-free `*_config.py` defines `FAMILY = Family(...)` (see `model/family.py`) and one line below
registers it. Another package adds its own family the same way: `register_backbone(Family(...))` or
`register_head(Family(...))`, before the spec that names it is read. The contracts the built modules meet are in
`model/contracts.py`.
"""

from __future__ import annotations

from typing import Any, Optional

from ..spec_base import BackboneConfig, HeadConfig
from .beit_config import FAMILY as BEIT_ADAPTER
from .family import Family
from .heads.fcn_config import FAMILY as FCN
from .heads.mask2former_config import FAMILY as MASK2FORMER
from .heads.upernet_config import FAMILY as UPERNET
from .uniperceiver_config import FAMILY as UNIPERCEIVER_ADAPTER
from .vit_config import FAMILY as VIT_ADAPTER

BACKBONES: dict[str, Family] = {}
HEADS: dict[str, Family] = {}

# The family a section without `type` is of.
DEFAULT_TYPES = {"backbone": "vit_adapter", "decode_head": "upernet", "auxiliary_head": "fcn"}


def _register(table: dict[str, Family], family: Family, what: str, base: type) -> Family:
    if not isinstance(family, Family):
        raise TypeError(f"register_{what} takes a Family, got {type(family).__name__}")
    if not issubclass(family.config_cls, base):
        raise TypeError(f"family {family.name!r}: a {what}'s config class must subclass {base.__name__} "
                        f"(vitseg_cli.spec_base)")
    other = BACKBONES.get(family.name) or HEADS.get(family.name)
    if other is not None and other is not family:
        raise ValueError(f"a family named {family.name!r} is already registered")
    table[family.name] = family
    return family


def register_backbone(family: Family) -> Family:
    """Make a backbone family available to specs (`model.backbone.type: NAME`) and to official checkpoints."""
    return _register(BACKBONES, family, "backbone", BackboneConfig)


def register_head(family: Family) -> Family:
    """Make a head family available to specs (`model.decode_head.type` / `model.auxiliary_head.type`, as its
    `roles` allow) and to official checkpoints."""
    return _register(HEADS, family, "head", HeadConfig)


def unregister(name: str) -> None:
    """Remove a family added by `register_*` (tests)."""
    BACKBONES.pop(name, None)
    HEADS.pop(name, None)


register_backbone(VIT_ADAPTER)
register_backbone(BEIT_ADAPTER)
register_backbone(UNIPERCEIVER_ADAPTER)
register_head(UPERNET)
register_head(FCN)
register_head(MASK2FORMER)


def section_types(slot: str) -> dict[str, type]:
    """type name -> section class of the families that may fill `slot` (backbone, decode_head, auxiliary_head)."""
    if slot == "backbone":
        return {name: f.config_cls for name, f in BACKBONES.items()}
    return {name: f.config_cls for name, f in HEADS.items() if slot in f.roles}


def backbone_family(name: str) -> Family:
    return BACKBONES[name]


def head_family(name: str) -> Family:
    return HEADS[name]


def build_backbone(section) -> Any:
    return backbone_family(section.type).build(section)


def build_head(section, in_channels: list[int], num_classes: int) -> Any:
    return head_family(section.type).build(section, in_channels, num_classes)


def detect_backbone(state: dict) -> Optional[Family]:
    """The backbone family of an official state dict (keys `backbone.*`), or None."""
    return next((f for f in BACKBONES.values() if f.detect and f.detect(state)), None)


def detect_head(state: dict, prefix: str = "decode_head.") -> Optional[Family]:
    """The head family of the `prefix` part of an official state dict (decode_head. or auxiliary_head.), or None."""
    part = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not part:
        return None
    role = prefix.rstrip(".")
    return next((f for f in HEADS.values() if role in f.roles and f.detect and f.detect(part)), None)


def official_family(official_type: Any, slot: str) -> Optional[Family]:
    """The family that translates an official config section of mmseg `type` official_type in `slot`, or None."""
    table = BACKBONES if slot == "backbone" else {n: f for n, f in HEADS.items() if slot in f.roles}
    return next((f for f in table.values() if official_type in f.official_types and f.from_official_config), None)


def official_types(slot: str) -> list[str]:
    table = BACKBONES if slot == "backbone" else {n: f for n, f in HEADS.items() if slot in f.roles}
    return [t for f in table.values() if f.from_official_config for t in f.official_types]
