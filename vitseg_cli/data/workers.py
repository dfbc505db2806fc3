"""DataLoader worker setup shared by inference, training and the synthetic generator.

Ctrl-C in a terminal (and `timeout`, `kill -- -PGID`) signals the whole process group, workers included. A worker
that dies of it makes the main process fail with "DataLoader worker killed" before it can save its state or finish
its writes, so workers ignore SIGINT/SIGTERM and leave the interrupt to the main process, which stops them.
"""

from __future__ import annotations

import signal
import sys


def worker_init(_: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # one thread per worker; not cv2.setNumThreads: after fork it waits forever on the parent's pool.
    # Only where torch is loaded already: `vitseg data synth` uses these workers and needs no torch.
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)
