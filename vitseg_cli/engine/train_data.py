"""Training batches: a resumable, sharded, endless stream of augmented crops, and the up-front data checks.

The order of samples is a pure function of (seed, epoch, rank, world size) through `DistributedSampler`, and every
sample's augmentation draws from `np.random.default_rng([seed, epoch, index])`. So micro-batch number m is the same
whether a run went straight through or stopped and resumed, with any number of loader workers.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from ..data.transforms import train_transform
from ..errors import VitsegError
from ..data.workers import worker_init
from ..spec import Spec

Key = tuple[int, int]  # (epoch, sample index)


class AugmentedCrops(Dataset):
    """Map (epoch, index) -> (normalized CHW float32 crop, int64 label) through the official train pipeline."""

    def __init__(self, dataset: Any, spec: Spec):
        self.dataset = dataset
        t, d = spec.train, spec.data
        self.seed = t.seed
        self.kwargs = dict(scale=tuple(t.scale), ratio_range=tuple(t.ratio_range), crop_size=tuple(t.crop_size),
                           cat_max_ratio=t.cat_max_ratio, flip_prob=t.flip_prob, photometric=t.photometric,
                           mean=tuple(d.mean), std=tuple(d.std), ignore_index=d.ignore_index)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Key) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = key
        img, label = self.dataset.read_pair(index)  # label values and sizes checked by the dataset
        rng = np.random.default_rng([self.seed, epoch, index])
        x, y = train_transform(img, label, rng=rng, **self.kwargs)
        return torch.from_numpy(x), torch.from_numpy(y)


CLASS_FIELDS = ("model.num_classes", "data.classes", "data.palette")


def class_fields_set(data: dict[str, Any]) -> set[str]:
    """Which of `CLASS_FIELDS` a user's spec mapping (before presets) sets itself."""
    found = set()
    for dotted in CLASS_FIELDS:
        section, key = dotted.split(".")
        part = data.get(section)
        if isinstance(part, dict) and part.get(key) is not None:
            found.add(dotted)
    return found


def fit_classes(spec: Spec, fixed: set[str], dataset: Any, root: str) -> Spec:
    """The spec with the dataset's class count, names and palette, except where `fixed` (set by the user) says
    otherwise; a fixed count or list of names that differs from the dataset's is an error."""
    names, k = list(dataset.class_names), dataset.num_classes
    if "model.num_classes" in fixed and spec.model.num_classes != k:
        raise VitsegError(f"{root}: the dataset has {k} classes but the spec's model.num_classes is "
                          f"{spec.model.num_classes}; drop it from the spec (the dataset's count is used) or fix "
                          "the dataset's classes")
    if "data.classes" in fixed and list(spec.data.classes or []) != names:
        theirs = list(spec.data.classes or [])
        diff = next((i for i, (a, b) in enumerate(zip(theirs, names)) if a != b), min(len(theirs), len(names)))
        raise VitsegError(f"{root}: the spec's data.classes differ from the dataset's from class {diff} on "
                          f"(spec {theirs[diff:diff + 3]}, dataset {names[diff:diff + 3]}); drop data.classes from "
                          "the spec or fix the dataset's classes")
    palette = [list(c) for c in dataset.palette]
    if "data.palette" in fixed:
        if len(spec.data.palette or []) != k:
            raise VitsegError(f"{root}: the spec's data.palette has {len(spec.data.palette or [])} colours but the "
                              f"dataset has {k} classes")
        palette = [list(c) for c in spec.data.palette]
    return spec.updated(model={"num_classes": k}, data={"classes": names, "palette": palette})


def check_dataset(dataset: Any, spec: Spec, root: str, probe: int = 8) -> None:
    """Fail early: an empty dataset, more classes than the model has, unreadable or out-of-range labels (a few
    probed evenly across the set; the rest are checked as they load)."""
    n = len(dataset)
    if n == 0:
        raise VitsegError(f"{root}: no training samples found")
    k = spec.model.num_classes
    if dataset.num_classes > k:
        raise VitsegError(f"{root}: the data has {dataset.num_classes} classes but model.num_classes is {k} "
                          f"(set model.num_classes in the spec)")
    for index in sorted({int(i) for i in np.linspace(0, n - 1, min(probe, n))}):
        dataset.read_pair(index)


class EndlessBatches(Sampler):
    """Micro-batches of (epoch, index) keys for one rank, forever, starting at micro-batch `start`.

    Each epoch is this rank's `DistributedSampler` shard (shuffled with the seed and epoch), repeated when it is
    shorter than one batch; a trailing partial batch is dropped."""

    def __init__(self, num_samples: int, batch_size: int, seed: int, rank: int, world_size: int, start: int = 0):
        self.sampler = DistributedSampler(range(num_samples), num_replicas=world_size, rank=rank, shuffle=True,
                                          seed=seed, drop_last=False)
        self.batch_size = batch_size
        shard = len(self.sampler)
        self.per_epoch = max(shard, batch_size) // batch_size
        self.start = start

    def _epoch(self, epoch: int) -> list[int]:
        self.sampler.set_epoch(epoch)
        order = list(self.sampler)
        while len(order) < self.batch_size:
            order = order + order
        return order

    def __iter__(self) -> Iterator[list[Key]]:
        epoch, offset = divmod(self.start, self.per_epoch)
        while True:
            order = self._epoch(epoch)
            for b in range(offset, self.per_epoch):
                yield [(epoch, i) for i in order[b * self.batch_size:(b + 1) * self.batch_size]]
            epoch, offset = epoch + 1, 0


def batch_loader(crops: AugmentedCrops, batch_size: int, rank: int, world_size: int, start: int,
                 workers: int, pin_memory: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """An iterator over training micro-batches from micro-batch `start` on."""
    sampler = EndlessBatches(len(crops), batch_size, crops.seed, rank, world_size, start)
    # an own generator: creating the loader must not draw from the global torch RNG (drop path uses it)
    generator = torch.Generator().manual_seed(crops.seed * 1000 + rank)
    loader = DataLoader(crops, batch_sampler=sampler, num_workers=workers, pin_memory=pin_memory,
                        persistent_workers=workers > 0, prefetch_factor=2 if workers else None, generator=generator,
                        worker_init_fn=worker_init if workers else None)
    return iter(loader)


@contextlib.contextmanager
def loader_stopped(batches: Iterator) -> Iterator[None]:
    """Stop the loader's worker processes when the block ends, however it ends. Left to the interpreter's exit, a
    persistent loader that an exception's traceback still holds is never stopped: its workers ignore SIGTERM
    (workers.py) and the exit waits for them forever."""
    try:
        yield
    finally:
        shutdown = getattr(batches, "_shutdown_workers", None)  # DataLoader's own clean stop (no public API)
        if shutdown is not None:
            shutdown()


def unwrap_worker_error(err: BaseException) -> str | None:
    """The one-line message of a `VitsegError` raised inside a DataLoader worker (re-raised with a traceback)."""
    text = str(err)
    marker = "VitsegError: "
    if marker in text:
        return text.rsplit(marker, 1)[1].strip().splitlines()[0]
    return None
