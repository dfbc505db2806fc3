"""Decode heads: each takes the four backbone features and gives per-class scores (see model/registry.py)."""

from .fcn import FCNHead
from .upernet import UPerHead

__all__ = ["FCNHead", "UPerHead"]
