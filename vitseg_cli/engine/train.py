"""`vitseg train`: the official ViT-Adapter recipe, resumable, in one process or under torchrun (DDP).

Recipe (from the spec's `train` section, CLI flags over it): AdamW with layer-wise lr decay (layer ids from the
model), linear warmup + poly schedule (engine/optim.py), the mmseg augmentation pipeline (data/transforms.py), and the
model's own losses (`Segmentor.loss`: a dict of weighted losses, e.g. UperNet's cross-entropy and the auxiliary FCN
head's; the loop optimises their sum and logs each). `batch_size` is the effective batch of one optimizer step:
world_size x accum x per-process micro-batch. An iteration is one optimizer step.

Run folder: spec.yaml, run.json, log.csv (iter, lr, loss = total loss, one column per loss term, time =
seconds per iteration, + validation metrics), last.safetensors / best.safetensors (vitseg format), state.pt (every
`save_every` iterations, at the end and on Ctrl-C / SIGTERM), plots/ (curves, confusion matrices, sample panels) and
a lock file while a trainer runs. `--resume` restores model, optimizer, schedule, scaler, RNG states, data position
and best score, so the run continues as if never stopped.

`Trainer` builds the model and optimiser, restores a saved state and runs one step (gradient accumulation, AMP, DDP's
`no_sync`); everything around the steps is a hook (engine/hooks.py).
"""

from __future__ import annotations

import contextlib
import math
import platform
import sys
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn

from .._version import __version__
from ..data.io import atomic_write_bytes, remove_stale_parts
from ..data.label_treatment import open_dataset_for_spec
from ..errors import VitsegError
from ..loading import init_from_checkpoint, load_pretrained, save_model
from ..model.segmentor import Segmentor, build_model
from ..spec import Spec, apply_overrides, load_spec, read_spec_data, spec_from_dict, with_overrides
from .device import rank_device
from .distributed import DistContext, init_distributed
from .hooks import CheckpointHook, EvalHook, HookBase, LogHook, PlotHook, StopHook, TrainerBase
from .optim import build_optimizer, build_scheduler
from .loggers import build_loggers, logger_names
from .progress import ProgressReporter
from .train_data import (CLASS_FIELDS, AugmentedCrops, batch_loader, check_dataset, class_fields_set, fit_classes,
                         loader_stopped, unwrap_worker_error)
from .threads import apply_threads
from .train_state import (LOG_COLUMNS, CsvLog, RunLock, capture_rng, check_run_folder, load_state, read_log_for_resume,
                          read_run_info, restore_rng, save_state, seed_everything, write_json)

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
    crop_size: "int | tuple[int, int] | None" = None  # (height, width), or one side of a square
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
    log_every: Optional[int] = None  # default: the run's own (run.json), else min(50, max(1, iters // 20))
    loggers: Optional[str] = None  # --logger tb,mlflow,...; default: the run's own, else tb when installed
    stop_at: Optional[int] = None
    quiet: bool = False
    threads: Optional[int] = None  # CPU threads; None: engine.threads' rule (VITSEG_THREADS, OMP_NUM_THREADS, CPUs)
    command: list[str] = field(default_factory=lambda: list(sys.argv))
    hooks: list[HookBase] = field(default_factory=list)  # extra hooks, called after the built-in ones


@dataclass
class TrainResult:
    out: Path
    iteration: int
    interrupted: bool
    last_loss: Optional[float]
    best_score: Optional[float]
    metrics: dict[str, float] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------------- setup


def cli_overrides(opts: TrainOptions) -> dict[str, Any]:
    out = {k: getattr(opts, k) for k in CLI_TRAIN_FIELDS if getattr(opts, k) is not None}
    if "crop_size" in out:
        crop = out["crop_size"]
        out["crop_size"] = [int(crop)] * 2 if isinstance(crop, int) else [int(side) for side in crop]
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


# ----------------------------------------------------------------------------------------------------- the run


