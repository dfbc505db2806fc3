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
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from rich.console import Console
from rich.text import Text

from .._version import __version__
from ..data.inputs import InputImage, collect_inputs
from ..data.io import atomic_write_bytes, encoding_problem, grey_to_rgb_uint8, read_image, refuse_non_folder
from ..data.shards import Shard, shard_items
from ..data.video import video_info
from ..errors import VitsegError
from .common import default_weights_path, load_backend, weights_file
from .device import rank_device, resolve_device
from .distributed import DistContext, init_distributed
from .inference import InferenceSettings, iter_predictions, iter_video_predictions, predict_array
from .onnx_backend import choose_backend
from .model_info import announce_model
from .outputs import DEFAULT_SAVE, OutputWriter, Prediction, claim_output_folder, is_done, output_paths
from .progress import ProgressReporter, StreamConsole
from .records import record_name
from .rle import RleLog, done_inputs


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
    out: Path = Path("vitseg-out")
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


@dataclass
class PredictSummary:
    """One rank's counts (or, on rank 0 after the run, every rank's together)."""
    processed: int = 0
    skipped: int = 0
    frames: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    interrupted: bool = False
    elapsed_s: float = 0.0
    infer_s: float = 0.0
    ranks: list[dict[str, int]] = field(default_factory=list)
    write_error: Optional[str] = None

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def counts(self, rank: int) -> dict[str, Any]:
        return {"rank": rank, "processed": self.processed, "skipped": self.skipped, "frames": self.frames,
                "failed": list(self.failed), "infer_s": self.infer_s}


def _load_backend(opts: PredictOptions, device, note):
    return load_backend(opts.backend, opts.weights, opts.spec, device, note=note, overrides=opts.overrides,
                        spec_overrides=opts.spec_overrides, backbone_weights=opts.backbone_weights)


def _prepare(opts: PredictOptions, ctx: DistContext, note) -> tuple[Any, InferenceSettings, Optional[list]]:
    """Every rank: the model and settings, checked. Rank 0 also lists the inputs and claims the output folder
    (fingerprint); nothing is written before all of it succeeded."""
    out = refuse_non_folder(opts.out, "--out")
    if not 0.0 <= opts.alpha <= 1.0:
        raise VitsegError(f"--alpha {opts.alpha}: must be between 0 and 1")
    if opts.vid_stride < 1:
        raise VitsegError(f"--vid-stride {opts.vid_stride}: must be at least 1")
    inputs = None
    if ctx.is_main:
        inputs = collect_inputs(opts.sources, out, videos=True)
        if not inputs:
            raise VitsegError(f"no images or videos found in {', '.join(opts.sources)}")
    model = _load_backend(opts, ctx.device, note)
    settings = InferenceSettings.from_spec(model.spec, **opts.overrides)
    settings.check_device(ctx.device)
    if ctx.is_main:
        claim_output_folder(out, weights_file(opts.weights), opts.backend, model.spec.to_dict(), settings.to_dict(),
                            opts.save, opts.alpha, opts.overwrite, vid_stride=opts.vid_stride,
                            clean=opts.shard is None)
    return model, settings, inputs


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
    """Predict every input (this rank's share under torchrun). The summary is every rank's on rank 0."""
    console = console or StreamConsole(stderr=True)
    opts = replace(opts, backend=choose_backend(opts.backend, opts.weights))
    ctx = init_distributed(rank_device(opts.device))
    try:
        return _run(opts, ctx, console)
    finally:
        ctx.close()


