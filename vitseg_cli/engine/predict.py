"""`vitseg predict`: segment every image and video of a dataset into OUT, resumable, robust to bad files, in one
process or across the ranks of a torchrun job.

Inputs (files, folders searched recursively, globs, `.txt` lists) map to `<rel>`, their path relative to their source
folder without extension; outputs go to `OUT/{masks,color,overlay,probs}/<rel>.*` (DESIGN §4). A video gives
`OUT/video/<rel>.mp4` (the overlay video) and per frame `OUT/{masks,color,probs}/<rel>/<frame:06d>.*`.

Every file is written atomically by a pool of writer threads (a video under a temporary name, renamed when whole), so
a killed run leaves only whole files: an input whose outputs all exist is skipped on the next run (resume for free),
provided the folder's fingerprint (engine/fingerprint.py) says they were made the same way. Bad files are reported
and counted, and the run goes on.

Under torchrun, rank 0 lists the inputs once; each rank takes `inputs[rank::world]` on its own device and writes into
the same OUT; rank 0 writes the one merged `OUT/predict.json`. One process is the world_size = 1 case of the same code.
"""

from __future__ import annotations

import glob
import io
import json
import math
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
from rich.console import Console
from rich.text import Text

from .. import __version__
from ..data.io import atomic_write_bytes, is_image_path, prepare_output_dir, safe_relpath, write_image
from ..data.video import VideoOutput, is_video_path, video_info
from ..errors import VitsegError, did_you_mean, not_one_of
from ..viz import colorize, overlay
from .common import default_weights_path, load_inference_model
from .distributed import DistContext, init_distributed, rank_device
from .fingerprint import check_output_folder, make_fingerprint
from .inference import InferenceSettings, Prediction, iter_predictions, iter_video_predictions
from .progress import ProgressReporter

SAVE_KINDS = ("masks", "color", "overlay", "probs")
DEFAULT_SAVE = ("masks", "color", "overlay")
OUTPUT_DIRS = SAVE_KINDS + ("video",)
_SUFFIX = {"masks": ".png", "color": ".png", "overlay": ".jpg", "probs": ".npz"}


# ----------------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class InputImage:
    path: Path
    rel: str  # output name relative to OUT/<kind>/, without extension, '/'-separated

    @property
    def is_video(self) -> bool:
        return is_video_path(self.path)


def _has_magic(text: str) -> bool:
    return any(c in text for c in "*?[")


def _glob_base(pattern: Path) -> Path:
    """The folder part of a glob before its first wildcard: match names are relative to it."""
    fixed = []
    for part in pattern.parts:
        if _has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _is_input(path: Path, videos: bool) -> bool:
    return is_image_path(path) or (videos and is_video_path(path))


def _folder_images(folder: Path, out_dir: Path, videos: bool) -> list[Path]:
    found = [p for p in folder.rglob("*") if _is_input(p, videos) and p.is_file() and not _inside(p, out_dir)]
    return sorted(found)


def _list_file(path: Path) -> list[tuple[Path, Path]]:
    base = path.parent
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise VitsegError(f"{path}: cannot read the list of images ({err})") from None
    out = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = Path(line).expanduser()
        p = p if p.is_absolute() else base / p
        out.append((p, base if _inside(p, base) else p.parent))
    return out


def collect_inputs(sources: Sequence[str], out_dir: Path, videos: bool = False) -> list[InputImage]:
    """The images (and videos, if asked) named by the sources, each with its output name; files under `out_dir` are
    never inputs."""
    found: list[tuple[Path, Path]] = []  # (file, the folder its name is relative to)
    for source in sources:
        path = Path(source).expanduser()
        _refuse_inside_out(source, _glob_base(path) if _has_magic(source) else path, out_dir)
        if path.is_dir():
            found += [(p, path) for p in _folder_images(path, out_dir, videos)]
        elif path.is_file() and path.suffix.lower() == ".txt":
            found += _list_file(path)
        elif path.is_file():
            found.append((path, path.parent))
        elif _has_magic(source):
            base = _glob_base(path)
            matches = sorted(Path(m) for m in glob.glob(str(path), recursive=True))
            found += [(m, base) for m in matches if m.is_file() and _is_input(m, videos) and not _inside(m, out_dir)]
        else:
            raise VitsegError(f"{source}: no such file or folder")
    unique: dict[Path, tuple[Path, Path]] = {}
    for p, base in found:
        _refuse_inside_out(p, p, out_dir)
        unique.setdefault(p.resolve(), (p, base))
    return _name_outputs(list(unique.values()))


