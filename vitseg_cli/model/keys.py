"""State-dict key helpers shared by the families (backbones and heads alike) when they read official checkpoints."""

from __future__ import annotations

import re


def count_indices(state: dict, pattern: str) -> int:
    """How many distinct values the first group of `pattern` takes over the keys of `state`."""
    rx = re.compile(pattern)
    return len({m.group(1) for k in state if (m := rx.match(k))})


def strip_prefix(state: dict, prefix: str) -> dict:
    """The entries of `state` whose key starts with `prefix`, with the prefix removed."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
