"""How many CPU threads a process computes with, so that torch's and OpenCV's thread pools fit the CPUs it may use.

The rule (`plan_threads`), first match wins:

1. `--threads N` (or `load_model(..., threads=N)`);
2. the `VITSEG_THREADS` environment variable;
3. `OMP_NUM_THREADS`, when set (torch has already read it), except the `1` that torchrun sets for each of several
   local ranks when the user set nothing: that one is torchrun's default, not a choice;
4. the default: `max(1, CPUs // local ranks - loader workers)`, where CPUs are those this process may use (its CPU
   affinity, capped by a cgroup v2 `cpu.max` or v1 `cpu.cfs_quota_us` quota, rounded down, at least 1), local ranks
   are torchrun's processes on this machine (`LOCAL_WORLD_SIZE`) and every DataLoader worker takes a core.

`apply_threads` sets torch's intra-op threads, its inter-op threads where torch still allows it (only before its
first parallel work), and OpenCV's threads to the result, and warns once per process when local ranks x threads
exceed the CPUs: threads that wait on each other at every step make a run several times slower.

The rule cannot see other processes' load. What makes torch's threads slow on CPUs that other work keeps busy is
OpenMP's spinning: a thread waiting at a barrier spins for its time slice while the thread it waits for is off the
CPU. The package therefore sets OMP_WAIT_POLICY=PASSIVE when it is imported (before torch, which reads it once):
waiting threads sleep. On 2 shared cores (bench/predict.py --threads) that took 2 threads from 0.06 to ~2 images/s.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional

from ..errors import VitsegError
from ..torchrun import local_world_size

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")
_warned = False
_applied: Optional[int] = None  # what apply_threads last set (then torch's count is still ours to change)


# ------------------------------------------------------------------------------------------- the CPUs we may use


def _quota(path: Path) -> Optional[float]:
    """CPUs allowed by one cgroup folder: v2 `cpu.max` ("max 100000" or "QUOTA PERIOD"), else v1's cfs files."""
    try:
        text = (path / "cpu.max").read_text().split()
        if len(text) == 2 and text[0] != "max":
            return int(text[0]) / int(text[1])
        return None
    except (OSError, ValueError):
        pass
    try:
        quota = int((path / "cpu.cfs_quota_us").read_text())
        period = int((path / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def _cgroup_dirs(cgroup_root: Path, proc_cgroup: Path) -> list[Path]:
    """The folders whose quota bounds this process: its own cgroup's and every parent's up to the root, for the v2
    hierarchy and the v1 cpu controller (a container sees its own cgroup as the root)."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    dirs = []
    for line in lines:
        _, controllers, rel = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":
            base = cgroup_root  # v2: 0::/path
        elif "cpu" in controllers.split(","):
            base = next((cgroup_root / name for name in (controllers, "cpu,cpuacct", "cpu")
                         if (cgroup_root / name).is_dir()), None)
            if base is None:
                continue
        else:
            continue
        folder = base / rel.strip().lstrip("/")
        while True:
            dirs.append(folder)
            if folder == base:
                break
            folder = folder.parent
    return dirs or [cgroup_root, cgroup_root / "cpu"]


def allowed_cpus(affinity: Optional[set] = None, cgroup_root: Path = CGROUP_ROOT,
                 proc_cgroup: Path = PROC_CGROUP) -> int:
    """The CPUs this process may use: its affinity (`os.sched_getaffinity`), capped by the smallest cgroup CPU quota
    over its cgroup and their parents, rounded down (1.5 CPUs of quota -> 1), at least 1."""
    if affinity is None:
        affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    cpus = max(1, len(affinity))
    quotas = [q for q in (_quota(d) for d in _cgroup_dirs(cgroup_root, proc_cgroup)) if q is not None]
    if quotas:
        cpus = min(cpus, max(1, math.floor(min(quotas))))
    return cpus


# --------------------------------------------------------------------------------------------------- the rule


@dataclass(frozen=True)
class ThreadPlan:
    threads: int
    source: str  # --threads, VITSEG_THREADS, OMP_NUM_THREADS or default
    cpus: int  # the CPUs this process may use
    ranks: int  # torchrun's processes on this machine
    workers: int  # loader processes of this process

    def warning(self) -> Optional[str]:
        """Why these threads oversubscribe the CPUs, or None when they fit."""
        advice = f"use --threads (or VITSEG_THREADS) {max(1, self.cpus // self.ranks)} or fewer"
        if self.ranks * self.threads > self.cpus:
            ranks = f"{self.ranks} local ranks x " if self.ranks > 1 else ""
            return (f"{ranks}{self.threads} CPU threads ({self.source}) exceed the {self.cpus} CPUs this process may "
                    f"use (affinity and cgroup quota): the threads wait on each other; {advice}")
        return None


def _env_threads(env: Mapping[str, str], name: str) -> Optional[int]:
    text = env.get(name, "").strip()
    if name == "OMP_NUM_THREADS":  # OpenMP's own syntax allows a list per nesting level ("4,2"): the first counts
        text = text.split(",")[0].strip()
        return int(text) if text.isdigit() and int(text) >= 1 else None
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise VitsegError(f"{name}={text!r}: expected a whole number of threads, at least 1")
    return int(text)


def plan_threads(threads: Optional[int] = None, *, workers: int = 0, env: Optional[Mapping[str, str]] = None,
                 cpus: Optional[int] = None) -> ThreadPlan:
    """The threads this process should compute with, and why (the module's docstring gives the rule); `env` and
    `cpus` default to this process's (`os.environ`, `allowed_cpus()`)."""
    env = os.environ if env is None else env
    cpus = allowed_cpus() if cpus is None else cpus
    ranks = local_world_size(env)
    plan = dict(cpus=cpus, ranks=ranks, workers=max(0, workers), )
    if threads is not None:
        if threads < 1:
            raise VitsegError(f"--threads {threads}: expected at least 1")
        return ThreadPlan(threads, "--threads", **plan)
    for name in ("VITSEG_THREADS", "OMP_NUM_THREADS"):
        value = _env_threads(env, name)
        if value is not None and not (name == "OMP_NUM_THREADS" and value == 1 and ranks > 1):
            return ThreadPlan(value, name, **plan)
    return ThreadPlan(max(1, cpus // ranks - max(0, workers)), "default", **plan)


# ------------------------------------------------------------------------------------------------- applying it


def _warn(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def apply_threads(threads: Optional[int] = None, *, workers: int = 0,
                  warn: Optional[Callable[[str], None]] = None, plan: Optional[ThreadPlan] = None) -> ThreadPlan:
    """Set torch's and OpenCV's threads by the rule; warn once per process (through `warn`, default a
    RuntimeWarning) when they oversubscribe the CPUs. Returns the plan applied."""
    global _warned, _applied
    import cv2
    import torch

    plan = plan or plan_threads(threads, workers=workers)
    torch.set_num_threads(plan.threads)
    try:
        torch.set_num_interop_threads(plan.threads)
    except RuntimeError:  # torch allows it only before its first inter-op parallel work
        pass
    cv2.setNumThreads(plan.threads)
    _applied = plan.threads
    message = plan.warning()
    if message and not _warned:
        _warned = True
        (warn or _warn)(message)
    return plan


def torch_threads_untouched() -> bool:
    """Whether torch still computes with the thread count it chose itself (or the one `apply_threads` set): then the
    Python API may apply the rule; a count the user set with `torch.set_num_threads` is left alone."""
    import torch

    current = torch.get_num_threads()
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else ()
    return current == _applied or current in {len(affinity), os.cpu_count()}