def _refuse_inside_out(source: "str | Path", path: Path, out_dir: Path) -> None:
    """Outputs must never land on inputs: `predict DATASET/images --out DATASET` would overwrite its masks/."""
    if _inside(path, out_dir):
        raise VitsegError(f"{source}: is inside --out {out_dir}, where outputs could overwrite inputs (a dataset's "
                          "masks/, say); choose an --out folder outside the sources")


def _name_outputs(found: list[tuple[Path, Path]]) -> list[InputImage]:
    rel_paths = [p.resolve().relative_to(base.resolve()) if _inside(p, base) else Path(p.name) for p, base in found]
    stems = [r.with_suffix("").as_posix() for r in rel_paths]
    clashing = {s for s in stems if stems.count(s) > 1}
    # a.jpg and a.png in one folder would both write masks/a.png: keep their extensions in their names
    names = [r.as_posix() if s in clashing else s for r, s in zip(rel_paths, stems)]
    seen: dict[str, Path] = {}
    for (p, _), name in zip(found, names):
        if name in seen:
            raise VitsegError(f"{p} and {seen[name]} would both be written as {name}: give their folders as "
                              "separate runs with different --out")
        seen[name] = p
    # a video's frames are written as <name>/<frame>.*: no other input may be named inside that folder
    folders = {name.rsplit("/", k)[0]: name for name in names for k in range(1, name.count("/") + 1)}
    for (p, _), name in zip(found, names):
        if is_video_path(p) and name in folders:
            inside = folders[name]
            raise VitsegError(f"{p}: its frames would be written where {seen[inside]} goes ({inside}): give them "
                              "as separate runs with different --out")
    return [InputImage(p, name) for (p, _), name in zip(found, names)]


def output_paths(out: Path, rel: str, save: Sequence[str]) -> dict[str, Path]:
    rel = safe_relpath(rel)  # names from split lists or COCO ids may hold '../'
    return {kind: out / kind / (rel + _SUFFIX[kind]) for kind in save}


def video_path(out: Path, rel: str) -> Path:
    return out / "video" / (safe_relpath(rel) + ".mp4")


def frame_paths(out: Path, rel: str, frame: int, save: Sequence[str]) -> dict[str, Path]:
    """A video frame's files: the overlay goes into the video instead."""
    return output_paths(out, f"{rel}/{frame:06d}", [k for k in save if k != "overlay"])


def is_done(out: Path, item: InputImage, save: Sequence[str]) -> bool:
    """Whether a run already wrote all of the input's outputs (a video's file exists only once it is whole)."""
    if item.is_video:
        return video_path(out, item.rel).exists()
    return all(p.exists() for p in output_paths(out, item.rel, save).values())


def remove_stale_temporaries(out: Path) -> int:
    """Delete the temporary files a killed run left (`.<name>.*.part` of `atomic_write_bytes`, `.<stem>.part.mp4`
    of a video)."""
    removed = 0
    for kind in OUTPUT_DIRS:
        folder = out / kind
        if folder.is_dir():
            for tmp in [*folder.rglob(".*.part"), *folder.rglob(".*.part.*")]:
                tmp.unlink(missing_ok=True)
                removed += 1
    return removed


# ----------------------------------------------------------------------------------------------------- writing


def mask_dtype(num_classes: int) -> type:
    return np.uint16 if num_classes > 255 else np.uint8


def write_outputs(paths: dict[str, Path], labels: np.ndarray, *, image: Optional[np.ndarray],
                  probs: Optional[np.ndarray], palette, alpha: float, mask_dtype: type, label_offset: int = 0) -> None:
    """Write one prediction's files (kind -> path, from `output_paths`), each atomically. `label_offset` is added to
    the mask values only (1: ADE20K's 1-based submission labels)."""
    if "probs" in paths:
        buf = io.BytesIO()
        np.savez_compressed(buf, probs=probs)
        atomic_write_bytes(paths["probs"], buf.getvalue())
    if "overlay" in paths:
        write_image(paths["overlay"], overlay(image, labels, palette, alpha))
    if "color" in paths:
        write_image(paths["color"], colorize(labels, palette))
    if "masks" in paths:
        masks = labels.astype(mask_dtype, copy=False)
        write_image(paths["masks"], masks + mask_dtype(label_offset) if label_offset else masks)


