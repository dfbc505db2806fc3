"""What a prediction becomes on disk: the result type, the output folder's layout, and the threaded writer.

`OUT/{masks,color,overlay,probs}/<rel>.*` per image; a video gives `OUT/video/<rel>.mp4` (the overlay video) and per
frame `OUT/{masks,color,probs}/<rel>/<frame:06d>.*`. Every file is written atomically (a video under a temporary
name, renamed when whole), so a killed run leaves only whole files; an input whose outputs all exist is done.
The folder is claimed with a fingerprint (`engine/fingerprint.py`) before anything is written, so that a resumed run
only trusts outputs made the same way; each image's line in the manifest (`engine/manifest.py`) is appended before
its last file lands, so that every file on disk has its line.
"""

from __future__ import annotations

import io
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ..data.inputs import InputImage
from ..data.io import atomic_write_bytes, prepare_output_dir, refuse_non_folder, safe_relpath, write_image
from ..data.video import VideoOutput
from ..errors import VitsegError, did_you_mean
from ..viz import colorize
from ..viz import overlay as blend
from . import result_formats as formats
from .fingerprint import check_output_folder, make_fingerprint
from .manifest import ManifestLog, image_line
from .rle import RleLog

SAVE_KINDS = ("masks", "color", "overlay", "probs", "rle")
DEFAULT_SAVE = ("masks", "color", "overlay")
OUTPUT_DIRS = SAVE_KINDS + ("video",)
RECORDS = ("manifest*.jsonl", "predict.json", "predict-*-of-*.json")  # a run's records, beside its output folders
_SUFFIX = {"masks": ".png", "color": ".png", "overlay": ".jpg", "probs": ".npz"}


# ----------------------------------------------------------------------------------------------------- the result


@dataclass
class Prediction:
    """One image's (or video frame's) segmentation: what the inference engine yields, what `vitseg_cli.predict`
    returns, and what the writer writes. A file that could not be read or segmented has `error` set and no labels."""

    labels: Optional[np.ndarray]  # (H, W) class indices at the image's size; uint8, uint16 past 255 classes
    probs: Optional[np.ndarray] = None  # (K, H, W) float16 averaged softmax, when asked for
    image: Optional[np.ndarray] = None  # (H, W, 3) RGB uint8 as segmented, when kept
    path: Optional[Path] = None  # the file it came from, when it came from one
    error: Optional[str] = None
    timings: dict[str, float] = field(default_factory=dict)
    frame: Optional[int] = None  # a video frame's index in the video, counting every frame
    class_names: list[str] = field(default_factory=list)
    palette: list[tuple[int, int, int]] = field(default_factory=list)
    top1: Optional[tuple[float, float]] = None  # (mean, minimum) over the pixels of the top-1 probability

    @property
    def ok(self) -> bool:
        return self.error is None

    def color(self) -> np.ndarray:
        """The label map in palette colours, (H, W, 3) RGB uint8."""
        return colorize(self.labels, self.palette)

    def overlay(self, alpha: float = 0.5) -> np.ndarray:
        """The image with the coloured label map blended over it, (H, W, 3) RGB uint8."""
        return blend(self.image, self.labels, self.palette, alpha)

    def classes_present(self) -> list[str]:
        return [self.class_names[i] for i in np.unique(self.labels)]

    def areas(self, fraction: bool = False) -> dict[str, float]:
        """Class name -> pixel count (or, with `fraction`, share of the image's pixels), for each class present."""
        return formats.class_areas(self.labels, self.class_names, fraction)

    def to_rle(self) -> dict[str, dict]:
        """Class name -> COCO RLE ({"size": [H, W], "counts": text}, pycocotools' encoding) of each class present."""
        return formats.class_rles(self.labels, self.class_names)

    def polygons(self) -> dict[str, list[list[tuple[int, int]]]]:
        """Class name -> outer contours of its regions (cv2.findContours), each a list of (x, y) points."""
        return formats.class_polygons(self.labels, self.class_names)

    def to_json(self, rle: bool = False, indent: Optional[int] = None) -> str:
        """JSON text: path, size [H, W], and per class present id, name, pixels, fraction (and rle, when asked)."""
        return formats.to_json(self.labels, self.class_names, self.path, rle=rle, indent=indent, error=self.error,
                               frame=self.frame)

    def __repr__(self) -> str:  # one line: the arrays are not printed
        return formats.describe(self.labels, self.class_names, self.path, self.error, self.probs is not None)

    def save(self, out: "str | Path", name: Optional[str] = None,
             kinds: Sequence[str] = ("masks", "color", "overlay"), alpha: float = 0.5) -> dict[str, Path]:
        """Write what `vitseg predict --save KINDS` writes for this image: `out/<kind>/<name>.<ext>` (name: the
        file's stem, else 'image'). Returns kind -> path."""
        bad = [k for k in kinds if k not in _SUFFIX]  # rle is a run's log, not one image's file
        if bad:
            raise VitsegError(f"save: {', '.join(bad)} is not one of {', '.join(_SUFFIX)}")
        if "probs" in kinds and self.probs is None:
            raise VitsegError("save: no probabilities to save (predict with probs=True)")
        name = name or (self.path.stem if self.path else "image")
        paths = output_paths(Path(out), name, tuple(kinds))
        write_outputs(paths, self.labels, image=self.image, probs=self.probs, palette=self.palette, alpha=alpha,
                      mask_dtype=mask_dtype(len(self.class_names)))
        return paths


