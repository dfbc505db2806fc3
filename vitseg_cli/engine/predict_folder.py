"""Claiming predict's output folder, all before the model loads: the default folder's auto-increment, the lock, the
fingerprint, and what becomes of each input (`engine/resume.py`). A refused rerun costs no model load.

With no `--out`, the run writes into `vitseg-out`, or, when that folder holds another run's outputs (made
differently, or of another source's files) or is locked by a running predict, the first of `vitseg-out2`,
`vitseg-out3`, ... that it may write into (the user is told which). A given `--out` is never replaced by another.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from ..data.inputs import InputImage
from ..data.io import check_output_dir, refuse_non_folder
from ..data.shards import Shard, shard_items
from ..data.storage import redact
from ..data.url_inputs import collect_sources
from ..errors import VitsegError
from .fingerprint import make_fingerprint, refusal
from .outputs import OUTPUT_DIRS, claim_output_folder
from .resume import Plan, plan_run, remove_stale
from .rle import done_inputs
from .run_lock import OutputLock

DEFAULT_OUT = Path("vitseg-out")
MAX_AUTO = 9999


@dataclass
class Claim:
    """Rank 0's claim on the folder: where, the (shard's) inputs, each input's plan, and the held lock."""
    out: Path
    inputs: list[InputImage]
    plan: Plan
    lock: OutputLock
    notes: list[str]


@dataclass
class FolderRequest:
    """What claiming needs to know of the run (from `PredictOptions`, the spec and the settings)."""
    out: Optional[Path]  # None: the default folder, auto-incremented
    sources: list[str]
    save: tuple[str, ...]
    overwrite: bool
    identity: str
    shard: Optional[Shard]
    weights: Path
    backend: str
    spec: dict[str, Any]
    settings: dict[str, Any]
    alpha: float
    vid_stride: int
    exists: Optional[Callable[[Path], bool]] = None  # whether an output file exists (a URL --out: here or there)


def _candidates(out: Optional[Path]):
    if out is not None:
        yield Path(out), False
        return
    yield DEFAULT_OUT, True
    for i in range(2, MAX_AUTO + 1):
        yield Path(f"{DEFAULT_OUT}{i}"), True


def _inputs(req: FolderRequest, out: Path) -> list[InputImage]:
    inputs = collect_sources(req.sources, out, videos=True)  # local files, URL objects or tar shards
    if not inputs:
        raise VitsegError(f"no images or videos found in {', '.join(map(redact, req.sources))}")
    return inputs


def _rle_done(req: FolderRequest, out: Path) -> Optional[set[str]]:
    return done_inputs(out) if "rle" in req.save and not req.overwrite and out.is_dir() else None


class _Probe:
    """What probing the default folder candidates found, kept for the claim so that nothing is done twice: each
    candidate's input listing, and the sha256 of every input already read (reused while its stat is unchanged)."""

    def __init__(self, req: FolderRequest):
        self.req = req
        self.listings: dict[Path, list[InputImage]] = {}
        self.hashes: dict[tuple, str] = {}

    def inputs(self, out: Path) -> list[InputImage]:
        if out not in self.listings:
            self.listings[out] = _inputs(self.req, out)
        return self.listings[out]

    def usable(self, out: Path, fingerprint: dict[str, Any]) -> bool:
        """Whether the default folder candidate `out` takes this run as it is (nothing written to find out)."""
        req = self.req
        if out.exists() and not out.is_dir():
            return False
        if not out.exists():
            return True
        try:
            OutputLock(out, req.shard.tag if req.shard else None).check_free()
            if refusal(out, fingerprint, OUTPUT_DIRS, req.overwrite) is not None:
                return False
            plan_run(out, shard_items(self.inputs(out), req.shard), req.save, req.identity, req.overwrite,
                     _rle_done(req, out), exists=req.exists, hashes=self.hashes)
        except VitsegError:
            return False
        return True


def claim_folder(req: FolderRequest, note: Optional[Callable[[str], None]] = None) -> Claim:
    """Pick the folder, take its lock, check and record the fingerprint, plan each input, remove the old files of
    inputs that changed. On any refusal, nothing is left behind (the lock is released)."""
    fingerprint = make_fingerprint(req.weights, req.backend, req.spec, req.settings, req.alpha, req.vid_stride)
    probe = _Probe(req)
    out = None
    for candidate, auto in _candidates(req.out):
        if not auto or probe.usable(candidate, fingerprint):
            out = candidate
            break
    if out is None:
        raise VitsegError(f"no free default output folder up to {DEFAULT_OUT}{MAX_AUTO}: give --out")
    refuse_non_folder(out, "--out")
    inputs = probe.inputs(out)
    check_output_dir(out, "--out")
    lock = OutputLock(out, req.shard.tag if req.shard else None)
    notes = lock.acquire()
    try:
        claim_output_folder(out, req.weights, req.backend, req.spec, req.settings, req.save, req.alpha,
                            req.overwrite, vid_stride=req.vid_stride, clean=req.shard is None)
        inputs = shard_items(inputs, req.shard)  # a Slurm array task's share; the ranks split it
        # planned again under the lock (the folder may have changed since the probe), reading no input again
        plan = plan_run(out, inputs, req.save, req.identity, req.overwrite, _rle_done(req, out), exists=req.exists,
                        hashes=probe.hashes)
        remove_stale(plan.stale)
    except BaseException:
        lock.release(failed=True)
        raise
    if req.out is None and out != DEFAULT_OUT:
        notes.append(f"{DEFAULT_OUT} holds another run's outputs: writing to {out}")
    if plan.changed:
        names = ", ".join(item.rel for item in plan.changed[:5]) + (" ..." if len(plan.changed) > 5 else "")
        notes.append(f"{len(plan.changed)} input(s) changed since their outputs were made, redone: {names}")
    return Claim(out, inputs, plan, lock, notes)
