"""Prediction: `predict(model, image)` for one image from Python, and `vitseg predict`'s run, which segments every
image and video of a dataset into OUT, resumable, robust to bad files, in one process or across torchrun ranks.

A run's inputs are listed by `data.inputs`; what it writes, and how, is `engine.outputs`. Bad files are reported and
counted, and the run goes on. Under torchrun, rank 0 lists the inputs once; each rank takes `inputs[rank::world]` on
its own device and writes into the same OUT; rank 0 writes the one merged `OUT/predict.json`. One process is the
world_size = 1 case of the same code. With `--shard I/N` (a Slurm array task) the run takes its share of the inputs
(`data.shards`) and writes `OUT/predict-<I>-of-<N>.json`, which `engine.records` merges.
"""

from __future__ import annotations

import json
import math
import sys
import time
from contextlib import nullcontext, redirect_stdout
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Optional, TextIO

import numpy as np
import torch
from rich.console import Console
from rich.text import Text

from .._version import __version__
from ..checkpoints import is_safetensors
from ..data.inputs import InputImage
from ..data.storage import redact
from ..data.tar_shards import count_samples, is_tar_source
from ..data.io import atomic_write_bytes, encoding_problem, grey_to_rgb_uint8, read_image, refuse_non_folder
from ..data.shards import Shard
from ..data.video import video_info
from ..errors import VitsegError
from ..loading import read_spec
from .common import default_weights_path, load_backend, weights_file
from .derive import derive_outputs
from .device import rank_device, resolve_device
from .distributed import DistContext, init_distributed
from .inference import InferenceSettings, iter_predictions, iter_video_predictions, predict_array
from .interrupt import sigterm_as_interrupt
from .manifest import IDENTITY_MODES, ManifestLog
from .model_info import announce_model
from .onnx_backend import choose_backend
from .outputs import DEFAULT_SAVE, OutputWriter, Prediction, output_paths
from .predict_folder import DEFAULT_OUT, Claim, FolderRequest, claim_folder
from .progress import ProgressReporter, StreamConsole
from .ray_run import ray_predictions
from .records import record_name
from .remote_out import RemoteOutput, open_remote
from .tar_output import remove_stale_shards
from .tar_predict import ShardJob, predict_shards
from .traffic import traffic_fields, traffic_record
from .rle import RleLog


# ------------------------------------------------------------------------------------------------- one image


def _as_rgb(source: Any) -> tuple[np.ndarray, Optional[Path]]:
    if isinstance(source, (str, Path)):
        return read_image(source), Path(source)
    if hasattr(source, "convert") and hasattr(source, "size"):  # a PIL image, without importing PIL
        return _pil_rgb(source), None
    if isinstance(source, np.ndarray):
        if source.dtype != np.uint8:
            raise VitsegError(f"predict: expected a uint8 image array, got {source.dtype}")
        if source.ndim == 2:
            source = np.repeat(source[..., None], 3, axis=2)
        if source.ndim != 3 or source.shape[2] != 3 or 0 in source.shape:
            raise VitsegError(f"predict: expected an RGB array of shape (H, W, 3), got {source.shape}")
        return np.ascontiguousarray(source), None
    raise VitsegError(f"predict: expected a path, an RGB uint8 array or a PIL image, got {type(source).__name__}")


def _pil_rgb(image: Any) -> np.ndarray:
    """A PIL image as RGB uint8, its 16-bit and float modes scaled as `read_image` scales such a file (PIL's own
    convert('RGB') would clip them to 0..255); values those rules cannot hold are an error, never clipped."""
    mode = getattr(image, "mode", "")
    if not (mode.startswith("I") or mode == "F"):
        return np.asarray(image.convert("RGB"))
    grey = np.asarray(image)
    low, high = (float(grey.min()), float(grey.max())) if grey.size else (0.0, 0.0)
    if mode == "F" and not (0.0 <= low and high <= 1.0):
        raise VitsegError(f"predict: a PIL mode 'F' image must hold values in 0..1 (read as 0..255), found "
                          f"{low:g}..{high:g}; scale it or give an 8-bit RGB image")
    if mode != "F":
        if not (0 <= low and high <= 65535):
            raise VitsegError(f"predict: a PIL mode {mode!r} image must hold 16-bit values (0..65535), found "
                              f"{low:g}..{high:g}; give an 8-bit RGB image")
        grey = grey.astype(np.uint16)
    return grey_to_rgb_uint8(grey)