# -------------------------------------------------------------------------------------------------- the folder


def parse_save(text: str) -> tuple[str, ...]:
    """`--save masks,probs` -> the kinds, checked."""
    kinds = tuple(dict.fromkeys(k.strip().lower() for k in text.split(",") if k.strip()))
    bad = [k for k in kinds if k not in SAVE_KINDS]
    if bad or not kinds:
        raise VitsegError(f"--save: {', '.join(bad) or 'nothing'} is not one of {', '.join(SAVE_KINDS)}"
                          f"{did_you_mean(bad[0], SAVE_KINDS) if bad else ''}")
    return kinds


def claim_output_folder(out: Path, weights: Path, backend: str, spec: dict[str, Any], settings: dict[str, Any],
                        save: Sequence[str], alpha: float, overwrite: bool, *, vid_stride: Optional[int] = None,
                        label_offset: int = 0, option: str = "--out", clean: bool = True) -> None:
    """Before anything is written: create the folder (proved writable), refuse it when it holds outputs made another
    way (unless `overwrite`, which removes what the earlier vitseg run wrote), record this run's fingerprint, drop a
    killed run's temporaries (unless not `clean`: shards running side by side would drop each other's files being
    written). `save` is not part of the fingerprint: a rerun may add kinds."""
    refuse_non_folder(out, option)
    fingerprint = make_fingerprint(weights, backend, spec, settings, alpha, vid_stride, label_offset)
    prepare_output_dir(out, option)
    check_output_folder(out, fingerprint, overwrite, OUTPUT_DIRS, option=option, records=RECORDS)
    if clean:
        remove_stale_temporaries(out)


def output_paths(out: Path, rel: str, save: Sequence[str]) -> dict[str, Path]:
    """The files of an input's outputs (kind -> path); `rle` goes into a shared log instead (`engine/rle.py`)."""
    rel = safe_relpath(rel)  # names from split lists or COCO ids may hold '../'
    return {kind: out / kind / (rel + _SUFFIX[kind]) for kind in save if kind in _SUFFIX}


def video_path(out: Path, rel: str) -> Path:
    return out / "video" / (safe_relpath(rel) + ".mp4")


def frame_paths(out: Path, rel: str, frame: int, save: Sequence[str]) -> dict[str, Path]:
    """A video frame's files: the overlay goes into the video instead."""
    return output_paths(out, f"{rel}/{frame:06d}", [k for k in save if k != "overlay"])


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
                  probs: Optional[np.ndarray], palette, alpha: float, mask_dtype: type, label_offset: int = 0,
                  before_last: Optional[Callable[[], None]] = None) -> None:
    """Write one prediction's files (kind -> path, from `output_paths`), each atomically, the mask last.
    `label_offset` is added to the mask values only (1: ADE20K's 1-based submission labels). `before_last` runs
    just before the last file is written (the manifest line)."""
    jobs: list[Callable[[], None]] = []
    if "probs" in paths:
        def write_probs() -> None:
            buf = io.BytesIO()
            np.savez_compressed(buf, probs=probs)
            atomic_write_bytes(paths["probs"], buf.getvalue())
        jobs.append(write_probs)
    if "overlay" in paths:
        jobs.append(lambda: write_image(paths["overlay"], blend(image, labels, palette, alpha)))
    if "color" in paths:
        jobs.append(lambda: write_image(paths["color"], colorize(labels, palette)))
    if "masks" in paths:
        masks = labels.astype(mask_dtype, copy=False)
        jobs.append(lambda: write_image(paths["masks"], masks + mask_dtype(label_offset) if label_offset else masks))
    for i, job in enumerate(jobs):
        if before_last is not None and i == len(jobs) - 1:
            before_last()
        job()
    if before_last is not None and not jobs:
        before_last()


