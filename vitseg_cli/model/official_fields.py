"""What every family's translation of an official mmseg config shares: the refusal error, reading required fields,
and the context a translator gets besides its own section (torch-free).

A translator maps the official arguments onto its spec section, which keeps the official argument names. What the
spec cannot hold exactly is refused (`ConfigRefused`, one line naming the field), so that a spec read from a config
never silently computes something else; harmless leftovers become notes.
"""

from __future__ import annotations

import reprlib
from dataclasses import dataclass, field
from typing import Any, Optional

from ..errors import VitsegError

show = reprlib.repr  # config values in messages, cut short


class ConfigRefused(VitsegError):
    """The config text is not one vitseg reads safely or can represent exactly; nothing in it was run."""


@dataclass
class OfficialContext:
    """Where a section sits in the official config and what was translated before it."""

    where: str  # e.g. "model.decode_head"
    model: dict[str, Any]  # the whole official `model` dict (train_cfg, test_cfg, ...)
    notes: list[str] = field(default_factory=list)
    backbone: Optional[dict[str, Any]] = None  # the translated backbone section (for heads)
    num_classes: Optional[int] = None  # the decode head's class count (for auxiliary heads)


def need(section: Any, key: str, where: str) -> Any:
    if not isinstance(section, dict) or key not in section:
        raise ConfigRefused(f"config: {where}.{key} is missing")
    return section[key]


def as_dict(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigRefused(f"config: {where} must be a dict(...), got {type(value).__name__}")
    return value


def first_cfg(value: Any, where: str) -> dict:
    """mmcv accepts one layer config or a list of equal ones (attn_cfgs, ffn_cfgs)."""
    if isinstance(value, (list, tuple)):
        if not value or any(v != value[0] for v in value):
            raise ConfigRefused(f"config: {where} lists different layer configs; vitseg builds equal layers only")
        value = value[0]
    return as_dict(value, where)


def pair(value: Any) -> list[int]:
    return [value, value] if isinstance(value, int) else list(value)


def check_in_channels(head: dict, backbone: dict, where: str) -> None:
    """A decode head reads the four backbone levels as they are (mmseg's in_channels/in_index/align_corners)."""
    expected = [backbone["embed_dim"]] * 4
    got = head.get("in_channels", expected)
    if list(got) != expected:
        raise ConfigRefused(f"config: {where}.in_channels {list(got)} do not match the backbone's {expected}")
    if list(head.get("in_index", [0, 1, 2, 3])) != [0, 1, 2, 3]:
        raise ConfigRefused(f"config: {where}.in_index must be [0, 1, 2, 3]")
    if head.get("align_corners", False):
        raise ConfigRefused(f"config: {where}.align_corners true is not supported")