def default_writer_threads() -> int:
    """PNG/JPEG encoding releases the GIL: half the cores (at most 4) encode while the others feed the model."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


class OutputWriter:
    """Encodes and writes predictions in a pool of threads; at most a few jobs per thread wait, so memory stays
    bounded. A video's frames go into its overlay video in order, through one more thread. The first failure is
    kept and re-raised by `check`."""

    def __init__(self, out: Path, save: Sequence[str], palette, alpha: float, num_classes: int,
                 label_offset: int = 0, threads: Optional[int] = None):
        self.out, self.save, self.palette, self.alpha = out, tuple(save), palette, alpha
        self.label_offset = label_offset
        self.mask_dtype = mask_dtype(num_classes + label_offset)
        threads = threads or default_writer_threads()
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="vitseg-writer")
        self.video_pool = ThreadPoolExecutor(1, thread_name_prefix="vitseg-video")
        self.slots = threading.BoundedSemaphore(2 * threads + 2)
        self.error: Optional[BaseException] = None
        self.video: Optional[VideoOutput] = None
        self.video_args: Optional[tuple[InputImage, float]] = None
        self.video_jobs: list[Future] = []
        self.submitted = self.written = 0  # images given to put / whose outputs all landed
        self._count = threading.Lock()

    def _submit(self, pool: ThreadPoolExecutor, job: Callable[..., None], *args) -> Future:
        self.check()
        self.slots.acquire()
        future = pool.submit(self._guarded, job, *args)
        future.add_done_callback(lambda _: self.slots.release())
        return future

    def _guarded(self, job: Callable[..., None], *args) -> None:
        if self.error is not None:
            return
        try:
            job(*args)
        except BaseException as err:  # reported in the main thread by check()
            if self.error is None:
                self.error = err

    def _write_files(self, pred: Prediction, paths: dict[str, Path]) -> None:
        write_outputs(paths, pred.labels, image=pred.image, probs=pred.probs, palette=self.palette,
                      alpha=self.alpha, mask_dtype=self.mask_dtype, label_offset=self.label_offset)

    def put(self, pred: Prediction, item: InputImage) -> None:
        self._submit(self.pool, self._write_image, pred, output_paths(self.out, item.rel, self.save))
        self.submitted += 1

    def _write_image(self, pred: Prediction, paths: dict[str, Path]) -> None:
        self._write_files(pred, paths)
        with self._count:
            self.written += 1

    # a video: start_video, put_frame for each frame, then finish_video (or abort_video)

    def start_video(self, item: InputImage, fps: float) -> None:
        self.check()
        self.video_args, self.video, self.video_jobs = (item, fps), None, []

    def _video_frame(self, pred: Prediction) -> None:
        if self.video is None:  # sized by the first decoded frame
            item, fps = self.video_args
            h, w = pred.image.shape[:2]
            self.video = VideoOutput(video_path(self.out, item.rel), fps, w, h)
        self.video.write(overlay(pred.image, pred.labels, self.palette, self.alpha))

    def put_frame(self, pred: Prediction) -> None:
        item = self.video_args[0]
        self.video_jobs.append(self._submit(self.pool, self._write_files, pred,
                                            frame_paths(self.out, item.rel, pred.frame, self.save)))
        self.video_jobs.append(self._submit(self.video_pool, self._video_frame, pred))

    def finish_video(self) -> None:
        """Rename the video into place once all its frames' files are written."""
        wait(self.video_jobs)
        self.video_jobs = []
        if self.error is None and self.video is not None:
            self.video.finish()
            self.video = None
        self.abort_video()
        self.check()

    def abort_video(self) -> None:
        wait(self.video_jobs)
        self.video_jobs = []
        if self.video is not None:
            self.video.abort()
            self.video = None
        self.video_args = None

    def check(self) -> None:
        if self.error is not None:
            err = self.error
            raise VitsegError(f"cannot write outputs: {err}") if not isinstance(err, VitsegError) else err

    def close(self) -> None:
        """Let every queued file land (they are whole), drop an unfinished video."""
        self.pool.shutdown(wait=True)
        self.video_pool.shutdown(wait=True)
        self.abort_video()


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
    backend: str = "torch"
    vid_stride: int = 1


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