def _size_pair(value: Any) -> Any:
    return (int(value), int(value)) if isinstance(value, (int, np.integer)) else value


def predict(model: Any, source: Any, *, probs: bool = False, device: "str | torch.device | None" = None,
            **options: Any) -> Prediction:
    """Segment one image (a path, an RGB uint8 array (H, W, 3) or (H, W) grey, or a PIL image) with `model` through
    the CLI's own inference path; runs on the model's device unless `device`. Inference options are the fields of
    `InferenceSettings` (mode, crop_size, stride, flip, scales, batch_size, half, compile) over the spec's `test`
    section; `probs=True` keeps the averaged softmax.

        result = vitseg_cli.predict(model, "street.jpg", mode="slide", flip=True, probs=True)
        result.labels, result.probs, result.overlay(0.5), result.save("out")   # as `vitseg predict` writes
    """
    unknown = set(options) - set(InferenceSettings.__dataclass_fields__)
    if unknown:
        raise TypeError(f"predict() got unknown inference options: {', '.join(sorted(unknown))} (allowed: "
                        f"{', '.join(InferenceSettings.__dataclass_fields__)})")
    for key in ("crop_size", "stride"):
        if key in options:
            options[key] = _size_pair(options[key])
    image, path = _as_rgb(source)
    spec = model.spec
    settings = InferenceSettings.from_spec(spec, **options)
    if device is None:
        first = next(iter(model.parameters()), None) if isinstance(model, torch.nn.Module) else None
        dev = first.device if first is not None else torch.device("cpu")
    else:
        dev = resolve_device(str(device))
    settings.check_device(dev)
    pred = predict_array(model, image, settings, dev, want_probs=probs, path=path)
    if pred.error:
        raise VitsegError(pred.error)
    return replace(pred, image=image, path=path, class_names=spec.class_names, palette=spec.palette)


# ----------------------------------------------------------------------------------------------------- the run


@dataclass
class PredictOptions:
    sources: list[str]
    out: "Path | str | None" = None  # None: vitseg-out, or vitseg-out2, ... when it holds another run; or a URL
    weights: Optional[Path] = None
    spec: Optional[str] = None
    overrides: dict[str, Any] = field(default_factory=dict)  # InferenceSettings fields; None = from the spec
    spec_overrides: list[str] = field(default_factory=list)  # --set key.path=value
    backbone_weights: Optional[Path] = None  # the backbone file of a two-file release
    device: str = "auto"
    save: tuple[str, ...] = DEFAULT_SAVE
    alpha: float = 0.5
    overwrite: bool = False
    workers: int = 2
    quiet: bool = False
    backend: Optional[str] = None  # torch or onnx; None = onnx for a .onnx weights file, else torch
    vid_stride: int = 1
    shard: Optional[Shard] = None  # this task's share of the sorted inputs; None: all of them
    identity: str = "stat"  # how an input is told from another file under its name: stat (size, mtime) or hash
    json: bool = False  # each manifest line also on stdout
    out_format: str = "files"  # files (OUT/<kind>/<rel>.*) or tar (OUT/shards/<shard>.tar, for tar sources)
    engine: str = "torch"  # torch, or ray (Ray Data actors: engine/ray_run.py)
    ray: dict[str, Any] = field(default_factory=dict)  # address, num_gpus_per_worker, concurrency
    remote: Optional[RemoteOutput] = None  # set by the run for a URL --out (out is then its staging folder)


@dataclass
class PredictSummary:
    """One rank's counts (or, on rank 0 after the run, every rank's together)."""
    processed: int = 0
    skipped: int = 0
    derived: int = 0  # done images given new kinds from their saved masks
    frames: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    interrupted: bool = False
    elapsed_s: float = 0.0
    infer_s: float = 0.0
    ranks: list[dict[str, int]] = field(default_factory=list)
    write_error: Optional[str] = None
    bytes_read: int = 0  # of tar shards and objects read (local loose files are not counted)
    bytes_written: int = 0  # of output shards and uploaded objects

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def counts(self, rank: int) -> dict[str, Any]:
        return {"rank": rank, "processed": self.processed, "skipped": self.skipped, "frames": self.frames,
                "failed": list(self.failed), "infer_s": self.infer_s, "bytes_read": self.bytes_read,
                "bytes_written": self.bytes_written}


def _load_backend(opts: PredictOptions, device, note):
    return load_backend(opts.backend, opts.weights, opts.spec, device, note=note, overrides=opts.overrides,
                        spec_overrides=opts.spec_overrides, backbone_weights=opts.backbone_weights)


