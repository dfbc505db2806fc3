"""The training loop's skeleton and its hooks, in the manner of detectron2's `TrainerBase` / `HookBase`.

`TrainerBase.train` runs `before_train`, then per iteration `before_step`, `run_step`, `after_step`, then
`after_train` (only when the loop ends normally or by a stop request; an error propagates without it, so nothing is
saved from a run that failed). Hooks are called in the order they were registered. `trainer.iter` is the number of
completed iterations: inside `after_step` it is the iteration that just ran (1-based).

The hooks of `vitseg train`: `StopHook` (iteration limit and SIGINT / SIGTERM), `EvalHook` (validation, best
checkpoint, confusion matrix and sample panels), `LogHook` (log.csv, metric loggers, progress bar), `CheckpointHook`
(periodic and final state) and `PlotHook` (loss / lr / mIoU curves).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from pathlib import Path
from typing import Any, Optional

from ..errors import VitsegError
from .evaluator import SegEvaluator, score_model
from .inference import InferenceSettings
from .loggers import metric_names
from .train_plots import SampleCollector, write_confusion, write_curves


class HookBase:
    """Does nothing at every point of the loop; subclasses override what they need. `self.trainer` is set when the
    hook is registered."""

    trainer: "TrainerBase"

    def before_train(self) -> None:
        pass

    def after_train(self) -> None:
        pass

    def before_step(self) -> None:
        pass

    def after_step(self) -> None:
        pass


class TrainerBase:
    """Iterations from `start_iter` to `max_iter`, with hooks around each; `run_step` is the subclass's."""

    def __init__(self) -> None:
        self.hooks: list[HookBase] = []
        self.iter = self.start_iter = self.max_iter = 0
        self.stop_requested = False
        self.interrupted = False
        self.exit_stack: Optional[contextlib.ExitStack] = None  # hooks enter contexts that end with the loop

    def register_hooks(self, hooks: list[Optional[HookBase]]) -> None:
        for hook in hooks:
            if hook is not None:
                hook.trainer = self
                self.hooks.append(hook)

    def request_stop(self, interrupted: bool = False) -> None:
        """End the loop after the current hook point (`interrupted`: by a signal, not by the iteration limit)."""
        self.stop_requested = True
        self.interrupted = self.interrupted or interrupted

    def train(self, start_iter: int, max_iter: int) -> None:
        self.iter = self.start_iter = start_iter
        self.max_iter = max_iter
        with contextlib.ExitStack() as stack:
            self.exit_stack = stack
            self._call("before_train")
            while self.iter < self.max_iter and not self.stop_requested:
                self._call("before_step")
                if self.stop_requested:
                    break
                self.run_step()
                self.iter += 1
                self._call("after_step")
        self.exit_stack = None
        self._call("after_train")

    def run_step(self) -> None:
        raise NotImplementedError

    def _call(self, point: str) -> None:
        for hook in self.hooks:
            getattr(hook, point)()


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


class StopHook(HookBase):
    """Stops at iteration `stop_at` (the schedule may go further), or at the first iteration boundary after
    SIGINT / SIGTERM on any rank (every rank stops at the same iteration)."""

    def __init__(self, stop_at: int):
        self.stop_at = stop_at
        self.flag = _StopFlag()

    def before_train(self) -> None:
        self.trainer.exit_stack.enter_context(self.flag)

    def before_step(self) -> None:
        if self.trainer.ctx.any(self.flag.requested):
            self.trainer.request_stop(interrupted=True)

    def after_step(self) -> None:
        if self.trainer.iter >= self.stop_at:
            self.trainer.request_stop()


