"""torchrun's environment, read in one place: this process's rank and local rank and the job's size (0, 0 and 1 in a
plain process). Torch-free, so that the command layer can ask before the engine is imported."""

from __future__ import annotations

import os


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def rank_and_world() -> tuple[int, int]:
    """(RANK, WORLD_SIZE) of this process; (0, 1) outside torchrun or when they are not numbers."""
    return _env_int("RANK", 0), _env_int("WORLD_SIZE", 1)


def local_rank() -> int:
    """LOCAL_RANK: the index of this process on its machine (its GPU under torchrun)."""
    return _env_int("LOCAL_RANK", 0)


def is_main_process() -> bool:
    return rank_and_world()[0] == 0
