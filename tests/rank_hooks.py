"""Runs the vitseg CLI (as `torchrun ... tests/rank_hooks.py ARGS`) with a fault or a delay injected on one rank, for
the tests of distributed failure handling; not a test module.

HOOK_FAIL_RANK=r: on rank r, the model forward (inference and training) raises after HOOK_FAIL_AFTER calls.
HOOK_DELAY=s: every model forward first sleeps s seconds (a slow run that a test can kill half way).
"""

import os
import sys
import time

from vitseg_cli.engine import inference
from vitseg_cli.model.segmentor import Segmentor

RANK = int(os.environ.get("RANK", "0"))
FAIL = os.environ.get("HOOK_FAIL_RANK") is not None and RANK == int(os.environ["HOOK_FAIL_RANK"])
FAIL_AFTER = int(os.environ.get("HOOK_FAIL_AFTER", "0"))
DELAY = float(os.environ.get("HOOK_DELAY", "0"))
calls = 0


def hooked(call):
    global calls
    calls += 1
    if FAIL and calls > FAIL_AFTER:
        raise RuntimeError(f"injected failure on rank {RANK}")
    if DELAY:
        time.sleep(DELAY)
    return call()


real_forward, real_train = inference._model_forward, Segmentor.loss


def model_forward(*args, **kwargs):
    forward = real_forward(*args, **kwargs)
    return lambda x: hooked(lambda: forward(x))


inference._model_forward = model_forward
Segmentor.loss = lambda self, x, target: hooked(lambda: real_train(self, x, target))

if __name__ == "__main__":
    from vitseg_cli.cli import app

    sys.exit(app(prog_name="vitseg"))
