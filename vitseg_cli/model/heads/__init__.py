"""Decode heads: each takes the four backbone features and gives per-class scores (see model/registry.py)."""

from .fcn import FCNHead
from .mask2former import Mask2FormerHead
from .upernet import UPerHead

__all__ = ["FCNHead", "Mask2FormerHead", "UPerHead"]
