"""The Python API's model: what `vitseg_cli.load_model` returns. It is the loaded `Segmentor` itself (an
`nn.Module`: a tensor still runs the plain forward), with image-level methods on top of the CLI's inference path:

    model = vitseg_cli.load_model()                    # the shipped model; or a file, a zoo name, "default"
    result = model("street.jpg")                       # one image: a path, an RGB uint8 array or a PIL image
    for result in model.predict(frames(), stream=True, batch_size=8):   # any iterable, taken lazily
        print(result.to_json())

The class lives here, above the engine, because the model package knows no engine: `load_model` loads through
`loading.load_model` and gives the model this class (a subclass adding methods only, no state).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence

import numpy as np
import torch

from ..data.inputs import collect_inputs
from ..errors import VitsegError
from ..loading import DEFAULT_MODEL, load_model as load_segmentor
from ..model.segmentor import Segmentor
from .device import resolve_device
from .inference import InferenceSettings, iter_prepared_predictions, prepare_item
from .outputs import Prediction
from .predict import _as_rgb, _size_pair
from .predict import predict as predict_one
from .threads import apply_threads, torch_threads_untouched

Result = Prediction  # the name the API's documentation uses
SHIPPED_NOTE = ("the shipped default model is a demo trained on synthetic shapes (6 classes): for real photos load "
                "an official release by name (`vitseg zoo` lists them)")


def _is_image(source: Any) -> bool:
    return isinstance(source, np.ndarray) and source.ndim in (2, 3) or (
        hasattr(source, "convert") and hasattr(source, "size"))  # a PIL image, without importing PIL


def _expand(source: Any) -> Iterator[Any]:
    """The images one source names: a file itself; a folder (searched recursively), a glob or a .txt list: its
    images, sorted; an array or PIL image: itself; a (N, H, W, 3) array: its N images."""
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if path.is_file() and path.suffix.lower() != ".txt":
            yield path
        else:  # no output folder here: os.devnull holds no input
            yield from (item.path for item in collect_inputs([str(source)], Path(os.devnull)))
    elif isinstance(source, np.ndarray) and source.ndim == 4:
        yield from source
    else:
        yield source


def _is_source(item: Any) -> bool:
    return isinstance(item, (str, Path, np.ndarray)) or _is_image(item)


def iter_sources(source: Any) -> Iterator[Any]:
    """Every image of `source`: one source (see `_expand`) or any iterable of sources (a list, a generator), lazily.
    A source of the wrong type is refused at once, before anything is read."""
    if _is_source(source):
        return _expand(source)
    if isinstance(source, torch.Tensor):
        raise VitsegError("predict: a tensor is the model's own input (call the model on it); predict takes image "
                          "paths, RGB uint8 arrays or PIL images")
    try:
        items = iter(source)
    except TypeError:
        raise VitsegError(f"predict: expected a path, an RGB uint8 array, a PIL image or an iterable of them, got "
                          f"{type(source).__name__}") from None
    return _expand_all(items)


def _expand_all(items: Iterator[Any]) -> Iterator[Any]:
    for item in items:
        if not _is_source(item):
            raise VitsegError(f"predict: an item of the iterable is a {type(item).__name__}: expected a path, an RGB "
                              "uint8 array or a PIL image")
        yield from _expand(item)


class SegmentationModel(Segmentor):
    """A loaded segmentor with the image-level API. `model(x)` on a tensor is the plain forward; on an image (path,
    array, PIL) it is `vitseg_cli.predict(model, image)`."""

    def __call__(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(x, torch.Tensor):
            return super().__call__(x, *args, **kwargs)
        if isinstance(x, (str, Path)) or _is_image(x):
            return predict_one(self, x, *args, **kwargs)
        raise TypeError(f"{type(self).__name__}() takes a normalized (B, 3, H, W) tensor (the forward), or one image:"
                        f" a path, an RGB uint8 array or a PIL image; got {type(x).__name__} (for many images: "
                        "model.predict(images))")

    def predict(self, source: Any, *, batch_size: Optional[int] = None, stream: bool = False, probs: bool = False,
                device: "str | torch.device | None" = None, keep_errors: bool = False,
                **options: Any) -> "list[Prediction] | Iterator[Prediction]":
        """Segment every image of `source`: a path (an image file, a folder searched recursively, a glob, a .txt
        list), an RGB uint8 array (or (N, H, W, 3)), a PIL image, or a list or generator of those.

        `stream=True` returns a generator: each image is read only when the previous results are taken, so a
        generator of any length runs in bounded memory; `stream=False` returns the list. `batch_size`: images of one
        size per forward pass in whole mode (windows per pass in slide mode). Runs on the model's device (which
        `load_model` chose: 'auto') unless `device`. Other options are `vitseg_cli.predict`'s. A file that cannot be
        read raises a VitsegError naming it; with `keep_errors` its result has `.error` set and no labels."""
        unknown = set(options) - set(InferenceSettings.__dataclass_fields__)
        if unknown:
            raise TypeError(f"predict() got unknown inference options: {', '.join(sorted(unknown))}")
        for key in ("crop_size", "stride"):
            if key in options:
                options[key] = _size_pair(options[key])
        if batch_size is not None:
            options["batch_size"] = batch_size
        settings = InferenceSettings.from_spec(self.spec, **options)
        first = next(iter(self.parameters()), None)
        dev = resolve_device(str(device)) if device is not None else first.device if first is not None else \
            torch.device("cpu")
        settings.check_device(dev)
        # checked now, read lazily: a wrong option or source fails here, not at the first result
        results = self._stream(iter_sources(source), settings, dev, probs, keep_errors)
        return results if stream else list(results)

    def _stream(self, sources: Iterator[Any], settings: InferenceSettings, device: torch.device, probs: bool,
                keep_errors: bool) -> Iterator[Prediction]:
        spec = self.spec
        items = self._prepared(sources, settings, keep_errors)
        for pred in iter_prepared_predictions(self, items, settings, device, want_probs=probs):
            if pred.error and not keep_errors:
                raise VitsegError(pred.error)
            yield replace(pred, class_names=spec.class_names, palette=spec.palette)

    def _prepared(self, sources: Iterable[Any], settings: InferenceSettings, keep_errors: bool) -> Iterator[dict]:
        mean, std = self.spec.data.mean, self.spec.data.std
        for index, source in enumerate(sources):
            path = Path(source) if isinstance(source, (str, Path)) else None
            try:
                image, path = _as_rgb(source)
                item = prepare_item(image, settings, mean, std, True, index, path)
            except VitsegError as err:
                if not keep_errors:
                    raise
                item = {"index": index, "path": path, "error": str(err)}
            yield item


def load_model(path: "str | Path" = DEFAULT_MODEL, spec: Any = None, device: "str | torch.device" = "auto",
               overrides: Sequence[str] = (), backbone_weights: "str | Path | None" = None,
               threads: Optional[int] = None) -> SegmentationModel:
    """`loading.load_model` (a vitseg file, an official checkpoint, a zoo name, or 'default' = the shipped model, also
    what no path gives), on `device` ('auto': CUDA when available), returned as a `SegmentationModel`.

    CPU threads: `threads` when given; else, unless the user already set torch's thread count, the rule of
    `engine.threads` (VITSEG_THREADS, OMP_NUM_THREADS, else the CPUs this process may use), with a warning when
    they oversubscribe the CPUs."""
    if threads is not None or torch_threads_untouched():
        apply_threads(threads)
    model = load_segmentor(path, spec, device=device, overrides=overrides, backbone_weights=backbone_weights)
    model.__class__ = SegmentationModel  # methods only: the loaded module, its weights and attributes stay as they are
    if str(path) == DEFAULT_MODEL:
        model.load_notes = [SHIPPED_NOTE, *model.load_notes]
    return model