def _run(opts: PredictOptions, ctx: DistContext, console: Console) -> PredictSummary:
    started = time.time()
    t0 = time.perf_counter()
    out = Path(opts.out)
    talk = not opts.quiet and ctx.is_main
    note = (lambda line: console.print(Text("note: " + line, style="yellow"), soft_wrap=True)) if talk else None
    model, settings, inputs = ctx.agree(lambda: _prepare(opts, ctx, note))
    if talk:
        announce_model(model, opts.weights, opts.spec)
    inputs = ctx.broadcast(inputs)
    load_s = time.perf_counter() - t0

    inputs = shard_items(inputs, opts.shard)  # a Slurm array task's share; the ranks split it
    summary = PredictSummary()
    images, videos = _todo(opts, ctx, inputs, summary)
    total = len(images) + sum(_frame_estimate(v.path, opts.vid_stride) for v in videos)

    rle = RleLog(out, _part(opts.shard, ctx)) if "rle" in opts.save else None
    writer = OutputWriter(out, opts.save, model.spec.palette, opts.alpha, model.spec.model.num_classes, rle=rle)
    where = f" (rank 0 of {ctx.world_size})" if ctx.active else ""
    where += f" shard {opts.shard}" if opts.shard else ""
    progress = ProgressReporter("predict" + where, total, unit="img", enabled=talk, console=console)
    want_probs, keep_image = "probs" in opts.save, "overlay" in opts.save
    infer_start = time.perf_counter()

    def failed(path: Path, error: str) -> None:
        summary.failed.append({"path": str(path), "error": error})
        progress.print(Text("failed: " + error, style="red"))  # shown with --quiet too: it is an error

    try:
        with progress:
            def advance() -> None:
                progress.advance(failed=len(summary.failed))

            preds = iter_predictions(model, [i.path for i in images], settings, ctx.device, workers=opts.workers,
                                     want_probs=want_probs, keep_image=keep_image)
            for item, pred in zip(images, preds):
                error = pred.error or _unwritable(out, item, pred, opts.save)
                if error:
                    failed(item.path, error)
                else:
                    writer.put(pred, item)
                    summary.processed += 1
                advance()
            for item in videos:
                _predict_video(model, item, settings, ctx, opts, writer, summary, advance, failed)
    except BaseException as err:
        summary.interrupted = isinstance(err, KeyboardInterrupt)
        writer.close()  # what was queued is whole: let it land
        _settle(writer, summary)
        _finish(opts, ctx, model, settings, inputs, summary, started, t0, load_s, infer_start,
                status="interrupted" if summary.interrupted else "failed", gather=False)
        raise
    writer.close()
    _settle(writer, summary)
    status = "done" if writer.error is None else "failed"
    try:
        # a rank that dies in a collective ends this one too (friendly_errors); rank 0 records what it knows
        _finish(opts, ctx, model, settings, inputs, summary, started, t0, load_s, infer_start, status, gather=True)
    except BaseException:
        _finish(opts, ctx, model, settings, inputs, summary, started, t0, load_s, infer_start,
                status="failed", gather=False)
        raise
    writer.check()
    if talk:
        rate = summary.processed / max(summary.infer_s, 1e-9)
        frames = f", {summary.frames} video frames" if summary.frames else ""
        ranks = f" on {ctx.world_size} processes" if ctx.active else ""
        StreamConsole().print(f"processed {summary.processed}{frames}, skipped {summary.skipped} (done before), "
                              f"failed {len(summary.failed)} in {summary.elapsed_s:.1f} s ({rate:.2f} img/s){ranks} "
                              f"-> {out}")  # the result: stdout
    return summary


def _unwritable(out: Path, item: InputImage, pred: Prediction, save: tuple[str, ...]) -> Optional[str]:
    """Why an image's outputs cannot be encoded (a 1x100000 overlay as .jpg): the image is reported, not the run."""
    problem = encoding_problem(output_paths(out, item.rel, save).values(), *pred.labels.shape[:2])
    return f"{item.path}: {problem}" if problem else None


def _todo(opts: PredictOptions, ctx: DistContext, inputs: list, summary: PredictSummary) -> tuple[list, list]:
    """This rank's images and videos still to do; those done before are counted as skipped."""
    out = Path(opts.out)
    rle_done = done_inputs(out) if "rle" in opts.save and not opts.overwrite else None
    todo = []
    for i in ctx.shard(inputs):
        if not opts.overwrite and is_done(out, inputs[i], opts.save, rle_done):
            summary.skipped += 1
        else:
            todo.append(inputs[i])
    return [item for item in todo if not item.is_video], [item for item in todo if item.is_video]