def _spec_first(opts: PredictOptions, device, note) -> tuple[Any, Any]:
    """(spec, model or None): a vitseg file's spec is read without building the model, so that every check of the
    output folder runs before the model loads; other weights (official .pth, ONNX) are loaded here."""
    if opts.backend == "torch":
        path = weights_file(opts.weights)
        if opts.weights is None and not path.exists():
            raise VitsegError("no default model is shipped yet: pass --weights")
        if path.is_file() and is_safetensors(path) and opts.backbone_weights is None:
            return read_spec(path, opts.spec, overrides=opts.spec_overrides), None
    model = _load_backend(opts, device, note)
    return model.spec, model


def _prepare(opts: PredictOptions, ctx: DistContext, note) -> Optional[tuple[Claim, Any, Any]]:
    """Rank 0: the spec (and the model when it has to be loaded for it), then the output folder claimed (lock,
    fingerprint, each input's plan) before anything else loads; the other ranks wait."""
    refuse_non_folder(opts.out or DEFAULT_OUT, "--out")
    if not 0.0 <= opts.alpha <= 1.0:
        raise VitsegError(f"--alpha {opts.alpha}: must be between 0 and 1")
    if opts.vid_stride < 1:
        raise VitsegError(f"--vid-stride {opts.vid_stride}: must be at least 1")
    if opts.identity not in IDENTITY_MODES:
        raise VitsegError(f"--identity {opts.identity}: must be one of {', '.join(IDENTITY_MODES)}")
    if opts.out_format == "tar" and not all(map(is_tar_source, opts.sources)):
        raise VitsegError("--out-format tar writes one output shard per input shard: give tar shards as sources")
    if not ctx.is_main:
        return None
    spec, model = _spec_first(opts, ctx.device, note)
    settings = InferenceSettings.from_spec(spec, **opts.overrides)
    settings.check_device(ctx.device)
    request = FolderRequest(opts.out, list(opts.sources), tuple(opts.save), opts.overwrite, opts.identity, opts.shard,
                            weights_file(opts.weights), opts.backend, spec.to_dict(), settings.to_dict(), opts.alpha,
                            opts.vid_stride, exists=opts.remote.exists if opts.remote is not None else None)
    claim = claim_folder(request)
    if opts.shard is None:
        remove_stale_shards(claim.out)
    if opts.remote is not None:  # the fingerprint goes into the output prefix before any output
        opts.remote.publish_records()
    return claim, spec, model


def _settle(writer: OutputWriter, summary: PredictSummary) -> None:
    """After the writer closed: only images whose outputs landed count as processed (a failed write, e.g. a full
    disk, is recorded as the run's error)."""
    summary.processed -= writer.submitted - writer.written
    summary.write_error = str(writer.error) if writer.error is not None else None


def _frame_estimate(path: Path, stride: int) -> int:
    try:
        return max(1, math.ceil(video_info(path).frames / stride))
    except VitsegError:
        return 1  # reported as failed when it is read


def run_predict(opts: PredictOptions, console: Optional[Console] = None) -> PredictSummary:
    """Predict every input (this rank's share under torchrun). The summary is every rank's on rank 0. SIGTERM (what
    timeout, Slurm and Kubernetes send) stops the run as Ctrl-C does: the files being written land, the records
    are written, the lock is released."""
    console = console or StreamConsole(stderr=True)
    opts = replace(opts, backend=choose_backend(opts.backend, opts.weights))
    ctx = init_distributed(rank_device(opts.device))
    echo = sys.stdout if opts.json else None  # the manifest lines; anything else printed goes to stderr
    try:
        remote = open_remote(opts.out, _part(opts.shard, ctx))
        if remote is not None:  # a URL: the run writes into staging, which uploads every file once whole
            opts = replace(opts, out=remote.staging, remote=remote)
        with sigterm_as_interrupt(), redirect_stdout(sys.stderr) if opts.json else nullcontext():
            return _run(opts, ctx, console, echo)
    finally:
        ctx.close()


@dataclass
class _Shared:
    """What rank 0 decided, for every rank: the folder, the (shard's) inputs, the plan's work and identities."""
    out: Path
    inputs: list
    todo: list
    identities: dict
    keep: dict
    spec: Any