def default_writer_threads() -> int:
    """PNG/JPEG encoding releases the GIL: half the cores (at most 4) encode while the others feed the model."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


class OutputWriter:
    """Encodes and writes predictions in a pool of threads; at most a few jobs per thread wait, so memory stays
    bounded. A video's frames go into its overlay video in order, through one more thread. The first failure is
    kept and re-raised by `check`."""

    def __init__(self, out: Path, save: Sequence[str], palette, alpha: float, num_classes: int,
                 label_offset: int = 0, threads: Optional[int] = None, rle: Optional[RleLog] = None,
                 manifest: Optional[ManifestLog] = None, class_names: Sequence[str] = (),
                 publish: Optional[Callable[[list[Path]], None]] = None):
        self.out, self.save, self.palette, self.alpha = out, tuple(save), palette, alpha
        self.publish = publish  # called with each input's files once written (a URL --out uploads them)
        self.rle = rle  # images' RLE lines, appended once their files landed
        self.manifest, self.class_names = manifest, list(class_names)  # a line per image, before its last file
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

    def _write_files(self, pred: Prediction, paths: dict[str, Path],
                     before_last: Optional[Callable[[], None]] = None) -> None:
        write_outputs(paths, pred.labels, image=pred.image, probs=pred.probs, palette=self.palette,
                      alpha=self.alpha, mask_dtype=self.mask_dtype, label_offset=self.label_offset,
                      before_last=before_last)
        if self.publish is not None:
            self.publish(list(paths.values()))

    def relative(self, path: Path) -> str:
        return path.relative_to(self.out).as_posix()

    def put(self, pred: Prediction, item: InputImage, ident: Optional[dict] = None,
            keep: Optional[dict[str, str]] = None) -> None:
        """Write one image's files; with a manifest, its line (identity `ident`, outputs: these files and the
        earlier ones in `keep`) is appended before the last file."""
        self._submit(self.pool, self._write_image, pred, output_paths(self.out, item.rel, self.save), item,
                     ident, dict(keep or {}))
        self.submitted += 1

    def _write_image(self, pred: Prediction, paths: dict[str, Path], item: InputImage, ident: Optional[dict],
                     keep: dict[str, str]) -> None:
        before_last = None
        if self.manifest is not None:
            outputs = {**keep, **{kind: self.relative(p) for kind, p in paths.items()}}
            if self.rle is not None:
                outputs["rle"] = self.relative(self.rle.path)
            line = image_line(item, ident or {}, outputs, labels=pred.labels, class_names=self.class_names,
                              top1=pred.top1, infer_s=pred.timings.get("infer_s"))
            before_last = lambda: self.manifest.append(line)  # noqa: E731
        try:
            self._write_files(pred, paths, before_last)
        except BaseException as err:
            self.fail_line(item, ident, f"cannot write outputs: {err}")
            raise
        if self.rle is not None:
            self.rle.append(item.rel, pred.labels)
        with self._count:
            self.written += 1

    def fail_line(self, item: InputImage, ident: Optional[dict], error: str) -> None:
        """The manifest line of an input that failed (its outputs, if any, are not to be trusted)."""
        if self.manifest is not None:
            self.manifest.append(image_line(item, ident or {}, {}, status="failed", error=error))

    # a video: start_video, put_frame for each frame, then finish_video (or abort_video)

    def start_video(self, item: InputImage, fps: float) -> None:
        self.check()
        self.video_args, self.video, self.video_jobs = (item, fps), None, []

    def _video_frame(self, pred: Prediction) -> None:
        if self.video is None:  # sized by the first decoded frame
            item, fps = self.video_args
            h, w = pred.image.shape[:2]
            self.video = VideoOutput(video_path(self.out, item.rel), fps, w, h)
        self.video.write(blend(pred.image, pred.labels, self.palette, self.alpha))

    def put_frame(self, pred: Prediction) -> None:
        item = self.video_args[0]
        self.video_jobs.append(self._submit(self.pool, self._write_files, pred,
                                            frame_paths(self.out, item.rel, pred.frame, self.save)))
        self.video_jobs.append(self._submit(self.video_pool, self._video_frame, pred))

    def finish_video(self, ident: Optional[dict] = None, frames: int = 0) -> None:
        """Rename the video into place once all its frames' files are written (its manifest line just before)."""
        wait(self.video_jobs)
        self.video_jobs = []
        if self.error is None and self.video is not None:
            if self.manifest is not None:
                item = self.video_args[0]
                outputs = {"video": self.relative(video_path(self.out, item.rel)),
                           **{kind: f"{kind}/{item.rel}/" for kind in self.save if kind in _SUFFIX
                              and kind != "overlay"}}
                self.manifest.append(image_line(item, ident or {}, outputs, frames=frames))
            self.video.finish()
            if self.publish is not None:
                self.publish([video_path(self.out, self.video_args[0].rel)])
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
        if self.rle is not None:
            self.rle.close()
        if self.manifest is not None:
            self.manifest.close()