def _part(shard: Optional[Shard], ctx: DistContext) -> str:
    """This process's name among the shards and ranks: its RLE log's."""
    part = shard.tag if shard else "0-of-1"
    return part + (f"-rank{ctx.rank}-of-{ctx.world_size}" if ctx.active else "")


def _predict_video(model, item: InputImage, settings: InferenceSettings, ctx: DistContext, opts: PredictOptions,
                   writer: OutputWriter, summary: PredictSummary, advance: Callable[[], None],
                   failed: Callable[[Path, str], None]) -> None:
    """Every kept frame of one video: its files, and the overlay video renamed into place at the end. A video
    that cannot be read (or breaks off) is reported and its partial outputs dropped; a rerun redoes it."""
    try:
        fps = video_info(item.path).fps / opts.vid_stride
    except VitsegError as err:
        failed(item.path, str(err))
        advance()
        return
    writer.start_video(item, fps)
    frames = 0
    try:
        for pred in iter_video_predictions(model, item.path, settings, ctx.device, stride=opts.vid_stride,
                                           workers=opts.workers, want_probs="probs" in opts.save, keep_image=True):
            if pred.error:
                writer.abort_video()
                failed(item.path, pred.error)
                return
            writer.put_frame(pred)
            frames += 1
            advance()
    except BaseException:
        writer.abort_video()
        raise
    writer.finish_video()
    summary.processed += 1
    summary.frames += frames


def _finish(opts: PredictOptions, ctx: DistContext, model, settings: InferenceSettings, inputs: list,
            summary: PredictSummary, started: float, t0: float, load_s: float, infer_start: float, status: str,
            gather: bool) -> None:
    """Merge every rank's counts into `summary` on rank 0 (a collective, when `gather`) and write predict.json."""
    summary.infer_s = time.perf_counter() - infer_start
    summary.elapsed_s = time.perf_counter() - t0
    parts = ctx.gather(summary.counts(ctx.rank)) if gather else [summary.counts(ctx.rank)]
    if not ctx.is_main:
        return
    order = {str(item.path): i for i, item in enumerate(inputs)}
    summary.processed = sum(p["processed"] for p in parts)
    summary.skipped = sum(p["skipped"] for p in parts)
    summary.frames = sum(p["frames"] for p in parts)
    summary.failed = sorted((f for p in parts for f in p["failed"]), key=lambda f: order.get(f["path"], -1))
    summary.infer_s = max(p["infer_s"] for p in parts)
    summary.ranks = [{k: (len(v) if k == "failed" else v) for k, v in p.items() if k != "infer_s"} for p in parts]
    weights = opts.weights if opts.weights is not None else default_weights_path()  # as given: a file or zoo name
    record = {
        "vitseg_version": __version__,
        "command": "predict",
        "status": status,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "weights": str(weights),
        "backend": opts.backend,
        "device": str(ctx.device),
        "spec": model.spec.to_dict(),
        "settings": settings.to_dict(),
        "sources": list(opts.sources),
        "save": list(opts.save),
        "vid_stride": opts.vid_stride,
        "inputs": len(inputs),
        "processed": summary.processed,
        "skipped": summary.skipped,
        "frames": summary.frames,
        "failed": summary.failed,
        "world_size": ctx.world_size,
        **({"shard": {"index": opts.shard.index, "count": opts.shard.count}} if opts.shard else {}),
        "ranks": summary.ranks,
        **({"error": summary.write_error} if summary.write_error else {}),
        "timings": {"total_s": round(summary.elapsed_s, 3), "load_s": round(load_s, 3),
                    "inference_s": round(summary.infer_s, 3),
                    "images_per_s": round(summary.processed / summary.infer_s, 3) if summary.infer_s > 0 else None},
    }
    atomic_write_bytes(Path(opts.out) / record_name(opts.shard), (json.dumps(record, indent=2) + "\n").encode())
