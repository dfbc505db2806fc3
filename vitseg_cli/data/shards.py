"""One share of a run's inputs, for a Slurm array or any set of independent tasks: `--shard I/N`.

The inputs are sorted by their output name, and shard I takes those whose index in that order is I modulo N. Every
task sorts the same list the same way, so the shares are disjoint and together complete, whatever order the sources
were listed in. Under torchrun inside a task, the ranks split the shard's share among themselves.

Without `--shard`, a Slurm array task takes its own share: I = SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN and
N = SLURM_ARRAY_TASK_COUNT (or MAX - MIN + 1). Arrays with a step (`--array=0-9:2`) must pass `--shard`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence, TypeVar

from ..errors import VitsegError

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    @property
    def tag(self) -> str:
        return f"{self.index}-of-{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str, option: str = "--shard") -> Shard:
    """`"2/8"` -> Shard(2, 8), checked: 0 <= I < N."""
    parts = text.strip().split("/")
    try:
        index, count = (int(p) for p in parts)
    except ValueError:
        raise VitsegError(f"{option} {text}: expected I/N, e.g. 0/8 (shard I of N, counting from 0)") from None
    if count < 1 or not 0 <= index < count:
        raise VitsegError(f"{option} {text}: need N >= 1 and 0 <= I < N")
    return Shard(index, count)


def _env_int(env: Mapping[str, str], name: str) -> Optional[int]:
    value = env.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise VitsegError(f"{name}={value!r}: not an integer") from None


def shard_from_env(env: Optional[Mapping[str, str]] = None) -> Optional[Shard]:
    """This Slurm array task's share, or None outside an array."""
    env = os.environ if env is None else env
    task = _env_int(env, "SLURM_ARRAY_TASK_ID")
    if task is None:
        return None
    low, high = _env_int(env, "SLURM_ARRAY_TASK_MIN"), _env_int(env, "SLURM_ARRAY_TASK_MAX")
    count = _env_int(env, "SLURM_ARRAY_TASK_COUNT")
    low = 0 if low is None else low
    if count is None and high is not None:
        count = high - low + 1
    if count is None:
        raise VitsegError("SLURM_ARRAY_TASK_ID is set but neither SLURM_ARRAY_TASK_COUNT nor SLURM_ARRAY_TASK_MAX: "
                          "give --shard I/N")
    return parse_shard(f"{task - low}/{count}", option="the Slurm array task (SLURM_ARRAY_TASK_ID - MIN / COUNT)")


def resolve_shard(text: Optional[str], env: Optional[Mapping[str, str]] = None) -> Optional[Shard]:
    """`--shard` when given, else the Slurm array's, else None (the whole list)."""
    return parse_shard(text) if text else shard_from_env(env)


def shard_items(items: Sequence[T], shard: Optional[Shard], key=lambda item: item.rel) -> list[T]:
    """Shard I of N of `items`: sorted by `key`, every N-th from the I-th."""
    if shard is None:
        return list(items)
    return sorted(items, key=key)[shard.index::shard.count]
