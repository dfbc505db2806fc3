"""The lock of a predict output folder: `OUT/.vitseg-predict.lock` names the process (pid, host) writing into it, so
that a second `vitseg predict` into the same `--out` is one error naming the holder instead of mixed outputs and
records that contradict each other. A lock whose process is gone (same host) is stale and taken over.

Shards of a Slurm array write into one folder side by side: each holds its own `.vitseg-predict-<I>-of-<N>.lock`,
which refuses a second task of the same shard and any unsharded run (and an unsharded run refuses every shard).
Under torchrun, rank 0 holds the lock for the job. The file handling (exclusive creation, never following a
symlink, stale detection) is the training run folder's lock, `engine/train_state.RunLock`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..errors import VitsegError
from .train_state import RunLock

PREFIX = ".vitseg-predict"


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

    def check_free(self) -> None:
        for path in self._conflicting():
            probe = RunLock(self.out)
            probe.path = path
            holder = probe._holder()
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
            probe = RunLock(self.out)
            probe.path = path
            holder = probe._holder()
            if holder is not None:
                raise VitsegError(f"{self.option} {self.out}: another vitseg predict (pid {holder['pid']} on "
                                  f"{holder['host']}) is writing into it ({path.name}); wait for it to end")