def _run(opts: PredictOptions, ctx: DistContext, console: Console, echo: Optional[TextIO]) -> PredictSummary:
    started = time.time()
    t0 = time.perf_counter()
    talk = not opts.quiet and ctx.is_main
    note = (lambda line: console.print(Text("note: " + line, style="yellow"), soft_wrap=True)) if talk else None
    claimed = ctx.agree(lambda: _prepare(opts, ctx, note))
    claim, spec, model = claimed if claimed else (None, None, None)
    try:
        if talk:
            announce_model(SimpleNamespace(spec=spec), opts.weights, opts.spec)  # only its spec is shown
        for line in claim.notes if claim and note else ():
            note(line)
        summary = PredictSummary(skipped=claim.plan.skipped if claim else 0)
        if claim is not None and claim.plan.derive:
            _derive(opts, claim, spec, *_logs(opts, ctx, claim.out, echo), summary)
        shared = ctx.broadcast(_Shared(claim.out, claim.inputs, claim.plan.predict, claim.plan.identities,
                                       claim.plan.keep, spec) if claim else None)
        opts = replace(opts, out=shared.out)
        manifest, rle = _logs(opts, ctx, shared.out, echo)
        if shared.todo and model is None and opts.engine != "ray":  # Ray's actors load their own
            model = ctx.agree(lambda: _load_backend(opts, ctx.device, note))
        spec = model.spec if model is not None else shared.spec
        settings = InferenceSettings.from_spec(spec, **opts.overrides)
        load_s = time.perf_counter() - t0
        work = _Work(model, spec, settings, shared, manifest, rle, summary, started, t0, load_s)
        return _predict_all(opts, ctx, console, talk, work)
    finally:
        if claim is not None:
            claim.lock.release()


@dataclass
class _Work:
    model: Any
    spec: Any
    settings: Optional[InferenceSettings]
    shared: _Shared
    manifest: ManifestLog
    rle: Optional[RleLog]
    summary: PredictSummary
    started: float
    t0: float
    load_s: float


def _logs(opts: PredictOptions, ctx: DistContext, out: Path,
          echo: Optional[TextIO]) -> tuple[ManifestLog, Optional[RleLog]]:
    """This process's manifest part (each line echoed on `echo` too: stdout with --json) and RLE log."""
    manifest = ManifestLog(out, _manifest_part(opts.shard, ctx), echo=echo)
    return manifest, RleLog(out, _part(opts.shard, ctx)) if "rle" in opts.save else None


def _derive(opts: PredictOptions, claim: Claim, spec, manifest: ManifestLog, rle: Optional[RleLog],
            summary: PredictSummary) -> None:
    """Rank 0, before the model loads: kinds added to done images from their saved masks (those whose mask cannot
    be read are predicted instead)."""
    rle_done = claim.plan.rle_done  # read under the lock by the plan
    for item, line in claim.plan.derive:
        ok = derive_outputs(claim.out, item, line, opts.save, palette=spec.palette, alpha=opts.alpha,
                            class_names=spec.class_names, ident=claim.plan.identities.get(item.rel, {}),
                            manifest=manifest, rle=rle if item.rel not in rle_done else None)
        if ok:
            summary.derived += 1
        else:
            claim.plan.predict.append(item)
    manifest.close()
    if rle is not None:
        rle.close()


