"""`vitseg predict`: segment every image of a dataset into OUT, resumable and robust to bad files.

Inputs (files, folders searched recursively, globs, `.txt` lists) map to `<rel>`, their path relative to their source
folder without extension; outputs go to `OUT/{masks,color,overlay,probs}/<rel>.*` (DESIGN §4). Every file is written
atomically by a background writer thread, so a killed run leaves only whole files: an image whose outputs all exist is
skipped on the next run (resume for free). Bad files are reported and counted, and the run goes on.
`OUT/predict.json` records the run.
"""

from __future__ import annotations

import glob
import io
import json
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from rich.console import Console
from rich.text import Text

from .. import __version__
from ..data.io import atomic_write_bytes, is_image_path, prepare_output_dir, safe_relpath, write_image
from ..errors import VitsegError, did_you_mean, not_one_of
from ..viz import colorize, overlay
from .common import default_weights_path, load_inference_model
from .inference import InferenceSettings, Prediction, iter_predictions, resolve_device
from .progress import ProgressReporter

SAVE_KINDS = ("masks", "color", "overlay", "probs")
DEFAULT_SAVE = ("masks", "color", "overlay")
_SUFFIX = {"masks": ".png", "color": ".png", "overlay": ".jpg", "probs": ".npz"}


# ----------------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class InputImage:
    path: Path
    rel: str  # output name relative to OUT/<kind>/, without extension, '/'-separated


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


def _folder_images(folder: Path, out_dir: Path) -> list[Path]:
    found = [p for p in folder.rglob("*") if is_image_path(p) and p.is_file() and not _inside(p, out_dir)]
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


def collect_inputs(sources: Sequence[str], out_dir: Path) -> list[InputImage]:
    """The images named by the sources, each with its output name; files under `out_dir` are never inputs."""
    found: list[tuple[Path, Path]] = []  # (file, the folder its name is relative to)
    for source in sources:
        path = Path(source).expanduser()
        _refuse_inside_out(source, _glob_base(path) if _has_magic(source) else path, out_dir)
        if path.is_dir():
            found += [(p, path) for p in _folder_images(path, out_dir)]
        elif path.is_file() and path.suffix.lower() == ".txt":
            found += _list_file(path)
        elif path.is_file():
            found.append((path, path.parent))
        elif _has_magic(source):
            base = _glob_base(path)
            matches = sorted(Path(m) for m in glob.glob(str(path), recursive=True))
            found += [(m, base) for m in matches if m.is_file() and is_image_path(m) and not _inside(m, out_dir)]
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
    return [InputImage(p, name) for (p, _), name in zip(found, names)]


def output_paths(out: Path, rel: str, save: Sequence[str]) -> dict[str, Path]:
    rel = safe_relpath(rel)  # names from split lists or COCO ids may hold '../'
    return {kind: out / kind / (rel + _SUFFIX[kind]) for kind in save}


def remove_stale_temporaries(out: Path) -> int:
    """Delete the temporary files a killed run left (`.<name>.*.part`, see `atomic_write_bytes`)."""
    removed = 0
    for kind in SAVE_KINDS:
        folder = out / kind
        if folder.is_dir():
            for tmp in folder.rglob(".*.part"):
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


