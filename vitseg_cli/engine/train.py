"""`vitseg train`: the official ViT-Adapter recipe, resumable, in one process or under torchrun (DDP).

Recipe (from the spec's `train` section, CLI flags over it): AdamW with layer-wise lr decay (layer ids from the
model), linear warmup + poly schedule (engine/optim.py), the mmseg augmentation pipeline (data/transforms.py), and the
model's own losses (`Segmentor.loss`: a dict of weighted losses, e.g. UperNet's cross-entropy and the auxiliary FCN
head's; the loop optimises their sum and logs each). `batch_size` is the effective batch of one optimizer step:
world_size x accum x per-process micro-batch. An iteration is one optimizer step.

Run folder: spec.yaml, run.json, log.csv (iter, lr, loss = total loss, one column per loss term, time =
seconds per iteration, + validation metrics), last.safetensors / best.safetensors (vitseg format), state.pt (every
`save_every` iterations, at the end and on Ctrl-C / SIGTERM). `--resume` restores model, optimizer, schedule, scaler,
RNG states, data position and best score, so the run continues as if never stopped.
"""

from __future__ import annotations

import contextlib
import math
import platform
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn

from .._version import __version__
from ..data.label_treatment import open_dataset_for_spec
from ..data.io import atomic_write_bytes
from ..errors import VitsegError
from ..loading import init_from_checkpoint, load_pretrained, save_model
from ..metrics import ConfusionMatrix
from ..model.segmentor import Segmentor, build_model
from ..spec import Spec, apply_overrides, load_spec, read_spec_data, spec_from_dict, with_overrides
from .device import rank_device
from .distributed import DistContext, init_distributed
from .inference import InferenceSettings, iter_predictions
from .optim import build_optimizer, build_scheduler
from .loggers import build_loggers, logger_names, metric_names
from .progress import ProgressReporter
from .train_data import (CLASS_FIELDS, AugmentedCrops, batch_loader, check_dataset, class_fields_set, fit_classes,
                         loader_stopped, unwrap_worker_error)
from .train_state import (CsvLog, capture_rng, check_run_folder, load_state, read_run_info, restore_rng,
                          save_state, seed_everything, write_json)

# train-section fields a CLI flag may set; on --resume only OPERATIONAL ones may change
CLI_TRAIN_FIELDS = ("iters", "batch_size", "crop_size", "lr", "amp", "accum", "workers", "eval_every", "save_every",
                    "seed")
OPERATIONAL = {"iters", "workers", "eval_every", "save_every", "amp"}


@dataclass
class TrainOptions:
    out: Path
    spec: Optional[str] = None
    spec_overrides: list[str] = field(default_factory=list)  # --set key.path=value
    data: Optional[Path] = None
    fmt: Optional[str] = None
    val_data: Optional[Path] = None
    split: str = "train"
    val_split: str = "val"
    iters: Optional[int] = None
    batch_size: Optional[int] = None
    crop_size: Optional[int] = None
    lr: Optional[float] = None
    amp: Optional[bool] = None
    accum: Optional[int] = None
    workers: Optional[int] = None
    eval_every: Optional[int] = None
    save_every: Optional[int] = None
    seed: Optional[int] = None
    pretrained: Optional[Path] = None
    init_from: Optional[Path] = None
    backbone_weights: Optional[Path] = None  # with init_from: the backbone file of a two-file release
    resume: bool = False
    device: str = "auto"
    log_every: Optional[int] = None  # default: the run's own (run.json), else 50
    loggers: Optional[str] = None  # --logger tb,mlflow,...; default: the run's own, else tb when installed
    stop_at: Optional[int] = None
    quiet: bool = False
    command: list[str] = field(default_factory=lambda: list(sys.argv))


@dataclass
class TrainResult:
    out: Path
    iteration: int
    interrupted: bool
    last_loss: Optional[float]
    best_score: Optional[float]
    metrics: dict[str, float] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------- distributed


# ------------------------------------------------------------------------------------------------------- setup


def cli_overrides(opts: TrainOptions) -> dict[str, Any]:
    out = {k: getattr(opts, k) for k in CLI_TRAIN_FIELDS if getattr(opts, k) is not None}
    if "crop_size" in out:
        out["crop_size"] = [int(out["crop_size"])] * 2
    return out


