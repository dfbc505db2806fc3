"""`vitseg eval`: score a model on a labelled dataset, or score existing prediction masks against ground truth.

Both paths feed one `SegEvaluator` (engine/evaluator.py: a confusion matrix and per-image scores, the same scorer
training validates with), then write the reports of `eval_report`. The model path runs the shared inference through
`score_model`, so eval scores exactly what `predict` writes.

Distributed: under torchrun (WORLD_SIZE > 1) each rank takes `samples[rank::world]`, the confusion matrices are
summed with all_reduce (gloo on CPU, nccl on GPU) and the per-image rows gathered; only rank 0 writes and prints.
An error on any rank is shared with all ranks before the reduction, so none is left waiting.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import numpy as np
import torch

from ..data import io
from ..data.datasets import SegDataset, check_label, load_classes_file, match_by_key
from ..data.inputs import InputImage
from ..data.io import refuse_non_folder
from ..data.label_treatment import open_dataset_for_spec
from ..data.official_layouts import CustomLayout
from ..errors import VitsegError
from ..metrics import reduce_zero_label
from .common import load_backend, weights_file
from .model_info import announce_model
from .onnx_backend import choose_backend
from .device import rank_device
from .distributed import DistContext, init_distributed
from .evaluator import SegEvaluator, score_model
from .inference import InferenceSettings
from .outputs import DEFAULT_SAVE, OutputWriter, claim_output_folder
from .progress import ProgressReporter

# (index in the full list, key, predicted labels, ground-truth labels, what to name in errors)
ScoredPair = tuple[int, str, np.ndarray, np.ndarray, str]


@dataclass
class EvalResult:
    summary: dict
    conf: np.ndarray
    per_image: list[dict]
    meta: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0


# ----------------------------------------------------------------------------------------------------- scoring


def _progress(total: int, label: str, enabled: bool) -> ProgressReporter:
    """The shared progress display (rank 0, not --quiet); the bar disappears when done, the table follows."""
    return ProgressReporter(label, total, unit="img", enabled=enabled and total > 0, transient=True)


def score_pairs(pairs: Iterable[ScoredPair], evaluator: SegEvaluator,
                progress: Optional[ProgressReporter] = None) -> SegEvaluator:
    """Feed (index, key, pred, label, source) pairs to `evaluator`."""
    for index, key, pred, label, source in pairs:
        evaluator.process(index, key, pred, label, source)
        if progress is not None:
            progress.advance()
    return evaluator


def _finish(ctx: DistContext, evaluator: SegEvaluator, meta: dict, started: float) -> Optional[EvalResult]:
    scores = evaluator.evaluate(ctx)
    if scores is None:
        return None
    meta = {**meta, "num_images": len(scores.per_image), "world_size": ctx.world_size}
    return EvalResult(scores.summary, scores.matrix, scores.per_image, meta, time.perf_counter() - started)


# ------------------------------------------------------------------------------------------ --pred / --gt mode


def _label_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and io.is_image_path(p) and not p.name.startswith("."))


def match_pred_gt(pred_dir: Path, gt_dir: Path) -> list[tuple[str, Path, Path]]:
    """(key, pred, gt) for every ground-truth mask, matched by relative path without extension, else by a stem unique
    on both sides (`match_by_key`). A `vitseg predict` output folder may be given as PRED_DIR (its masks/ are used)."""
    for folder, what in ((pred_dir, "--pred"), (gt_dir, "--gt")):
        if not folder.is_dir():
            raise VitsegError(f"{folder}: {what} folder not found")
    if (pred_dir / "masks").is_dir() and (pred_dir / "predict.json").is_file():
        pred_dir = pred_dir / "masks"
    gts = _label_files(gt_dir)
    if not gts:
        raise VitsegError(f"{gt_dir}: no label images found")
    keys = [gt.relative_to(gt_dir).with_suffix("").as_posix() for gt in gts]
    pairs = []
    for gt, key, pred in zip(gts, keys, match_by_key(keys, _label_files(pred_dir), pred_dir, "predictions")):
        if pred is None:
            raise VitsegError(f"{gt}: no prediction for it in {pred_dir} (expected {key}.png)")
        pairs.append((key, pred, gt))
    return pairs


@dataclass
class PairOptions:
    pred: Path
    gt: Path
    num_classes: int
    ignore_index: int = 255
    reduce_zero_label: bool = False
    classes: Optional[Path] = None
    workers: int = 0
    quiet: bool = False


def _read_pair(key: str, pred_path: Path, gt_path: Path, opts: PairOptions) -> tuple[np.ndarray, np.ndarray]:
    label = io.read_label(gt_path).astype(np.int64)
    if opts.reduce_zero_label:
        label = reduce_zero_label(label, opts.ignore_index)
    check_label(label, opts.num_classes, opts.ignore_index, gt_path)
    pred = io.read_label(pred_path).astype(np.int64)
    if pred.shape != label.shape:
        raise VitsegError(f"{pred_path}: prediction is {pred.shape[1]}x{pred.shape[0]} (WxH) but its label {gt_path} "
                          f"is {label.shape[1]}x{label.shape[0]}")
    bad = pred[(pred < 0) | (pred >= opts.num_classes)]
    if bad.size:
        raise VitsegError(f"{pred_path}: predicted class {int(bad[0])} outside [0, {opts.num_classes - 1}] "
                          f"(--num-classes {opts.num_classes})")
    return pred, label


def evaluate_pairs(opts: PairOptions) -> Optional[EvalResult]:
    """Score the masks in `opts.pred` against `opts.gt`. Returns the result on rank 0, None on other ranks."""
    started = time.perf_counter()
    if opts.num_classes < 1:
        raise VitsegError(f"--num-classes {opts.num_classes}: must be at least 1")
    if opts.classes is not None:
        names = load_classes_file(opts.classes)["classes"]
        if len(names) != opts.num_classes:
            raise VitsegError(f"{opts.classes}: {len(names)} classes but --num-classes is {opts.num_classes}")
    else:
        names = [f"class_{i}" for i in range(opts.num_classes)]
    ctx = init_distributed(torch.device("cpu"))
    try:
        pairs = ctx.agree(lambda: match_pred_gt(opts.pred, opts.gt))
        mine = ctx.shard(pairs)

        def work():
            progress = _progress(len(mine), "scoring", ctx.is_main and not opts.quiet).start()
            try:
                def read(i: int) -> ScoredPair:
                    key, p, g = pairs[i]
                    pred, label = _read_pair(key, p, g, opts)
                    return i, key, pred, label, str(g)

                evaluator = SegEvaluator(opts.num_classes, opts.ignore_index, names)
                if opts.workers > 0:
                    with ThreadPoolExecutor(opts.workers) as pool:
                        return score_pairs(pool.map(read, mine), evaluator, progress)
                return score_pairs(map(read, mine), evaluator, progress)
            finally:
                progress.close()

        evaluator = ctx.agree(work)
        meta = {"pred": str(opts.pred), "gt": str(opts.gt), "ignore_index": opts.ignore_index,
                "reduce_zero_label": opts.reduce_zero_label}
        return _finish(ctx, evaluator, meta, started)
    finally:
        ctx.close()


# ------------------------------------------------------------------------------------------------- model mode


@dataclass
class ModelEvalOptions:
    dataset: Path
    fmt: str = "folder"
    split: str = "val"
    weights: Optional[Path] = None
    spec: Optional[str] = None
    classes: Optional[Path] = None
    coco_json: Optional[Path] = None
    overrides: dict[str, Any] = field(default_factory=dict)  # InferenceSettings fields; None = from the spec
    spec_overrides: list[str] = field(default_factory=list)  # --set key.path=value
    backbone_weights: Optional[Path] = None  # the backbone file of a two-file release
    backend: Optional[str] = None  # torch or onnx; None = onnx for a .onnx weights file, else torch
    device: str = "auto"
    workers: int = 0
    save_predictions: Optional[Path] = None
    label_offset: int = 0  # added to saved mask values (1: ADE20K submission format)
    overwrite: bool = False  # replace save_predictions made with another fingerprint
    quiet: bool = False
    limit: Optional[int] = None
    label_map: Optional[str] = None  # mapillary / mmseg: a label map file or built-in name
    layout: Optional[CustomLayout] = None  # mmseg: img_dir, ann_dir, suffixes, split file


def _dataset_for_model(opts: ModelEvalOptions, model) -> SegDataset:
    k = model.spec.model.num_classes
    ds = open_dataset_for_spec(opts.dataset, opts.fmt, opts.split, model.spec,
                               f"the spec of {opts.weights or 'the default model'}", classes_file=opts.classes,
                               coco_json=opts.coco_json, num_classes=k if opts.fmt in ("folder", "mmseg") else None,
                               label_map=opts.label_map, layout=opts.layout)
    if ds.num_classes != k:
        raise VitsegError(f"{opts.dataset}: the {opts.fmt} dataset has {ds.num_classes} classes but the model "
                          f"predicts {k}")
    if all(n == f"class_{i}" for i, n in enumerate(ds.class_names)):  # no names of its own: take the model's
        ds.class_names, ds.palette = model.spec.class_names, model.spec.palette
    if opts.limit is not None:
        ds.samples = ds.samples[: max(0, opts.limit)]
    if not len(ds):
        raise VitsegError(f"{opts.dataset}: no images to evaluate")
    return ds


def evaluate_model(opts: ModelEvalOptions, note: Optional[Callable[[str], None]] = None) -> Optional[EvalResult]:
    """Run the model over the dataset (this rank's shard) and score it. The result on rank 0, None elsewhere."""
    started = time.perf_counter()
    device = rank_device(opts.device)
    ctx = init_distributed(device)
    try:
        def prepare():
            model = load_backend(opts.backend, opts.weights, opts.spec, device, note=note if ctx.is_main else None,
                                 overrides=opts.overrides, spec_overrides=opts.spec_overrides,
                                 backbone_weights=opts.backbone_weights)
            if note is not None and ctx.is_main:  # not with --quiet
                announce_model(model, opts.weights, opts.spec)
            settings = InferenceSettings.from_spec(model.spec, **opts.overrides)
            settings.check_device(device)
            ds = _dataset_for_model(opts, model)
            if opts.save_predictions and ctx.is_main:
                _claim_predictions_folder(opts, model, settings)
            return model, settings, ds

        model, settings, ds = ctx.agree(prepare)
        mine = ctx.shard(ds.samples)

        def work() -> SegEvaluator:
            writer = (_prediction_writer(opts.save_predictions, ds, opts.label_offset) if opts.save_predictions
                      else None)
            progress = _progress(len(mine), "evaluating", ctx.is_main and not opts.quiet).start()
            evaluator = SegEvaluator(ds.num_classes, ds.ignore_index, ds.class_names)
            try:
                save = None if writer is None else (
                    lambda i, pred, _label: writer.put(pred, InputImage(pred.path, ds.samples[i].key)))
                score_model(model, ds, mine, settings, device, evaluator, workers=opts.workers,
                            keep_image=writer is not None, on_prediction=save, progress=progress)
                if writer is not None:
                    writer.close()
                    writer.check()
                    writer = None
                return evaluator
            finally:
                progress.close()
                if writer is not None:
                    writer.close()

        evaluator = ctx.agree(work)
        meta = {"dataset": str(opts.dataset), "format": ds.fmt, "split": ds.split,
                "weights": str(opts.weights) if opts.weights else "default", "source": getattr(model, "source", None),
                "backend": choose_backend(opts.backend, opts.weights),
                "ignore_index": ds.ignore_index, "reduce_zero_label": ds.reduce_zero_label,
                "settings": settings.to_dict(), "device": str(device)}
        if opts.save_predictions:
            meta["predictions"] = str(opts.save_predictions)
            meta["label_offset"] = opts.label_offset
        return _finish(ctx, evaluator, meta, started)
    finally:
        ctx.close()


def _claim_predictions_folder(opts: ModelEvalOptions, model, settings) -> None:
    """predict's fingerprint rule for --save-predictions: refuse a folder of other predictions unless --overwrite."""
    backend = choose_backend(opts.backend, opts.weights)
    claim_output_folder(opts.save_predictions, weights_file(opts.weights), backend, model.spec.to_dict(),
                        settings.to_dict(), DEFAULT_SAVE, 0.5, opts.overwrite, label_offset=opts.label_offset,
                        option="--save-predictions")


def _prediction_writer(out: Path, ds: SegDataset, label_offset: int = 0):
    """predict's own writer: masks, color and overlay under `<out>/<kind>/<key>.*`; mask values + `label_offset`."""
    refuse_non_folder(out, "--save-predictions")
    return OutputWriter(out, DEFAULT_SAVE, ds.palette, 0.5, ds.num_classes, label_offset)

