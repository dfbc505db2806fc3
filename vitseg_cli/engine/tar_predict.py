"""Predicting a WebDataset tar shard: its samples are read in one sequential pass (in a loader worker), segmented by
the inference engine's loop, and written either as loose files (`OUT/masks/<shard>/<key>.png`, ...) or into the
shard's output shard (`--out-format tar`, `engine.tar_output`).

A bad sample (no image field, an undecodable image) is reported and skipped, and the shard goes on; a damaged shard
is reported, and its unfinished output shard dropped, so a rerun redoes it. With loose files, samples whose outputs
exist are skipped without decoding.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch

from ..data.io import decode_image
from ..data.tar_shards import TarShard, image_field, iter_samples
from .inference import InferenceSettings, predict_items, prepare_item
from .outputs import OutputWriter, mask_dtype, output_paths
from .rle import done_inputs
from .manifest import image_line
from .tar_output import TAR_DIR, TarShardWriter, sample_files, shard_path

SKIPPED = "\0skipped"  # an item's error meaning: done before, not read


@dataclass(frozen=True)
class TarSample:
    """A sample as an input of the writer: `rel` = `<shard>/<key>` names its loose outputs."""

    path: str
    rel: str

    is_video = False

    @property
    def root(self) -> str:
        return self.path.rpartition("#")[0]

    def identity(self, mode: str = "stat") -> dict:
        return {}


class TarSamples(torch.utils.data.IterableDataset):
    """The samples of one shard, decoded and preprocessed, in order; `done`: sample names (`<shard>/<key>`) to
    skip. Never raises: a bad sample, or a damaged shard, is an item carrying its error."""

    def __init__(self, shard: TarShard, settings: InferenceSettings, mean, std, keep_image: bool,
                 done: frozenset = frozenset()):
        self.shard, self.settings, self.mean, self.std = shard, settings, mean, std
        self.keep_image, self.done = keep_image, done

    def __iter__(self) -> Iterator[dict[str, Any]]:
        n = -1
        try:
            for n, (key, fields, nbytes) in enumerate(iter_samples(self.shard.url)):
                yield self._item(n, key, fields, nbytes)
        except Exception as err:  # the shard itself: its whole output shard is redone
            yield {"index": n + 1, "path": self.shard.path, "error": str(err), "shard_error": True}

    def _item(self, n: int, key: str, fields: dict[str, bytes], nbytes: int) -> dict[str, Any]:
        name = f"{self.shard.path}#{key}"
        base = {"index": n, "path": name, "key": key, "read_bytes": nbytes}
        if f"{self.shard.name}/{key}" in self.done:
            return {**base, "error": SKIPPED}
        field = image_field(fields)
        if field is None:
            return {**base, "error": f"{name}: no image in the sample (fields: {', '.join(sorted(fields))})"}
        try:
            image = decode_image(fields[field], f"{name}.{field}")
            item = prepare_item(image, self.settings, self.mean, self.std, self.keep_image, n, name)
        except Exception as err:
            return {**base, "error": str(err).splitlines()[0][:300] or type(err).__name__}
        return {**item, "key": key, "read_bytes": nbytes}


@dataclass
class ShardJob:
    """What one shard's run needs from the predict run."""

    model: Any
    settings: InferenceSettings
    device: torch.device
    out: Path
    save: tuple[str, ...]
    alpha: float
    workers: int
    writer: OutputWriter
    tar_out: bool
    publish: Optional[Callable[[list[Path]], None]] = None
    done: frozenset = frozenset()


def predict_shard(job: ShardJob, shard: TarShard,
                  on_sample: Callable[[Any, Optional[str]], None]) -> tuple[Optional[str], int]:
    """Segment every sample of `shard`; `on_sample(prediction, error)` after each (error None: written, SKIPPED:
    done before). Returns the shard's own error (damaged: its output shard is then not kept) and the bytes of the
    output shard written."""
    spec = job.model.spec
    dataset = TarSamples(shard, job.settings, spec.data.mean, spec.data.std, "overlay" in job.save, job.done)
    sink = TarShardWriter(shard_path(job.out, shard.name), job.publish) if job.tar_out else None
    dtype = mask_dtype(spec.model.num_classes)
    error = None
    try:
        preds = predict_items(job.model, dataset, job.settings, job.device, workers=min(job.workers, 1),
                              want_probs="probs" in job.save)
        for pred in preds:
            if pred.error and pred.path == shard.path:  # the shard broke off
                error = pred.error
                break
            if not pred.error:
                _write(job, shard, pred, sink, dtype)
            on_sample(pred, pred.error)
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    if sink is None:
        return error, 0
    if error is not None:
        sink.abort()
        return error, 0
    return None, sink.finish()