def resolve_spec(opts: TrainOptions, resuming: bool) -> tuple[Spec, set[str]]:
    """The run's spec: SPEC with --set and CLI overrides, or on resume the run's own spec.yaml (recipe fields
    frozen); and which class fields (`CLASS_FIELDS`) the user fixed: the others come from the dataset."""
    overrides = cli_overrides(opts)
    if not resuming:
        if not opts.spec:
            raise VitsegError("--spec is required (a YAML file or a preset: nano, tiny, small, base, large)")
        data = apply_overrides(read_spec_data(opts.spec), opts.spec_overrides)
        source = f"{opts.spec} with --set" if opts.spec_overrides else str(opts.spec)
        return spec_from_dict(data, source=source).updated(train=overrides), class_fields_set(data)
    saved_path = opts.out / "spec.yaml"
    saved = load_spec(saved_path)
    if opts.spec:
        given = load_spec(opts.spec)
        if given.model != saved.model:
            raise VitsegError(f"--spec {opts.spec}: its model differs from the one this run trains ({saved_path}); "
                              "resume without --spec or start a new --out folder")
    spec = with_overrides(saved, opts.spec_overrides)
    if spec.model != saved.model:
        raise VitsegError(f"--set: changes the model this run trains ({saved_path}); start a new --out folder")
    spec = spec.updated(train=overrides)
    frozen = [k for k in type(spec.train).model_fields
              if k not in OPERATIONAL and getattr(spec.train, k) != getattr(saved.train, k)]
    if frozen:
        k = frozen[0]
        raise VitsegError(f"--resume: train.{k} was {getattr(saved.train, k)} in this run and cannot change "
                          f"(only {', '.join(sorted(OPERATIONAL))} can); start a new --out folder to change it")
    return spec, set(CLASS_FIELDS)  # the run's classes are fixed: a dataset with others is a conflict


def micro_batch(spec: Spec, world_size: int, sync_batchnorm: bool = False) -> int:
    """Images per forward pass in each process; BatchNorm needs 2 of them unless SyncBatchNorm pools the ranks."""
    t = spec.train
    per_step = world_size * t.accum
    if t.batch_size % per_step:
        raise VitsegError(f"batch size {t.batch_size} is not divisible by world size x accum = {world_size} x "
                          f"{t.accum} (batch size is the effective batch of one optimizer step)")
    micro = t.batch_size // per_step
    if micro < 2 and world_size == 1:
        raise VitsegError(f"batch size {t.batch_size} with accum {t.accum} gives 1 image per forward pass: "
                          "BatchNorm cannot train on a batch of one (raise --batch-size or lower --accum)")
    if micro < 2 and not sync_batchnorm:
        raise VitsegError(f"batch size {t.batch_size} over {world_size} processes x accum {t.accum} gives each "
                          f"process 1 image per forward pass: BatchNorm cannot train on a batch of one, and its "
                          f"statistics stay per process on CPU (raise --batch-size to {2 * per_step} or lower "
                          "--accum)")
    return micro


class _TrainForward(nn.Module):
    """What DDP wraps: forward() is the segmentor's loss (a dict of weighted losses)."""

    def __init__(self, model: Segmentor):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model.loss(x, target)


def _versions() -> dict[str, Any]:
    return {"vitseg": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None}


