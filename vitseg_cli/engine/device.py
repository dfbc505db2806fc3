"""Which device a process runs on: `--device` parsed and checked, and under torchrun each rank's own GPU."""

from __future__ import annotations

import torch

from ..errors import VitsegError
from ..torchrun import local_rank, rank_and_world


def resolve_device(name: str) -> torch.device:
    """'auto' (CUDA when available, else CPU), 'cpu', 'cuda', 'cuda:N' or a bare GPU index N (= 'cuda:N')."""
    name = (name or "auto").strip().lower()
    if name.isdigit():
        name = f"cuda:{name}"
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise VitsegError(f"device {name}: CUDA is not available on this machine (use --device cpu)")
        index = name.partition(":")[2]
        if index:
            if not index.isdigit():
                raise VitsegError(f"device {name}: expected cuda:N with N a GPU index")
            if int(index) >= torch.cuda.device_count():
                raise VitsegError(f"device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
        return torch.device(name)
    raise VitsegError(f"device {name!r}: expected auto, cpu, cuda, cuda:N or a GPU index N")


def rank_device(name: str) -> torch.device:
    """The device for this process: under torchrun, 'auto'/'cuda' mean this rank's own GPU (LOCAL_RANK)."""
    device = resolve_device(name)
    if rank_and_world()[1] > 1 and device.type == "cuda" and device.index is None:
        index = local_rank()
        if index >= torch.cuda.device_count():
            raise VitsegError(f"local rank {index} has no GPU ({torch.cuda.device_count()} visible)")
        device = torch.device("cuda", index)
    return device
