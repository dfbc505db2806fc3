"""`model.predict(image)`: segment one image from Python through the CLI's own inference path.

    model = vitseg_cli.load_model("model.safetensors")
    result = model.predict("street.jpg", mode="slide", flip=True, probs=True)
    result.labels            # (H, W) class indices, uint8 (uint16 past 255 classes)
    result.probs             # (K, H, W) float16 averaged softmax, when probs=True
    result.overlay(0.5)      # (H, W, 3) RGB uint8
    result.save("out")       # out/masks/street.png, out/color/street.png, out/overlay/street.jpg (as predict)

The image may be a path, an RGB uint8 array (H, W, 3) or (H, W) grey, or a PIL image. Inference options are the
fields of `InferenceSettings` (mode, crop_size, stride, flip, scales, batch_size, half, compile) over the spec's `test`
section; it runs `engine.inference.predict_array`, the per-image step of `iter_predictions`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from ..data.io import read_image
from ..errors import VitsegError
from ..viz import colorize
from ..viz import overlay as blend
from .inference import InferenceSettings, predict_array, resolve_device


@dataclass
class SegmentationResult:
    labels: np.ndarray  # (H, W) class indices at the image's size
    probs: Optional[np.ndarray]  # (K, H, W) float16, when asked for
    image: np.ndarray  # (H, W, 3) RGB uint8, as segmented
    class_names: list[str]
    palette: list[tuple[int, int, int]]
    path: Optional[Path] = None  # the file it came from, when it came from one

    def color(self) -> np.ndarray:
        """The label map in palette colours, (H, W, 3) RGB uint8."""
        return colorize(self.labels, self.palette)

    def overlay(self, alpha: float = 0.5) -> np.ndarray:
        """The image with the coloured label map blended over it, (H, W, 3) RGB uint8."""
        return blend(self.image, self.labels, self.palette, alpha)

    def classes_present(self) -> list[str]:
        return [self.class_names[i] for i in np.unique(self.labels)]

    def save(self, out: "str | Path", name: Optional[str] = None,
             kinds: Sequence[str] = ("masks", "color", "overlay"), alpha: float = 0.5) -> dict[str, Path]:
        """Write what `vitseg predict --save KINDS` writes for this image: `out/<kind>/<name>.<ext>` (name: the
        file's stem, else 'image'). Returns kind -> path."""
        from .predict import SAVE_KINDS, mask_dtype, output_paths, write_outputs

        bad = [k for k in kinds if k not in SAVE_KINDS]
        if bad:
            raise VitsegError(f"save: {', '.join(bad)} is not one of {', '.join(SAVE_KINDS)}")
        if "probs" in kinds and self.probs is None:
            raise VitsegError("save: no probabilities to save (predict with probs=True)")
        name = name or (self.path.stem if self.path else "image")
        paths = output_paths(Path(out), name, tuple(kinds))
        write_outputs(paths, self.labels, image=self.image, probs=self.probs, palette=self.palette, alpha=alpha,
                      mask_dtype=mask_dtype(len(self.class_names)))
        return paths


def _as_rgb(source: Any) -> tuple[np.ndarray, Optional[Path]]:
    if isinstance(source, (str, Path)):
        return read_image(source), Path(source)
    if hasattr(source, "convert") and hasattr(source, "size"):  # a PIL image, without importing PIL
        return np.asarray(source.convert("RGB")), None
    if isinstance(source, np.ndarray):
        if source.dtype != np.uint8:
            raise VitsegError(f"predict: expected a uint8 image array, got {source.dtype}")
        if source.ndim == 2:
            source = np.repeat(source[..., None], 3, axis=2)
        if source.ndim != 3 or source.shape[2] != 3 or 0 in source.shape:
            raise VitsegError(f"predict: expected an RGB array of shape (H, W, 3), got {source.shape}")
        return np.ascontiguousarray(source), None
    raise VitsegError(f"predict: expected a path, an RGB uint8 array or a PIL image, got {type(source).__name__}")


def _size_pair(value: Any) -> Any:
    return (int(value), int(value)) if isinstance(value, (int, np.integer)) else value


def predict(model: Any, source: Any, *, probs: bool = False, device: "str | torch.device | None" = None,
            **options: Any) -> SegmentationResult:
    """Segment one image with `model` (see the module docstring); runs on the model's device unless `device`."""
    unknown = set(options) - set(InferenceSettings.__dataclass_fields__)
    if unknown:
        raise TypeError(f"predict() got unknown inference options: {', '.join(sorted(unknown))} (allowed: "
                        f"{', '.join(InferenceSettings.__dataclass_fields__)})")
    for key in ("crop_size", "stride"):
        if key in options:
            options[key] = _size_pair(options[key])
    image, path = _as_rgb(source)
    spec = model.spec
    settings = InferenceSettings.from_spec(spec, **options)
    if device is None:
        first = next(iter(model.parameters()), None) if isinstance(model, torch.nn.Module) else None
        dev = first.device if first is not None else torch.device("cpu")
    else:
        dev = resolve_device(str(device))
    settings.check_device(dev)
    pred = predict_array(model, image, settings, dev, want_probs=probs, path=path)
    if pred.error:
        raise VitsegError(pred.error)
    return SegmentationResult(labels=pred.labels, probs=pred.probs, image=image, class_names=spec.class_names,
                              palette=spec.palette, path=path)
