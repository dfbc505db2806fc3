"""torchrun's environment, read in one place: this process's rank and local rank and the job's size (0, 0 and 1 in a
plain process). Torch-free, so that the command layer can ask before the engine is imported."""

from __future__ import annotations

import os


def _env_int(name: str, default: int, env=None) -> int:
    try:
        return int((os.environ if env is None else env).get(name, default))
    except ValueError:
        return default


def rank_and_world() -> tuple[int, int]:
    """(RANK, WORLD_SIZE) of this process; (0, 1) outside torchrun or when they are not numbers."""
    return _env_int("RANK", 0), _env_int("WORLD_SIZE", 1)


def local_rank() -> int:
    """LOCAL_RANK: the index of this process on its machine (its GPU under torchrun)."""
    return _env_int("LOCAL_RANK", 0)


def local_world_size(env=None) -> int:
    """LOCAL_WORLD_SIZE: torchrun's processes on this machine (1 in a plain process); `env` defaults to os.environ."""
    return max(1, _env_int("LOCAL_WORLD_SIZE", 1, env))


def is_main_process() -> bool:
    return rank_and_world()[0] == 0
