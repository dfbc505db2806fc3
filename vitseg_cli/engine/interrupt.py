"""SIGTERM handled like Ctrl-C: `timeout`, Slurm, Kubernetes and torchrun stop a job with SIGTERM, and a run stopped
that way must end as cleanly as an interrupted one (files being written land, records match the files on disk, the
folder's lock is released) instead of dying between a file and its record.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt in the main thread (elsewhere: nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
