"""Where training metrics go besides log.csv: TensorBoard, MLflow, Weights & Biases, or a logger of one's own.

`vitseg train --logger tb,mlflow` picks them; without the option, TensorBoard is used when its package is installed
(`pip install tensorboard`, or `pip install -e '.[tb]'` in the vitseg clone), and `--logger none` turns every one
off. A logger asked for whose package is missing is an error before training starts. MLflow and W&B are used as
installed and configured by the user (their own environment variables: MLFLOW_TRACKING_URI, WANDB_PROJECT,
WANDB_MODE, ...).

A logger is any object with `log(metrics: dict[str, float], step: int)` and `close()`; metric names are `train/loss`,
`train/loss_aux`, `train/lr`, `train/time`, `val/mIoU`, `val/aAcc`, `val/mAcc`. Others plug in by name with
`register_logger(name, factory)` or a `vitseg.loggers` entry point; a factory is called as
`factory(run_dir: Path, config: dict)` (config: the run's recipe and data) and returns the logger.
"""

from __future__ import annotations

import importlib
import importlib.util
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

from ..errors import VitsegError

ENTRY_POINT_GROUP = "vitseg.loggers"


class Logger(Protocol):
    def log(self, metrics: dict[str, float], step: int) -> None: ...

    def close(self) -> None: ...


Factory = Callable[[Path, dict[str, Any]], Logger]


class _TensorBoard:
    def __init__(self, run_dir: Path, config: dict[str, Any]):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / "tb"))

    def log(self, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        self.writer.close()


class _MLflow:
    def __init__(self, run_dir: Path, config: dict[str, Any]):
        import mlflow

        self.mlflow = mlflow
        self.own_run = mlflow.active_run() is None  # inside a user's `with mlflow.start_run()`: log into theirs
        if self.own_run:
            mlflow.start_run(run_name=run_dir.name)
        mlflow.log_params({k: v for k, v in config.items() if v is not None})

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.mlflow.log_metrics(metrics, step=step)

    def close(self) -> None:
        if self.own_run:
            self.mlflow.end_run()


class _WandB:
    def __init__(self, run_dir: Path, config: dict[str, Any]):
        import wandb

        self.run = wandb.init(name=run_dir.name, dir=str(run_dir), config=config)

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def close(self) -> None:
        self.run.finish()


# name -> (factory, the module it needs, how to install it)
_BUILTIN: dict[str, tuple[Factory, str, str]] = {
    "tb": (_TensorBoard, "tensorboard", "pip install tensorboard, or pip install -e '.[tb]' in the vitseg clone"),
    "mlflow": (_MLflow, "mlflow", "pip install mlflow"),
    "wandb": (_WandB, "wandb", "pip install wandb"),
}
_REGISTERED: dict[str, Factory] = {}


def register_logger(name: str, factory: Factory) -> None:
    """Make `--logger NAME` build `factory(run_dir, config)`."""
    _REGISTERED[name] = factory


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a module set to None in sys.modules, or a broken install
        return False


def _plugin(name: str) -> Optional[Factory]:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep.load()
    return None


def logger_names(option: Optional[str]) -> list[str]:
    """The loggers `--logger` asks for (checked: known and installed); no option = tb if installed."""
    if option is None:
        return ["tb"] if _installed("tensorboard") else []
    names = list(dict.fromkeys(n.strip().lower() for n in option.split(",") if n.strip()))
    if names == ["none"]:
        return []
    if "none" in names or not names:
        raise VitsegError(f"--logger {option}: give logger names separated by commas, or none alone")
    for name in names:
        if name in _REGISTERED:
            continue
        if name in _BUILTIN:
            _, module, install = _BUILTIN[name]
            if not _installed(module):
                raise VitsegError(f"--logger {name}: the {module} package is not installed ({install})")
            continue
        if _plugin(name) is None:
            known = sorted({*_BUILTIN, *_REGISTERED, *(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))})
            raise VitsegError(f"--logger {name}: unknown logger (available: {', '.join(known)}, none)")
    return names


def build_loggers(names: list[str], run_dir: Path, config: dict[str, Any]) -> list[Logger]:
    loggers = []
    for name in names:
        factory = _REGISTERED.get(name) or (_BUILTIN[name][0] if name in _BUILTIN else _plugin(name))
        try:
            loggers.append(factory(run_dir, config))
        except VitsegError:
            raise
        except Exception as err:  # a tracking server that cannot be reached, a bad API key, ...
            raise VitsegError(f"--logger {name}: could not start ({type(err).__name__}: "
                              f"{str(err).strip().splitlines()[0] if str(err).strip() else ''})") from None
    return loggers


def metric_names(row: dict[str, Any]) -> dict[str, float]:
    """A log.csv row as logger metrics: training values under train/, validation under val/."""
    return {(f"train/{k}" if k in ("lr", "time") or k.startswith("loss") else f"val/{k}"): float(v)
            for k, v in row.items() if k != "iter" and v is not None}