class EvalHook(HookBase):
    """Validation every `eval_every` iterations and at the last one, on rank 0, through the evaluator `vitseg eval`
    uses; keeps best.safetensors (highest mIoU) and writes a confusion matrix and sample panels into RUN/plots."""

    def __init__(self, dataset: Any, eval_every: int, samples: int = 4):
        self.dataset = dataset
        self.eval_every = eval_every
        self.samples = samples
        self.metrics: dict[str, float] = {}  # of the validation that ran in this step, else empty
        self.last: dict[str, float] = {}

    def due(self, iteration: int) -> bool:
        return bool(self.eval_every and (iteration % self.eval_every == 0 or iteration == self.trainer.total_iters))

    def after_step(self) -> None:
        tr = self.trainer
        self.metrics = {}
        if not self.due(tr.iter):
            return
        if tr.ctx.is_main:
            self.metrics = self.last = self._validate(tr.iter)
            tr.progress.print(f"iteration {tr.iter}: mIoU {self.metrics['mIoU']:.4f}, aAcc {self.metrics['aAcc']:.4f}")
            if tr.best_score is None or self.metrics["mIoU"] > tr.best_score:
                tr.best_score, tr.best_iter = self.metrics["mIoU"], tr.iter
                tr.save_best()
        tr.best_score, tr.best_iter = tr.ctx.gather((tr.best_score, tr.best_iter))[0]
        if not tr.ctx.is_main:
            self.metrics = {"validated": 1.0}  # other ranks log the row too (their loss mean is a collective)

    def _validate(self, iteration: int) -> dict[str, float]:
        tr, ds = self.trainer, self.dataset
        spec = tr.model.spec
        evaluator = SegEvaluator(spec.model.num_classes, ds.ignore_index, spec.class_names)
        collect = SampleCollector(ds, spec, self.samples)
        was_training = tr.model.training
        try:
            score_model(tr.model, ds, range(len(ds)), InferenceSettings.from_spec(spec), tr.ctx.device, evaluator,
                        keep_image=self.samples > 0, on_prediction=collect)
        finally:
            tr.model.train(was_training)
        scores = evaluator.evaluate()
        plots = tr.out / "plots"
        write_confusion(plots / f"confusion_iter{iteration}.png", scores.matrix, spec.class_names)
        collect.write(plots, iteration)
        return scores.headline()


class LogHook(HookBase):
    """Averages the step losses over a window and writes a row to log.csv and the metric loggers every
    `log_every` iterations, at the last one and at each validation; moves the progress bar every step."""

    def __init__(self, log: Any, loggers: list, log_every: int, eval_hook: Optional[EvalHook]):
        self.log, self.loggers, self.log_every, self.eval_hook = log, loggers, log_every, eval_hook
        self.last_loss: Optional[float] = None
        self._reset()

    def _reset(self) -> None:
        self.terms: dict[str, float] = {}
        self.n, self.iters, self.t0 = 0, 0, time.perf_counter()

    def after_step(self) -> None:
        tr = self.trainer
        for key, value in tr.step_losses.items():
            self.terms[key] = self.terms.get(key, 0.0) + value
        self.n += tr.step_count
        self.iters += 1
        metrics = self.eval_hook.metrics if self.eval_hook is not None else {}
        if tr.iter % self.log_every == 0 or tr.stop_requested or tr.iter == tr.total_iters or metrics:
            names = list(self.terms)
            means = tr.ctx.mean([self.terms[k] / self.n for k in names])
            self.last_loss = means[0]
            row: dict[str, Any] = {"iter": tr.iter, "lr": tr.step_lr, **dict(zip(names, means)),
                                   "time": (time.perf_counter() - self.t0) / self.iters}
            row.update({k: v for k, v in metrics.items() if k != "validated"})
            if self.log is not None:
                self.log.append(row)
            for logger in self.loggers:
                logger.log(metric_names(row), tr.iter)
            self._reset()
        tr.progress.update(tr.iter, loss="-" if self.last_loss is None else f"{self.last_loss:.4f}",
                           lr=f"{tr.step_lr:.2e}")

    def after_train(self) -> None:
        for logger in self.loggers:
            logger.close()


class CheckpointHook(HookBase):
    """state.pt + last.safetensors every `save_every` iterations and when the loop ends (also on a stop request)."""

    def __init__(self, save_every: int):
        self.save_every = save_every

    def after_step(self) -> None:
        tr = self.trainer
        if tr.iter % self.save_every == 0 and not tr.stop_requested:
            tr.save_checkpoint()

    def after_train(self) -> None:
        self.trainer.save_checkpoint()


class PlotHook(HookBase):
    """RUN/plots/{loss,lr,mIoU}.png drawn from log.csv after each validation and at the end (rank 0)."""

    def __init__(self, log_path: Path, eval_hook: Optional[EvalHook]):
        self.log_path, self.eval_hook = log_path, eval_hook

    def after_step(self) -> None:
        if self.eval_hook is not None and self.eval_hook.metrics:
            self._draw()

    def after_train(self) -> None:
        self._draw()

    def _draw(self) -> None:
        try:
            write_curves(self.log_path, self.log_path.parent / "plots")
        except (OSError, VitsegError) as err:  # a plot is a convenience: never the end of a run
            self.trainer.say(f"note: could not draw the training curves ({err})")