@dataclass
class PreparedRun:
    """What a run needs before its model is built, every part checked (`_prepare`)."""

    out: Path
    resuming: bool
    run_info: dict[str, Any]
    data_root: Path
    fmt: str
    val_root: Optional[Path]
    log_every: int
    logger_option: Optional[str]
    loggers_wanted: list[str]
    spec: Spec
    dataset: Any
    val_dataset: Any
    micro: int
    lock: Optional[RunLock] = None

    def take_lock(self, say: Callable[[str], None]) -> None:
        """Hold the run folder (rank 0), then delete what a killed save left there."""
        lock = RunLock(self.out)
        for note in lock.acquire():
            say(note)
        self.lock = lock
        remove_stale_parts(self.out)


def _whole_message(err: BaseException) -> str:
    """An exception's message on one line: load_state_dict names the mismatching keys only after its first line."""
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    return " ".join(lines)[:240] if lines else type(err).__name__


class Trainer(TrainerBase):
    """One run: `build` (model, optimiser, schedule, scaler, and on --resume the saved state, checked), then `fit`
    writes the run folder and loops with the hooks of `build_hooks`."""

    def __init__(self, opts: TrainOptions, run: PreparedRun, ctx: DistContext, say: Callable[[str], None]):
        super().__init__()
        self.opts, self.run, self.ctx, self.say = opts, run, ctx, say
        self.out, self.spec = run.out, run.spec
        self.total_iters = run.spec.train.iters
        self.best_score: Optional[float] = None
        self.best_iter: Optional[int] = None
        self.step_losses: dict[str, float] = {}
        self.step_count = 0
        self.step_lr = 0.0
        self.log_resume: tuple[list[str], list[dict[str, str]]] = ([], [])
        self.progress: Any = None

    # ---- build and resume

    def build(self) -> "Trainer":
        t, ctx = self.spec.train, self.ctx
        seed_everything(t.seed + ctx.rank)
        if ctx.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.model = build_model(self.spec)
        if not self.run.resuming:
            self._init_weights()
        elif self.opts.pretrained or self.opts.init_from:
            self.say("note: --pretrained / --init-from are ignored on --resume (the saved state is loaded)")
        self.model.to(ctx.device)
        if ctx.active and ctx.device.type == "cuda":
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        elif ctx.active:
            self.say("note: BatchNorm statistics stay per process on CPU (SyncBatchNorm needs GPUs)")
        self.model.train()
        self.optimizer = build_optimizer(self.model, t)
        self.scheduler = build_scheduler(self.optimizer, t)
        self.use_amp = bool(t.amp) and ctx.device.type == "cuda"
        if self.opts.amp and not self.use_amp:
            self.say("note: --amp is for CUDA devices only: this run trains in float32")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        if self.run.resuming:
            self.resume()
        self.net: nn.Module = _TrainForward(self.model)
        if ctx.active:
            self.net = nn.parallel.DistributedDataParallel(
                self.net, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
        return self

    def _init_weights(self) -> None:
        opts = self.opts
        if opts.pretrained and opts.init_from:
            raise VitsegError("give --pretrained (the backbone's pretraining) or --init-from (a whole segmentor), not both")
        if opts.pretrained:
            for note in load_pretrained(self.model, opts.pretrained):
                self.say(f"note: {note}")
        if opts.init_from:
            for note in init_from_checkpoint(self.model, Path(opts.init_from), opts.backbone_weights):
                self.say(f"note: {note}")

    def resume(self) -> None:
        """Load state.pt (and check log.csv) before anything in the run folder changes: a state that does not fit
        this run is one line naming the file."""
        path, ctx, t = self.out / "state.pt", self.ctx, self.spec.train
        state = load_state(path)
        try:
            self.model.load_state_dict(state["model"])
        except (RuntimeError, KeyError, TypeError, ValueError) as err:
            raise VitsegError(f"{path}: its model does not fit this run's spec ({_whole_message(err)})") from None
        self._load_optimizer(path, state["optimizer"])
        schedule = dict(state["scheduler"])
        if t.iters != schedule["max_iters"]:
            self.say(f"note: iters changed from {schedule['max_iters']} to {t.iters}: the poly schedule now ends there")
            schedule["max_iters"] = t.iters
        schedule["warmup_iters"] = min(schedule["warmup_iters"], t.iters)
        self.scheduler.load_state_dict(schedule)
        start = state["iteration"]
        try:
            if self.use_amp and state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
            rngs = state.get("rng") or []
            if len(rngs) == ctx.world_size:
                restore_rng(rngs[ctx.rank])
            else:
                seed_everything(t.seed + ctx.rank + 1000003 * start)
                self.say(f"note: world size changed ({len(rngs)} -> {ctx.world_size}): random streams are reseeded")
        except (RuntimeError, KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
            raise VitsegError(f"{path}: damaged training state ({_whole_message(err)}); start a new run folder") from None
        if ctx.is_main:
            self.log_resume = read_log_for_resume(self.out / "log.csv", start)
        self.start_iter = start
        self.best_score, self.best_iter = state.get("best_score"), state.get("best_iter")

    def _load_optimizer(self, path: Path, saved: dict[str, Any]) -> None:
        try:
            self.optimizer.load_state_dict(saved)
        except (ValueError, KeyError, TypeError, RuntimeError, IndexError) as err:
            raise VitsegError(f"{path}: its optimizer state does not fit this run's model ({_whole_message(err)})") from None
        for group in self.optimizer.param_groups:
            for param in group["params"]:
                for name, value in self.optimizer.state.get(param, {}).items():
                    if torch.is_tensor(value) and value.dim() > 0 and value.shape != param.shape:
                        raise VitsegError(f"{path}: its optimizer state does not fit this run's model ({name} of "
                                          f"shape {list(value.shape)} for a parameter of shape {list(param.shape)})")

    # ---- the run folder

    def write_run_folder(self) -> None:
        """spec.yaml, run.json (new, or a resume entry added), log.csv and the metric loggers (rank 0)."""
        run, ctx, out = self.run, self.ctx, self.out
        self.log: Optional[CsvLog] = None
        self.loggers: list = []
        if ctx.is_main:
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(out / "spec.yaml", self.spec.to_yaml().encode())
            write_json(out / "run.json", self._run_info())
        ctx.barrier()
        if ctx.is_main:
            columns, rows = self.log_resume if run.resuming else ([], [])
            self.log = CsvLog(out / "log.csv", columns or list(LOG_COLUMNS), rows)
            self.loggers = build_loggers(run.loggers_wanted, out, _logger_config(self.spec, run.data_root, run.fmt))

    def _run_info(self) -> dict[str, Any]:
        run, ctx, t, opts = self.run, self.ctx, self.spec.train, self.opts
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        if run.resuming:
            info = dict(run.run_info)
            info.setdefault("resumes", []).append(
                {"iteration": self.start_iter, "time": now, "command": " ".join(opts.command),
                 "world_size": ctx.world_size, "device": str(ctx.device)})
            info.update(data=str(run.data_root), val_data=str(run.val_root) if run.val_root else None,
                        loggers=run.logger_option, amp=bool(t.amp), amp_active=self.use_amp)
            return info
        device_name = (torch.cuda.get_device_name(ctx.device) if ctx.device.type == "cuda" else
                       platform.processor() or platform.machine())
        return {"command": " ".join(opts.command), "started": now, "versions": _versions(),
                "world_size": ctx.world_size, "seed": t.seed, "device": str(ctx.device), "device_name": device_name,
                "data": str(run.data_root), "format": run.fmt, "split": opts.split,
                "val_data": str(run.val_root) if run.val_root else None,
                "pretrained": str(_absolute(opts.pretrained)) if opts.pretrained else None,
                "init_from": str(_absolute(opts.init_from)) if opts.init_from else None,
                "log_every": run.log_every, "loggers": opts.loggers, "batch_size": t.batch_size,
                "micro_batch": run.micro, "accum": t.accum, "amp": bool(t.amp), "amp_active": self.use_amp,
                "train_samples": len(run.dataset), "resumes": []}

    def save_checkpoint(self) -> None:
        """last.safetensors + state.pt at the current iteration (a collective: every rank's RNG state is kept)."""
        rngs = self.ctx.gather(capture_rng())
        if self.ctx.is_main:
            save_model(self.model, self.out / "last.safetensors",
                       source=f"vitseg train {self.out.name} iter {self.iter}")
            save_state(self.out / "state.pt", {
                "iteration": self.iter, "best_score": self.best_score, "best_iter": self.best_iter,
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict() if self.use_amp else {},
                "rng": rngs, "world_size": self.ctx.world_size, "spec": self.spec.to_yaml()})
        self.ctx.barrier()

    def save_best(self) -> None:
        save_model(self.model, self.out / "best.safetensors",
                   source=f"vitseg train {self.out.name} iter {self.iter} mIoU {self.best_score:.4f}")

    # ---- the loop

    def run_step(self) -> None:
        """One optimizer step over `accum` micro-batches; the summed loss terms go to `step_losses`."""
        t, ctx = self.spec.train, self.ctx
        self.step_lr = self.scheduler.base_lr
        sums: dict[str, float] = {}
        for a in range(t.accum):
            x, y = _next_batch(self.batches)
            x = x.to(ctx.device, non_blocking=True)
            y = y.to(ctx.device, non_blocking=True)
            sync = contextlib.nullcontext() if (a == t.accum - 1 or not ctx.active) else self.net.no_sync()
            with sync:
                with torch.autocast("cuda", dtype=torch.float16, enabled=self.use_amp):
                    losses = self.net(x, y)
                loss = sum(losses.values())
                self.scaler.scale(loss / t.accum).backward()
            for key, value in {"loss": loss, **losses}.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach())
        self.step_losses, self.step_count = sums, t.accum
        if not self.use_amp and not math.isfinite(sums["loss"]):
            raise VitsegError(f"the loss became {sums['loss']} at iteration {self.iter + 1} (try a lower --lr); the "
                              f"last good state is in {self.out / 'state.pt'}")
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()

    def build_hooks(self, stop_at: int) -> tuple[LogHook, Optional[EvalHook]]:
        t, main = self.spec.train, self.ctx.is_main
        val = self.run.val_dataset
        evaluation = EvalHook(val, t.eval_every) if val is not None else None
        logging = LogHook(self.log, self.loggers, self.run.log_every, evaluation)
        plots = PlotHook(self.out / "log.csv", evaluation) if main else None
        self.register_hooks([StopHook(stop_at), evaluation, logging, CheckpointHook(t.save_every), plots,
                             *self.opts.hooks])
        return logging, evaluation

    def fit(self) -> TrainResult:
        t, ctx, run = self.spec.train, self.ctx, self.run
        if self.start_iter >= t.iters:
            self.say(f"{self.out}: already trained to iteration {self.start_iter} (raise --iters to continue)")
            for logger in self.loggers:
                logger.close()
            return TrainResult(self.out, self.start_iter, False, None, self.best_score)
        if run.resuming:
            self.say(f"resuming {self.out} at iteration {self.start_iter}/{t.iters}")
        crops = AugmentedCrops(run.dataset, self.spec)
        apply_threads(self.opts.threads, workers=t.workers, warn=lambda msg: self.say(f"warning: {msg}"))
        self.batches = batch_loader(crops, run.micro, ctx.rank, ctx.world_size, self.start_iter * t.accum, t.workers,
                                    pin_memory=ctx.device.type == "cuda")
        stop_at = min(self.opts.stop_at, t.iters) if self.opts.stop_at else t.iters
        self.say(f"training {len(run.dataset)} images, {t.iters} iterations, batch {t.batch_size} "
                 f"({ctx.world_size} x {run.micro} x accum {t.accum}), crop {list(t.crop_size)}, lr {t.lr:g}, "
                 f"device {ctx.device}{' amp' if self.use_amp else ''}")
        logging, evaluation = self.build_hooks(stop_at)
        progress = ProgressReporter("train", t.iters, start=self.start_iter, unit="it",
                                    enabled=not self.opts.quiet and ctx.is_main, fallback=self.say)
        with progress as bar, loader_stopped(self.batches):
            self.progress = bar
            self.train(self.start_iter, t.iters)
        if self.interrupted:
            self.say(f"stopped at iteration {self.iter}: state saved; continue with --resume")
        metrics = evaluation.last if evaluation is not None else {}
        return TrainResult(self.out, self.iter, self.interrupted, logging.last_loss, self.best_score, metrics)


# ---------------------------------------------------------------------------------------------------- training


def train(opts: TrainOptions, say: Callable[[str], None] = print) -> TrainResult:
    """Run (or resume) a training run into `opts.out`; `say` prints notes (called on rank 0 only)."""
    # DDP on CPU: depthwise-conv grads come with other strides than DDP's buckets; harmless, and said every step
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    ctx = init_distributed(rank_device(opts.device))
    say = say if ctx.is_main else (lambda _msg: None)
    run: Optional[PreparedRun] = None
    started = False
    try:
        # every rank checks the folder, the data, the batch and the saved state before rank 0 writes anything or
        # any rank trains; a failure on one rank is every rank's (agree), so none waits for the others
        run = ctx.agree(lambda: _prepare(opts, ctx, say))
        ctx.agree(lambda: run.take_lock(say) if ctx.is_main else None)
        trainer = ctx.agree(lambda: Trainer(opts, run, ctx, say).build())
        trainer.write_run_folder()
        started = True
        return trainer.fit()
    finally:
        if run is not None and run.lock is not None:
            run.lock.release(failed=not started)
        ctx.close()


def _prepare(opts: TrainOptions, ctx: DistContext, say: Callable[[str], None]) -> PreparedRun:
    """What the run needs before the model is built, checked: the folder, the spec, the datasets, the loggers, the
    micro-batch."""
    out = Path(opts.out)
    resuming = check_run_folder(out, opts.resume, clean=False)
    if opts.resume and not resuming:
        _nothing_to_resume(opts, out, say)
    run_info = read_run_info(out) if resuming else {}
    # paths are stored absolute, so a run resumes from any working directory; --data / --val-data replace them
    data_root = _absolute(opts.data) or _recorded_path(run_info, "data", out, "--data")
    fmt = opts.fmt or run_info.get("format") or "folder"
    val_root = _absolute(opts.val_data) or _recorded_path(run_info, "val_data", out, "--val-data")
    logger_option = opts.loggers if opts.loggers is not None else run_info.get("loggers")
    loggers_wanted = logger_names(logger_option)  # a missing package fails here, before anything is written
    if data_root is None:
        raise VitsegError("--data is required (the training dataset folder)")
    spec, fixed = resolve_spec(opts, resuming)
    if spec.train.warmup_iters > spec.train.iters:
        say(f"note: warmup_iters {spec.train.warmup_iters} is more than iters {spec.train.iters}: warmup now ends "
            f"at {spec.train.iters}")
        spec = spec.updated(train={"warmup_iters": spec.train.iters})
    log_every = opts.log_every or run_info.get("log_every") or min(50, max(1, spec.train.iters // 20))

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
    return PreparedRun(out, resuming, run_info, data_root, fmt, val_root, log_every, logger_option, loggers_wanted,
                       spec, dataset, val_dataset, micro)


def _nothing_to_resume(opts: TrainOptions, out: Path, say: Callable[[str], None]) -> None:
    """--resume where no state.pt was saved yet: with --spec and --data the run starts over, else one line says
    what is missing."""
    if opts.spec and opts.data:
        say(f"note: {out} has no state.pt yet (no save was reached): the run starts from the beginning")
        return
    where = "does not exist" if not out.exists() else "has no state.pt (the run stopped before its first save)"
    raise VitsegError(f"--resume: {out} {where}, so there is nothing to resume; start the run again without "
                      "--resume, with --spec and --data")


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
