"""The lock of a predict output folder: `OUT/.vitseg-predict.lock` names the process (pid, host) writing into it, so
that a second `vitseg predict` into the same `--out` is one error naming the holder instead of mixed outputs and
records that contradict each other. A lock whose process is gone (same host) is stale and taken over.

Shards of a Slurm array write into one folder side by side: each holds its own `.vitseg-predict-<I>-of-<N>.lock`,
which refuses a second task of the same shard and any unsharded run (and an unsharded run refuses every shard).
Under torchrun, rank 0 holds the lock for the job. The file handling (exclusive creation, never following a
symlink, stale detection) is the training run folder's lock, `engine/train_state.RunLock`.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any, Optional

from ..errors import VitsegError
from .train_state import RunLock

PREFIX = ".vitseg-predict"
GRACE_S = 2.0  # a holder killed just now may take a moment to exit: wait that long before refusing


def _zombie(pid: Any) -> bool:
    """Whether a process has exited but is not yet reaped (its pid still answers signals)."""
    try:
        stat = Path(f"/proc/{int(pid)}/stat").read_text()
    except (OSError, ValueError):
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def _holder_of(out: Path, path: Path) -> Optional[dict[str, Any]]:
    """The live holder of the lock file `path`, or None (no lock, a stale one, or an exited process's)."""
    probe = RunLock(out)
    probe.path = path
    holder = probe._holder()
    if holder is not None and holder["host"] == socket.gethostname() and _zombie(holder["pid"]):
        return None
    return holder


class OutputLock(RunLock):
    """`acquire()` (returns notes: a stale lock taken over), `release(failed)`; `part`: the shard's tag or None."""

    def __init__(self, out: Path, part: Optional[str] = None, option: str = "--out"):
        super().__init__(out)
        self.part, self.option = part, option
        self.path = self.out / (f"{PREFIX}-{part}.lock" if part else f"{PREFIX}.lock")

    def _conflicting(self) -> list[Path]:
        """This lock, then the other locks it cannot live beside (an unsharded run's with any shard's)."""
        others = sorted(self.out.glob(f"{PREFIX}*.lock")) if self.out.is_dir() else []
        if self.part is not None:
            others = [p for p in others if p.name == f"{PREFIX}.lock"]
        return [self.path] + [p for p in others if p != self.path]

    def _holder(self) -> Optional[dict[str, Any]]:
        return _holder_of(self.out, self.path)

    def check_free(self) -> None:
        for path in self._conflicting():
            holder = _holder_of(self.out, path)
            deadline = time.monotonic() + GRACE_S
            while holder is not None and time.monotonic() < deadline:
                time.sleep(0.1)
                holder = _holder_of(self.out, path)
            if holder is not None:
                raise VitsegError(f"{self.option} {self.out}: another vitseg predict (pid {holder['pid']} on "
                                  f"{holder['host']}) is writing into it ({path.name}); wait for it to end, or "
                                  "delete the lock if that process is gone")

    def acquire(self) -> list[str]:
        try:
            notes = super().acquire()
        except VitsegError:
            self.check_free()  # names the holder
            raise
        try:
            self.check_free_of_others()
        except VitsegError:
            self.release(failed=True)
            raise
        return [n.replace("note: ", "", 1) for n in notes]

    def check_free_of_others(self) -> None:
        """After taking this lock: a conflicting run that took its own lock at the same moment refuses this one."""
        for path in self._conflicting()[1:]:
            holder = _holder_of(self.out, path)
            if holder is not None:
                raise VitsegError(f"{self.option} {self.out}: another vitseg predict (pid {holder['pid']} on "
                                  f"{holder['host']}) is writing into it ({path.name}); wait for it to end")