def parse_save(text: str) -> tuple[str, ...]:
    kinds = tuple(dict.fromkeys(k.strip().lower() for k in text.split(",") if k.strip()))
    bad = [k for k in kinds if k not in SAVE_KINDS]
    if bad or not kinds:
        raise VitsegError(f"--save: {', '.join(bad) or 'nothing'} is not one of {', '.join(SAVE_KINDS)}"
                          f"{did_you_mean(bad[0], SAVE_KINDS) if bad else ''}")
    return kinds


def _load_backend(opts: PredictOptions, device, note):
    if opts.backend == "torch":
        return load_inference_model(opts.weights, opts.spec, device, note=note, overrides=opts.spec_overrides,
                                    backbone_weights=opts.backbone_weights)
    if opts.backend != "onnx":
        raise not_one_of("--backend", opts.backend, ("torch", "onnx"))
    if opts.weights is None:
        raise VitsegError("--backend onnx needs --weights MODEL.onnx")
    if opts.overrides.get("half"):
        raise VitsegError("--half is for --backend torch (an ONNX model runs in the precision it was exported in)")
    if opts.overrides.get("compile"):
        raise VitsegError("--compile is for --backend torch")
    if opts.spec_overrides:
        raise VitsegError("--set is for --backend torch (an ONNX model's spec was fixed at export)")
    try:
        from .onnx_backend import OnnxSegmentor
    except ImportError as err:
        raise VitsegError(f"--backend onnx is not available ({err}); install the [onnx] extra or use "
                          "--backend torch") from None
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.type == "cuda" else None
    # slide windows at the image edges can be smaller than the exported size: let them be padded
    return OnnxSegmentor(opts.weights, spec=opts.spec, providers=providers, allow_pad=True)


def _weights_path(opts: PredictOptions) -> Path:
    """The weights file of the run (a zoo name resolves to its cached, converted file)."""
    from ..zoo import resolve_weights

    return resolve_weights(opts.weights) if opts.weights is not None else default_weights_path()


def _prepare(opts: PredictOptions, ctx: DistContext, note) -> tuple[Any, InferenceSettings, Optional[list]]:
    """Every rank: the model and settings, checked. Rank 0 also lists the inputs and claims the output folder
    (fingerprint); nothing is written before all of it succeeded."""
    out = Path(opts.out)
    if out.exists() and not out.is_dir():
        raise VitsegError(f"--out {out}: exists and is not a folder")
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
        fingerprint = make_fingerprint(_weights_path(opts), opts.backend, model.spec.to_dict(), settings.to_dict(),
                                       opts.save, opts.alpha, opts.vid_stride)
        prepare_output_dir(out)
        check_output_folder(out, fingerprint, opts.overwrite, OUTPUT_DIRS)
        remove_stale_temporaries(out)
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
    console = console or Console(stderr=True, highlight=False)
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
    inputs = ctx.broadcast(inputs)
    load_s = time.perf_counter() - t0

    summary = PredictSummary()
    todo = []
    for i in ctx.shard(inputs):
        if not opts.overwrite and is_done(out, inputs[i], opts.save):
            summary.skipped += 1
        else:
            todo.append(inputs[i])
    images = [item for item in todo if not item.is_video]
    videos = [item for item in todo if item.is_video]
    total = len(images) + sum(_frame_estimate(v.path, opts.vid_stride) for v in videos)

    writer = OutputWriter(out, opts.save, model.spec.palette, opts.alpha, model.spec.model.num_classes)
    where = f" (rank 0 of {ctx.world_size})" if ctx.active else ""
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
                if pred.error:
                    failed(item.path, pred.error)
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
        console.print(f"processed {summary.processed}{frames}, skipped {summary.skipped} (done before), failed "
                      f"{len(summary.failed)} in {summary.elapsed_s:.1f} s ({rate:.2f} img/s){ranks} -> {out}",
                      markup=False)
    return summary


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
        "ranks": summary.ranks,
        **({"error": summary.write_error} if summary.write_error else {}),
        "timings": {"total_s": round(summary.elapsed_s, 3), "load_s": round(load_s, 3),
                    "inference_s": round(summary.infer_s, 3),
                    "images_per_s": round(summary.processed / summary.infer_s, 3) if summary.infer_s > 0 else None},
    }
    atomic_write_bytes(Path(opts.out) / "predict.json", (json.dumps(record, indent=2) + "\n").encode())
