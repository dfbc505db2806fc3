"""`vitseg predict --engine ray`: the images are segmented by Ray Data actors (`vitseg_cli.ray.VitsegPredictor`,
one model per actor) instead of this process, and come back here in input order to be written by the same writer,
into the same layouts, with the same records, lock and resume as any predict run (done inputs are never sent).

The actors read the images themselves (a shared file system or object-store URLs), so the driver moves no pixels
out, only labels back (and images, for overlays). `--ray-address` joins a running cluster (`auto`, `ray://...`);
without it a local one is started. `--concurrency N` actors, each with `--num-gpus-per-worker` GPUs (0: CPU actors,
one CPU each).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

from ..errors import VitsegError
from ..ray import VitsegPredictor
from .outputs import Prediction

BATCH_SIZE = 4


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise VitsegError("--engine ray needs Ray Data: pip install 'ray[data]', or pip install -e '.[ray]' in the "
                          "vitseg clone") from None
    return ray


def _weights(weights: Any) -> Any:
    """A local weights file as an absolute path (actors may run in another folder); a zoo name as given."""
    if weights is None:
        return None
    path = Path(weights).expanduser()
    return str(path.resolve()) if path.exists() else str(weights)


def predictor_kwargs(opts: Any, keep_image: bool) -> dict[str, Any]:
    """VitsegPredictor's constructor arguments for a predict run's options (the same model and settings)."""
    gpus = float(opts.ray.get("num_gpus_per_worker") or 0)
    return {"weights": _weights(opts.weights), "spec": opts.spec,
            "backbone_weights": _weights(opts.backbone_weights), "backend": opts.backend,
            "device": opts.device if gpus else "cpu", "overrides": dict(opts.overrides),
            "spec_overrides": list(opts.spec_overrides), "keep_image": keep_image}


def ray_predictions(paths: Sequence[Any], opts: Any, keep_image: bool) -> Iterator[Prediction]:
    """One Prediction per path, in order, computed by Ray Data actors."""
    ray = _ray()
    if not ray.is_initialized():
        ray.init(address=opts.ray.get("address") or None, include_dashboard=False, log_to_driver=False)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # the writer pairs results with inputs by position
    context.enable_progress_bars = False
    gpus = float(opts.ray.get("num_gpus_per_worker") or 0)
    concurrency = max(1, int(opts.ray.get("concurrency") or 1))
    ds = ray.data.from_items([{"path": str(p)} for p in paths], override_num_blocks=max(1, min(len(paths),
                                                                                               4 * concurrency)))
    extra = {"num_gpus": gpus} if gpus else {"num_cpus": 1}
    ds = ds.map_batches(VitsegPredictor, fn_constructor_kwargs=predictor_kwargs(opts, keep_image),
                        concurrency=concurrency, batch_size=BATCH_SIZE, batch_format="numpy", **extra)
    for row in ds.iter_rows():
        if row["status"] != "ok":
            yield Prediction(labels=None, path=row["path"], error=str(row["error"]))
            continue
        image = row.get("image") if keep_image else None
        yield Prediction(labels=row["labels"], path=row["path"], image=image)
