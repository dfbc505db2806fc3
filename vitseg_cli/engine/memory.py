"""How much memory a model's weights need, and whether a device has it, told before anything is loaded.

The weights take what their files hold (a checkpoint stores its tensors as they are, in their own dtype); a model
built on the meta device and filled by assignment needs no more. Activations come on top and depend on the input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

GB = 1e9


def weights_bytes(paths: Sequence[Path]) -> int:
    return sum(Path(p).stat().st_size for p in paths if p is not None)


def available_bytes(device: str = "cpu") -> Optional[int]:
    """Free memory of `device` ('cpu': the kernel's MemAvailable; 'cuda[:N]': the GPU's free memory), or None when
    it cannot be told."""
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            return None
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def fit_line(need: int, free: Optional[int], device: str) -> tuple[str, bool]:
    """(the line to print, whether it fits)."""
    if free is None:
        return f"memory: the weights need {need / GB:.2f} GB ({device}: free memory unknown)", True
    fits = need <= free
    verdict = "fits" if fits else "does not fit"
    return (f"memory: the weights need {need / GB:.2f} GB; {device} has {free / GB:.2f} GB free: {verdict}"
            + ("" if fits else " (try --half, a machine with more memory, or another device)"), fits)