def _predict_all(opts: PredictOptions, ctx: DistContext, console: Console, talk: bool, w: "_Work") -> PredictSummary:
    out, summary, shared = w.shared.out, w.summary, w.shared
    images, videos, shards = _todo(ctx, shared.todo)
    total = (len(images) + sum(_frame_estimate(v.path, opts.vid_stride) for v in videos)
             + sum(map(count_samples, shards)))
    spec, remote = w.spec, opts.remote
    writer = OutputWriter(out, opts.save, spec.palette, opts.alpha, spec.model.num_classes, rle=w.rle,
                          manifest=w.manifest, class_names=spec.class_names,
                          publish=remote.publish if remote is not None else None)
    where = f" (rank 0 of {ctx.world_size})" if ctx.active else ""
    where += f" shard {opts.shard}" if opts.shard else ""
    progress = ProgressReporter("predict" + where, total, unit="img", enabled=talk, console=console)
    want_probs, keep_image = "probs" in opts.save, "overlay" in opts.save
    infer_start = time.perf_counter()

    def failed(item: InputImage, error: str) -> None:
        error = redact(error)  # no user:password@ of a URL
        summary.failed.append({"path": redact(item.path), "error": error})
        writer.fail_line(item, shared.identities.get(item.rel), error)
        progress.print(Text("failed: " + error, style="red"))  # shown with --quiet too: it is an error

    def finish(status: str, gather: bool) -> None:
        _finish(opts, ctx, spec, w.settings, shared.inputs, summary, w.started, w.t0, w.load_s, infer_start,
                status, gather)

    try:
        with progress:
            def advance() -> None:
                summary.bytes_written = remote.bytes_written if remote is not None else summary.bytes_written
                progress.advance(failed=len(summary.failed), **traffic_fields(summary, infer_start))

            if opts.engine == "ray" and (videos or shards or want_probs):
                raise VitsegError("--engine ray segments images (local or URLs) into masks, color, overlay or rle: "
                                  "give videos, tar shards and --save probs to a torch run")
            reads = [getattr(i, "url", i.path) for i in images]  # an object's URL as given, credentials and all
            preds = () if not images else ray_predictions(reads, opts, keep_image) if opts.engine == "ray" else \
                iter_predictions(w.model, reads, w.settings, ctx.device, workers=opts.workers, want_probs=want_probs,
                                 keep_image=keep_image)
            for item, pred in zip(images, preds):
                summary.bytes_read += getattr(item, "size", 0)  # an object's listed size (0: a local file)
                error = pred.error or _unwritable(out, item, pred, opts.save)
                if error:
                    failed(item, error)
                else:
                    writer.put(pred, item, shared.identities.get(item.rel), shared.keep.get(item.rel))
                    summary.processed += 1
                advance()
            for item in videos:
                _predict_video(w.model, item, w.settings, ctx, opts, writer, summary, advance, failed,
                               shared.identities.get(item.rel))
            predict_shards(shards, ShardJob(w.model, w.settings, ctx.device, out, opts.save, opts.alpha,
                                            opts.workers, writer, opts.out_format == "tar", writer.publish),
                           summary, advance, failed, overwrite=opts.overwrite, remote=opts.remote)
    except BaseException as err:
        summary.interrupted = isinstance(err, KeyboardInterrupt)
        writer.close()  # what was queued is whole: let it land
        _settle(writer, summary)
        finish("interrupted" if summary.interrupted else "failed", gather=False)
        raise
    writer.close()
    _settle(writer, summary)
    try:
        # a rank that dies in a collective ends this one too (friendly_errors); rank 0 records what it knows
        finish("done" if writer.error is None else "failed", gather=True)
    except BaseException:
        finish("failed", gather=False)
        raise
    writer.check()
    if talk:
        _print_summary(summary, ctx, redact(remote.url) if remote is not None else out)
    return summary


def _print_summary(summary: PredictSummary, ctx: DistContext, out: Path) -> None:
    rate = summary.processed / max(summary.infer_s, 1e-9)
    frames = f", {summary.frames} video frames" if summary.frames else ""
    derived = f", {summary.derived} given new kinds from their masks" if summary.derived else ""
    ranks = f" on {ctx.world_size} processes" if ctx.active else ""
    # the result: stdout (stderr with --json, whose stdout holds only manifest lines)
    StreamConsole().print(f"processed {summary.processed}{frames}{derived}, skipped {summary.skipped} (done "
                          f"before), failed {len(summary.failed)} in {summary.elapsed_s:.1f} s ({rate:.2f} img/s)"
                          f"{ranks} -> {out}")


def _unwritable(out: Path, item: InputImage, pred: Prediction, save: tuple[str, ...]) -> Optional[str]:
    """Why an image's outputs cannot be encoded (a 1x100000 overlay as .jpg): the image is reported, not the run."""
    problem = encoding_problem(output_paths(out, item.rel, save).values(), *pred.labels.shape[:2])
    return f"{item.path}: {problem}" if problem else None


def _todo(ctx: DistContext, todo: list) -> tuple[list, list, list]:
    """This rank's images, videos and tar shards still to do (rank 0 planned them; the others' skips are counted
    there)."""
    mine = [todo[i] for i in ctx.shard(todo)]
    shards = [item for item in mine if getattr(item, "is_tar", False)]
    return ([item for item in mine if not item.is_video and item not in shards],
            [item for item in mine if item.is_video], shards)



def _part(shard: Optional[Shard], ctx: DistContext) -> str:
    """This process's name among the shards and ranks: its RLE log's."""
    part = shard.tag if shard else "0-of-1"
    return part + (f"-rank{ctx.rank}-of-{ctx.world_size}" if ctx.active else "")