def _write(job: ShardJob, shard: TarShard, pred, sink: Optional[TarShardWriter], dtype: type) -> None:
    spec = job.model.spec
    key = str(pred.path).rpartition("#")[2]
    pred.class_names, pred.palette = spec.class_names, spec.palette
    if sink is None:
        job.writer.put(pred, TarSample(str(pred.path), f"{shard.name}/{key}"))
        return
    sink.add(key, sample_files(key, pred, job.save, spec.class_names, spec.palette, job.alpha, dtype))
    item = TarSample(str(pred.path), f"{shard.name}/{key}")
    if job.writer.rle is not None:
        job.writer.rle.append(item.rel, pred.labels)
    if job.writer.manifest is not None:
        job.writer.manifest.append(image_line(item, {}, {"tar": f"{TAR_DIR}/{shard.name}.tar"}, labels=pred.labels,
                                              class_names=spec.class_names, top1=pred.top1,
                                              infer_s=pred.timings.get("infer_s")))


def done_samples(out: Path, shard_name: str, save: tuple[str, ...], rle_done: Optional[set[str]],
                 remote: Any = None) -> frozenset:
    """The names (`<shard>/<key>`) of the shard's samples whose loose outputs all exist, here or under a URL."""
    done: Optional[set[str]] = None
    for kind, path in output_paths(out, f"{shard_name}/_", save).items():
        folder, suffix = path.parent, path.suffix
        names = {f"{shard_name}/{p.relative_to(folder).as_posix()[:-len(suffix)]}"
                 for p in folder.rglob("*" + suffix)} if folder.is_dir() else set()
        prefix = f"{kind}/{shard_name}/"
        if remote is not None:
            names |= {f"{shard_name}/{k[len(prefix):-len(suffix)]}" for k in remote.existing
                      if k.startswith(prefix) and k.endswith(suffix)}
        done = names if done is None else done & names
    if "rle" in save:
        done = set(rle_done or ()) if done is None else done & set(rle_done or ())
    return frozenset(done or ())


def shard_done(out: Path, shard: TarShard, tar_out: bool, remote: Any = None) -> bool:
    """With `--out-format tar`: whether the shard's output shard exists (locally or under a URL --out)."""
    if not tar_out:
        return False
    path = shard_path(out, shard.name)
    return path.exists() or (remote is not None and remote.has(path.relative_to(out).as_posix()))


def predict_shards(shards: list, job: ShardJob, summary: Any, advance: Callable[[], None],
                   failed: Callable[[Any, str], None], *, overwrite: bool = False, remote: Any = None) -> None:
    """Every sample of every tar shard, counted in the predict run's `summary` as an image (processed, skipped or
    failed); a shard whose output shard exists (`--out-format tar`) counts as one skipped input."""
    if not shards:
        return
    rle_done = done_inputs(Path(job.out)) if "rle" in job.save and not overwrite else None

    def on_sample(pred: Any, error: Optional[str]) -> None:
        summary.bytes_read += int(pred.timings.get("read_bytes", 0))
        if error == SKIPPED:
            summary.skipped += 1
        elif error:
            failed(TarSample(str(pred.path), str(pred.path)), error)
        else:
            summary.processed += 1
        advance()

    for shard in shards:
        if not overwrite and shard_done(job.out, shard, job.tar_out, remote):
            summary.skipped += 1
            continue
        done = frozenset() if overwrite or job.tar_out else done_samples(job.out, shard.name, job.save, rle_done,
                                                                          remote)
        error, written = predict_shard(replace(job, done=done), shard, on_sample)
        summary.bytes_written += written if remote is None else 0  # uploads are counted by the staging
        if error:
            failed(shard, error)