class _StopFlag:
    """First Ctrl-C / SIGTERM asks the loop to stop at the next iteration boundary (state is saved); a second
    Ctrl-C interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "_StopFlag":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


# ---------------------------------------------------------------------------------------------------- validation


def validate(model: Segmentor, dataset: Any, device: torch.device) -> dict[str, float]:
    """mIoU and friends of `model` on `dataset` through the shared inference and metrics code."""
    spec = model.spec
    settings = InferenceSettings.from_spec(spec)
    conf = ConfusionMatrix(spec.model.num_classes, dataset.ignore_index)
    paths = [s.image for s in dataset.samples]
    was_training = model.training
    try:
        for i, pred in enumerate(iter_predictions(model, paths, settings, device)):
            if pred.error:
                raise VitsegError(pred.error)
            conf.update(pred.labels, dataset.read_label(i), source=dataset.label_source(i))
    finally:
        model.train(was_training)
    summary = conf.summarize(spec.class_names)
    return {k: float(summary[k]) for k in ("aAcc", "mIoU", "mAcc")}


# ---------------------------------------------------------------------------------------------------- training


def train(opts: TrainOptions, say: Callable[[str], None] = print) -> TrainResult:
    """Run (or resume) a training run into `opts.out`; `say` prints notes (called on rank 0 only)."""
    # DDP on CPU: depthwise-conv grads come with other strides than DDP's buckets; harmless, and said every step
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    ctx = init_distributed(rank_device(opts.device))
    try:
        return _train(opts, ctx, say if ctx.is_main else (lambda _msg: None))
    finally:
        ctx.close()


def _train(opts: TrainOptions, ctx: DistContext, say: Callable[[str], None]) -> TrainResult:
    out = Path(opts.out)
    # every rank checks the folder, the data and the batch before rank 0 writes anything or any rank trains; a
    # failure on one rank is every rank's (agree), so none waits for the others in a collective
    (resuming, run_info, data_root, fmt, val_root, log_every, logger_option, loggers_wanted, spec, dataset,
     val_dataset, micro) = ctx.agree(lambda: _prepare(opts, ctx, say))
    t = spec.train

    # ---- model, optimiser, schedule
    seed_everything(t.seed + ctx.rank)
    if ctx.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    model = build_model(spec)
    if not resuming:
        if opts.pretrained and opts.init_from:
            raise VitsegError("give --pretrained (the backbone's pretraining) or --init-from (a whole segmentor), not both")
        if opts.pretrained:
            for note in load_pretrained(model, opts.pretrained):
                say(f"note: {note}")
        if opts.init_from:
            for note in init_from_checkpoint(model, Path(opts.init_from), opts.backbone_weights):
                say(f"note: {note}")
    elif opts.pretrained or opts.init_from:
        say("note: --pretrained / --init-from are ignored on --resume (the saved state is loaded)")
    model.to(ctx.device)
    if ctx.active and ctx.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    elif ctx.active:
        say("note: BatchNorm statistics stay per process on CPU (SyncBatchNorm needs GPUs)")
    model.train()
    optimizer = build_optimizer(model, t)
    scheduler = build_scheduler(optimizer, t)
    use_amp = bool(t.amp) and ctx.device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    start_iter, best_score, best_iter = 0, None, None

    if resuming:
        state = load_state(out / "state.pt")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule = dict(state["scheduler"])
        if t.iters != schedule["max_iters"]:
            say(f"note: iters changed from {schedule['max_iters']} to {t.iters}: the poly schedule now ends there")
            schedule["max_iters"] = t.iters
        scheduler.load_state_dict(schedule)
        if use_amp and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start_iter = int(state["iteration"])
        best_score, best_iter = state.get("best_score"), state.get("best_iter")
        rngs = state.get("rng") or []
        if len(rngs) == ctx.world_size:
            restore_rng(rngs[ctx.rank])
        else:
            seed_everything(t.seed + ctx.rank + 1000003 * start_iter)
            say(f"note: world size changed ({len(rngs)} -> {ctx.world_size}): random streams are reseeded")
        say(f"resuming {out} at iteration {start_iter}/{t.iters}")

    net: nn.Module = _TrainForward(model)
    if ctx.active:
        net = nn.parallel.DistributedDataParallel(
            net, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)

    # ---- run folder
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out / "spec.yaml", spec.to_yaml().encode())
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        if not resuming:
            run_info = {"command": " ".join(opts.command), "started": now, "versions": _versions(),
                        "world_size": ctx.world_size, "seed": t.seed, "device": str(ctx.device),
                        "device_name": torch.cuda.get_device_name(ctx.device) if ctx.device.type == "cuda" else
                        platform.processor() or platform.machine(),
                        "data": str(data_root), "format": fmt, "split": opts.split,
                        "val_data": str(val_root) if val_root else None,
                        "pretrained": str(_absolute(opts.pretrained)) if opts.pretrained else None,
                        "init_from": str(_absolute(opts.init_from)) if opts.init_from else None,
                        "log_every": log_every, "loggers": opts.loggers, "batch_size": t.batch_size,
                        "micro_batch": micro, "accum": t.accum, "amp": use_amp,
                        "train_samples": len(dataset), "resumes": []}
        else:
            run_info.setdefault("resumes", []).append(
                {"iteration": start_iter, "time": now, "command": " ".join(opts.command),
                 "world_size": ctx.world_size, "device": str(ctx.device)})
            run_info.update(data=str(data_root), val_data=str(val_root) if val_root else None,
                            loggers=logger_option)
        write_json(out / "run.json", run_info)
    ctx.barrier()
    log = CsvLog(out / "log.csv", start_iter) if ctx.is_main else None
    loggers = build_loggers(loggers_wanted, out, _logger_config(spec, data_root, fmt)) if ctx.is_main else []

    def checkpoint(iteration: int) -> None:
        rngs = ctx.gather(capture_rng())
        if ctx.is_main:
            save_model(model, out / "last.safetensors", source=f"vitseg train {out.name} iter {iteration}")
            save_state(out / "state.pt", {
                "iteration": iteration, "best_score": best_score, "best_iter": best_iter,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if use_amp else {},
                "rng": rngs, "world_size": ctx.world_size, "spec": spec.to_yaml()})
        ctx.barrier()

    if start_iter >= t.iters:
        say(f"{out}: already trained to iteration {start_iter} (raise --iters to continue)")
        return TrainResult(out, start_iter, False, None, best_score)

    crops = AugmentedCrops(dataset, spec)
    batches = batch_loader(crops, micro, ctx.rank, ctx.world_size, start_iter * t.accum, t.workers,
                           pin_memory=ctx.device.type == "cuda")
    stop_at = min(opts.stop_at, t.iters) if opts.stop_at else t.iters
    say(f"training {len(dataset)} images, {t.iters} iterations, batch {t.batch_size} "
        f"({ctx.world_size} x {micro} x accum {t.accum}), crop {list(t.crop_size)}, lr {t.lr:g}, "
        f"device {ctx.device}{' amp' if use_amp else ''}")

    # running sums over the log window: "loss" (the total) and each loss term by name
    window: dict[str, Any] = {"terms": {}, "n": 0, "t0": time.perf_counter(), "iters": 0}
    last_loss: Optional[float] = None
    metrics: dict[str, float] = {}
    iteration = start_iter
    interrupted = False
    progress = ProgressReporter("train", t.iters, start=start_iter, unit="it", enabled=not opts.quiet and ctx.is_main,
                                fallback=say)
    with _StopFlag() as stop, progress as bar, loader_stopped(batches):
        for it in range(start_iter, stop_at):
            if ctx.any(stop.requested):
                interrupted = True
                break
            lr_now = scheduler.base_lr
            for a in range(t.accum):
                x, y = _next_batch(batches)
                x = x.to(ctx.device, non_blocking=True)
                y = y.to(ctx.device, non_blocking=True)
                sync = contextlib.nullcontext() if (a == t.accum - 1 or not ctx.active) else net.no_sync()
                with sync:
                    with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
                        losses = net(x, y)
                    loss = sum(losses.values())
                    scaler.scale(loss / t.accum).backward()
                for key, value in {"loss": loss, **losses}.items():
                    window["terms"][key] = window["terms"].get(key, 0.0) + float(value.detach())
                window["n"] += 1
            total = window["terms"]["loss"]
            if not use_amp and not math.isfinite(total):
                raise VitsegError(f"the loss became {total} at iteration {it + 1} (try a lower --lr); the "
                                  f"last good state is in {out / 'state.pt'}")
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            iteration = it + 1
            window["iters"] += 1

            evaluate_now = bool(val_dataset is not None and t.eval_every and
                                (iteration % t.eval_every == 0 or iteration == t.iters))
            if iteration % log_every == 0 or iteration == stop_at or evaluate_now:
                names = list(window["terms"])
                means = ctx.mean([window["terms"][k] / window["n"] for k in names])
                sec = (time.perf_counter() - window["t0"]) / window["iters"]
                last_loss = means[0]
                row: dict[str, Any] = {"iter": iteration, "lr": lr_now, **dict(zip(names, means)), "time": sec}
                if evaluate_now:
                    if ctx.is_main:
                        metrics = validate(model, val_dataset, ctx.device)
                        row.update(metrics)
                        bar.print(f"iteration {iteration}: mIoU {metrics['mIoU']:.4f}, aAcc {metrics['aAcc']:.4f}")
                        if best_score is None or metrics["mIoU"] > best_score:
                            best_score, best_iter = metrics["mIoU"], iteration
                            save_model(model, out / "best.safetensors",
                                       source=f"vitseg train {out.name} iter {iteration} mIoU {best_score:.4f}")
                    best_score, best_iter = ctx.gather((best_score, best_iter))[0]
                if log is not None:
                    log.append(row)
                for logger in loggers:
                    logger.log(metric_names(row), iteration)
                window.update(terms={}, n=0, t0=time.perf_counter(), iters=0)
            bar.update(iteration, loss="-" if last_loss is None else f"{last_loss:.4f}", lr=f"{lr_now:.2e}")
            if iteration % t.save_every == 0 and iteration != stop_at:
                checkpoint(iteration)
    checkpoint(iteration)
    for logger in loggers:
        logger.close()
    if interrupted:
        say(f"stopped at iteration {iteration}: state saved; continue with --resume")
    return TrainResult(out, iteration, interrupted, last_loss, best_score, metrics)


def _prepare(opts: TrainOptions, ctx: DistContext, say: Callable[[str], None]) -> tuple:
    """What the run needs before the model is built, checked: the folder, the spec, the datasets, the loggers, the
    micro-batch."""
    out = Path(opts.out)
    resuming = check_run_folder(out, opts.resume)
    run_info: dict[str, Any] = {}
    if resuming:
        run_info = read_run_info(out)
    # paths are stored absolute, so a run resumes from any working directory; --data / --val-data replace them
    data_root = _absolute(opts.data) or _recorded_path(run_info, "data", out, "--data")
    fmt = opts.fmt or run_info.get("format") or "folder"
    val_root = _absolute(opts.val_data) or _recorded_path(run_info, "val_data", out, "--val-data")
    log_every = opts.log_every or run_info.get("log_every") or 50
    logger_option = opts.loggers if opts.loggers is not None else run_info.get("loggers")
    loggers_wanted = logger_names(logger_option)  # a missing package fails here, before anything is written
    if data_root is None:
        raise VitsegError("--data is required (the training dataset folder)")
    spec, fixed = resolve_spec(opts, resuming)

    dataset, own_classes = _open(data_root, fmt, opts.split, spec)
    if own_classes:
        spec = fit_classes(spec, fixed, dataset, str(data_root))
    check_dataset(dataset, spec, str(data_root))
    if dataset.ignore_index != spec.data.ignore_index:
        spec = spec.updated(data={"ignore_index": dataset.ignore_index})
    spec = spec.updated(data={"reduce_zero_label": dataset.reduce_zero_label})  # the model remembers its labels
    val_dataset = None
    if val_root is not None:
        val_dataset, val_own = _open(val_root, fmt, opts.val_split, spec)
        if val_own:
            fit_classes(spec, set(CLASS_FIELDS), val_dataset, str(val_root))
        if len(val_dataset) == 0:
            raise VitsegError(f"{val_root}: no validation samples found")
    if spec.train.eval_every and val_dataset is None:
        say("note: --eval-every is set but there is no --val-data: no validation")
    micro = micro_batch(spec, ctx.world_size, sync_batchnorm=ctx.active and ctx.device.type == "cuda")
    return (resuming, run_info, data_root, fmt, val_root, log_every, logger_option, loggers_wanted, spec, dataset,
            val_dataset, micro)


def _open(root: Path, fmt: str, split: str, spec: Spec) -> tuple[Any, bool]:
    """The dataset, and whether it names its own classes (a classes file or the format's list); a folder without a
    classes file takes generic names for the model's classes (check_dataset checks its labels fit)."""
    try:
        return open_dataset_for_spec(root, fmt, split, spec), True
    except VitsegError as err:
        if fmt in ("folder", "mmseg") and any(
                text in str(err) for text in ("no classes file", "no class names", "class count from the model")):
            return open_dataset_for_spec(root, fmt, split, spec, num_classes=spec.model.num_classes), False
        raise


def _absolute(path: Optional[Path]) -> Optional[Path]:
    return Path(path).expanduser().resolve() if path is not None else None


def _recorded_path(run_info: dict[str, Any], key: str, out: Path, option: str) -> Optional[Path]:
    """A dataset path from run.json; one written relative by an older vitseg is read from the run folder's parent
    if it exists there, else the user is asked for the option."""
    text = run_info.get(key)
    if not text:
        return None
    path = Path(text)
    if path.is_absolute():
        if not path.exists():
            raise VitsegError(f"{out / 'run.json'}: {key} {path} no longer exists; give its new place with {option}")
        return path
    for base in (Path.cwd(), out.resolve().parent):
        if (base / path).exists():
            return (base / path).resolve()
    raise VitsegError(f"{out / 'run.json'}: {key} {text!r} is a relative path not found from here; give {option}")


def _next_batch(batches) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        return next(batches)
    except VitsegError as err:
        one = unwrap_worker_error(err)
        if one:
            raise VitsegError(one) from None
        raise


def _logger_config(spec: Spec, data_root: Path, fmt: str) -> dict[str, Any]:
    """What a tracking logger records about the run: the recipe, the data and the model's size."""
    b = spec.model.backbone
    return {**spec.train.model_dump(mode="json"), "data": str(data_root), "format": fmt,
            "num_classes": spec.model.num_classes, "embed_dim": b.embed_dim, "depth": b.depth}
