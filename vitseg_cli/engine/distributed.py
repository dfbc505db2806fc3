"""One process or one rank of a torchrun job: the rank's device, its data shard, and the collectives train, eval and
predict use. A process group is created only when WORLD_SIZE > 1 (nccl on GPUs, gloo on CPUs).

Failures: `DistContext.agree(work)` runs a step on every rank and shares any failure with all ranks, so that no rank
is left waiting in a collective; the error it raises is marked `SharedFailure` (every rank has it: rank 0 alone says
it). An exception outside such a step ends the process at once (`commands.common.friendly_errors`); torchrun then
stops the other ranks, whose collectives with the dead rank fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from ..errors import VitsegError
from ..torchrun import local_rank, rank_and_world

T = TypeVar("T")


class SharedFailure(VitsegError):
    """A failure every rank knows of (from `DistContext.agree`): rank 0 reports it, the others exit quietly."""


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def shard(self, items: Sequence[Any]) -> list[int]:
        """Indices of this rank's share: rank, rank + world, ..."""
        return list(range(self.rank, len(items), self.world_size))

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def sum_array(self, array: np.ndarray) -> np.ndarray:
        if not self.active:
            return array
        t = torch.from_numpy(np.ascontiguousarray(array)).to(self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.cpu().numpy()

    def mean(self, values: list[float]) -> list[float]:
        if not self.active:
            return values
        return list(self.sum_array(np.asarray(values, np.float64)) / self.world_size)

    def any(self, flag: bool) -> bool:
        if not self.active:
            return flag
        return bool(self.sum_array(np.asarray([1.0 if flag else 0.0])).item() > 0)

    def broadcast(self, obj: T) -> T:
        """Rank 0's `obj` on every rank."""
        if not self.active:
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def agree(self, work: Callable[[], T]) -> T:
        """Run this rank's `work`; share any failure with every rank (so none waits in a collective), then raise it
        on all of them as a `SharedFailure` (the first failing rank's message). Ctrl-C is not shared."""
        try:
            result, failure = work(), None
        except VitsegError as err:
            result, failure = None, str(err)
        except KeyboardInterrupt:
            raise
        except BaseException as err:
            if not self.active:
                raise
            result, failure = None, f"rank {self.rank}: {type(err).__name__}: {err}"
        failures = [f for f in self.gather(failure) if f]
        if failures:
            raise SharedFailure(failures[0])
        return result

    def gather(self, obj: Any) -> list[Any]:
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False


def init_distributed(device: torch.device) -> DistContext:
    """The context of this process; joins the torchrun process group when WORLD_SIZE > 1."""
    rank, world = rank_and_world()
    ctx = DistContext(rank=rank, world_size=world, local_rank=local_rank(), device=device)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        ctx.owns_group = True
    return ctx