class OutputWriter:
    """Writes predictions in a background thread; the first failure is kept and re-raised by `check`."""

    def __init__(self, out: Path, save: Sequence[str], palette, alpha: float, num_classes: int,
                 label_offset: int = 0):
        self.out, self.save, self.palette, self.alpha = out, tuple(save), palette, alpha
        self.label_offset = label_offset
        self.mask_dtype = mask_dtype(num_classes + label_offset)
        self.queue: "queue.Queue[Optional[tuple[Prediction, InputImage]]]" = queue.Queue(maxsize=4)
        self.error: Optional[BaseException] = None
        self.written = 0  # images whose outputs all landed
        self.thread = threading.Thread(target=self._loop, name="vitseg-writer", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while (job := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self._write(*job)
                    self.written += 1
                except BaseException as err:  # reported in the main thread
                    self.error = err

    def _write(self, pred: Prediction, item: InputImage) -> None:
        write_outputs(output_paths(self.out, item.rel, self.save), pred.labels, image=pred.image, probs=pred.probs,
                      palette=self.palette, alpha=self.alpha, mask_dtype=self.mask_dtype,
                      label_offset=self.label_offset)

    def put(self, pred: Prediction, item: InputImage) -> None:
        self.check()
        self.queue.put((pred, item))

    def check(self) -> None:
        if self.error is not None:
            err = self.error
            raise VitsegError(f"cannot write outputs: {err}") if not isinstance(err, VitsegError) else err

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()


# ----------------------------------------------------------------------------------------------------- the run


@dataclass
class PredictOptions:
    sources: list[str]
    out: Path = Path("vitseg-out")
    weights: Optional[Path] = None
    spec: Optional[str] = None
    overrides: dict[str, Any] = field(default_factory=dict)  # InferenceSettings fields; None = from the spec
    spec_overrides: list[str] = field(default_factory=list)  # --set key.path=value
    device: str = "auto"
    save: tuple[str, ...] = DEFAULT_SAVE
    alpha: float = 0.5
    overwrite: bool = False
    workers: int = 2
    quiet: bool = False
    backend: str = "torch"


@dataclass
class PredictSummary:
    processed: int = 0
    skipped: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    interrupted: bool = False
    elapsed_s: float = 0.0
    write_error: Optional[str] = None

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def parse_save(text: str) -> tuple[str, ...]:
    kinds = tuple(dict.fromkeys(k.strip().lower() for k in text.split(",") if k.strip()))
    bad = [k for k in kinds if k not in SAVE_KINDS]
    if bad or not kinds:
        raise VitsegError(f"--save: {', '.join(bad) or 'nothing'} is not one of {', '.join(SAVE_KINDS)}"
                          f"{did_you_mean(bad[0], SAVE_KINDS) if bad else ''}")
    return kinds


def _load_backend(opts: PredictOptions, device, note):
    if opts.backend == "torch":
        return load_inference_model(opts.weights, opts.spec, device, note=note, overrides=opts.spec_overrides)
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


def run_predict(opts: PredictOptions, console: Optional[Console] = None) -> PredictSummary:
    console = console or Console(stderr=True, highlight=False)
    started = time.time()
    t0 = time.perf_counter()
    out = Path(opts.out)
    if out.exists() and not out.is_dir():
        raise VitsegError(f"--out {out}: exists and is not a folder")
    if not 0.0 <= opts.alpha <= 1.0:
        raise VitsegError(f"--alpha {opts.alpha}: must be between 0 and 1")
    inputs = collect_inputs(opts.sources, out)
    if not inputs:
        raise VitsegError(f"no images found in {', '.join(opts.sources)}")
    device = resolve_device(opts.device)
    model = _load_backend(opts, device, note=None if opts.quiet else
                          lambda line: console.print(Text("note: " + line, style="yellow"), soft_wrap=True))
    settings = InferenceSettings.from_spec(model.spec, **opts.overrides)
    settings.check_device(device)
    load_s = time.perf_counter() - t0

    prepare_output_dir(out)
    remove_stale_temporaries(out)
    summary = PredictSummary()
    todo = []
    for item in inputs:
        if not opts.overwrite and all(p.exists() for p in output_paths(out, item.rel, opts.save).values()):
            summary.skipped += 1
        else:
            todo.append(item)

    writer = OutputWriter(out, opts.save, model.spec.palette, opts.alpha, model.spec.model.num_classes)
    progress = ProgressReporter("predict", len(todo), unit="img", enabled=not opts.quiet, console=console)
    infer_start = time.perf_counter()
    try:
        with progress:
            preds = iter_predictions(model, [i.path for i in todo], settings, device, workers=opts.workers,
                                     want_probs="probs" in opts.save, keep_image="overlay" in opts.save)
            for item, pred in zip(todo, preds):
                if pred.error:
                    summary.failed.append({"path": str(item.path), "error": pred.error})
                    progress.print(Text("failed: " + pred.error, style="red"))
                else:
                    writer.put(pred, item)
                    summary.processed += 1
                progress.advance(failed=len(summary.failed))
    except KeyboardInterrupt:
        summary.interrupted = True
        raise
    finally:
        writer.close()  # what was queued is whole: let it land
        summary.processed = writer.written  # after a failed write (disk full), only what landed counts
        summary.write_error = str(writer.error) if writer.error is not None else None
        summary.elapsed_s = time.perf_counter() - t0
        _write_record(out, opts, model, settings, device, inputs, summary, started, load_s,
                      time.perf_counter() - infer_start)
    writer.check()
    if not opts.quiet:
        rate = summary.processed / max(time.perf_counter() - infer_start, 1e-9)
        console.print(f"processed {summary.processed}, skipped {summary.skipped} (done before), failed "
                      f"{len(summary.failed)} in {summary.elapsed_s:.1f} s ({rate:.2f} img/s) -> {out}",
                      markup=False)
    return summary


def _write_record(out: Path, opts: PredictOptions, model, settings: InferenceSettings, device, inputs,
                  summary: PredictSummary, started: float, load_s: float, infer_s: float) -> None:
    weights = opts.weights if opts.weights is not None else default_weights_path()
    record = {
        "vitseg_version": __version__,
        "command": "predict",
        "status": "failed" if summary.write_error else "interrupted" if summary.interrupted else "done",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "weights": str(weights),
        "backend": opts.backend,
        "device": str(device),
        "spec": model.spec.to_dict(),
        "settings": settings.to_dict(),
        "sources": list(opts.sources),
        "save": list(opts.save),
        "inputs": len(inputs),
        "processed": summary.processed,
        "skipped": summary.skipped,
        "failed": summary.failed,
        **({"error": summary.write_error} if summary.write_error else {}),
        "timings": {"total_s": round(summary.elapsed_s, 3), "load_s": round(load_s, 3),
                    "inference_s": round(infer_s, 3),
                    "images_per_s": round(summary.processed / infer_s, 3) if infer_s > 0 else None},
    }
    atomic_write_bytes(out / "predict.json", (json.dumps(record, indent=2) + "\n").encode())