def _manifest_part(shard: Optional[Shard], ctx: DistContext) -> Optional[str]:
    """None (`manifest.jsonl`) for a lone process; else the shard's and rank's own part."""
    return _part(shard, ctx) if shard or ctx.active else None


def _predict_video(model, item: InputImage, settings: InferenceSettings, ctx: DistContext, opts: PredictOptions,
                   writer: OutputWriter, summary: PredictSummary, advance: Callable[[], None],
                   failed: Callable[[InputImage, str], None], ident: Optional[dict] = None) -> None:
    """Every kept frame of one video: its files, and the overlay video renamed into place at the end. A video
    that cannot be read (or breaks off) is reported and its partial outputs dropped; a rerun redoes it."""
    try:
        fps = video_info(item.path).fps / opts.vid_stride
    except VitsegError as err:
        failed(item, str(err))
        advance()
        return
    writer.start_video(item, fps)
    frames = 0
    try:
        for pred in iter_video_predictions(model, item.path, settings, ctx.device, stride=opts.vid_stride,
                                           workers=opts.workers, want_probs="probs" in opts.save, keep_image=True):
            if pred.error:
                writer.abort_video()
                failed(item, pred.error)
                return
            writer.put_frame(pred)
            frames += 1
            advance()
    except BaseException:
        writer.abort_video()
        raise
    writer.finish_video(ident, frames)
    summary.processed += 1
    summary.frames += frames


def _finish(opts: PredictOptions, ctx: DistContext, spec, settings: InferenceSettings, inputs: list,
            summary: PredictSummary, started: float, t0: float, load_s: float, infer_start: float, status: str,
            gather: bool) -> None:
    """Merge every rank's counts into `summary` on rank 0 (a collective, when `gather`) and write predict.json."""
    summary.infer_s = time.perf_counter() - infer_start
    summary.elapsed_s = time.perf_counter() - t0
    if opts.remote is not None:
        summary.bytes_written = opts.remote.bytes_written
    parts = ctx.gather(summary.counts(ctx.rank)) if gather else [summary.counts(ctx.rank)]
    if not ctx.is_main:
        if opts.remote is not None:
            opts.remote.publish_records()
        return
    order = {str(item.path): i for i, item in enumerate(inputs)}
    summary.processed = sum(p["processed"] for p in parts)
    summary.skipped = sum(p["skipped"] for p in parts)
    summary.frames = sum(p["frames"] for p in parts)
    summary.failed = sorted((f for p in parts for f in p["failed"]), key=lambda f: order.get(f["path"], -1))
    summary.infer_s = max(p["infer_s"] for p in parts)
    summary.bytes_read = sum(p["bytes_read"] for p in parts)
    summary.bytes_written = sum(p["bytes_written"] for p in parts)
    summary.ranks = [{k: (len(v) if k == "failed" else v) for k, v in p.items()
                      if k not in ("infer_s", "bytes_read", "bytes_written")} for p in parts]
    weights = opts.weights if opts.weights is not None else default_weights_path()  # as given: a file or zoo name
    record = {
        "vitseg_version": __version__,
        "command": "predict",
        "status": status,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "weights": str(weights),
        "backend": opts.backend,
        "device": str(ctx.device),
        "spec": spec.to_dict(),
        "settings": settings.to_dict(),
        "sources": [redact(s) for s in opts.sources],
        "save": list(opts.save),
        "vid_stride": opts.vid_stride,
        "inputs": len(inputs),
        "processed": summary.processed,
        "skipped": summary.skipped,
        **({"derived": summary.derived} if summary.derived else {}),
        "frames": summary.frames,
        "failed": summary.failed,
        "world_size": ctx.world_size,
        **({"shard": {"index": opts.shard.index, "count": opts.shard.count}} if opts.shard else {}),
        "ranks": summary.ranks,
        **({"error": summary.write_error} if summary.write_error else {}),
        "timings": {"total_s": round(summary.elapsed_s, 3), "load_s": round(load_s, 3),
                    "inference_s": round(summary.infer_s, 3),
                    "images_per_s": round(summary.processed / summary.infer_s, 3) if summary.infer_s > 0 else None,
                    **traffic_record(summary.bytes_read, summary.bytes_written, summary.infer_s)},
    }
    atomic_write_bytes(Path(opts.out) / record_name(opts.shard), (json.dumps(record, indent=2) + "\n").encode())
    if opts.remote is not None:
        opts.remote.publish_records()
