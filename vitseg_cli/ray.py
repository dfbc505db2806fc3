"""Ray Data: a callable class for `map_batches`, loading the model once per actor and segmenting through the same
loading function and inference engine as `vitseg predict`, so the labels are identical.

    import ray
    from vitseg_cli.ray import VitsegPredictor

    ds = ray.data.read_binary_files("s3://bucket/images/", include_paths=True)      # or read_images(...)
    ds = ds.map_batches(VitsegPredictor, fn_constructor_kwargs={"weights": "model.safetensors"},
                        concurrency=4, num_gpus=1, batch_size=8)
    for row in ds.iter_rows(): row["path"], row["labels"], row["status"], row["error"]

A batch holds decoded images (`image`: RGB uint8 (H, W, 3) arrays, as `read_images` gives), or encoded files
(`bytes`), or file paths / URLs only (`path`, read by the actor). Each row comes back with `status` ("ok" or
"error"), `error` (the one-line reason, "" when ok) and `labels` ((H, W) class indices; an empty (0, 0) array for a
failed row), or, with `output="rle"`, `rle` (the JSON of the classes' COCO RLEs, as `--save rle` writes them).
A bad image is a row with its error, never an exception that stops the dataset.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .data.io import decode_image, read_image
from .engine.common import load_backend
from .engine.device import resolve_device
from .engine.inference import InferenceSettings, predict_array
from .engine.rle import encode_classes
from .errors import VitsegError, first_line

OUTPUTS = ("labels", "rle")


class VitsegPredictor:
    """`ds.map_batches(VitsegPredictor, fn_constructor_kwargs={...}, concurrency=N, num_gpus=G)`; the constructor
    takes `vitseg predict`'s model options: weights (a file or zoo name; None: the default model), spec,
    backbone_weights, backend, device ("auto": the actor's GPU when Ray gave it one), overrides (inference settings:
    mode, crop_size, flip, scales, ...), spec_overrides (`--set` strings); output "labels" or "rle"; keep_image
    returns the decoded image too (`image`), for overlays."""

    def __init__(self, weights: "str | Path | None" = None, *, spec: Optional[str] = None,
                 backbone_weights: "str | Path | None" = None, backend: Optional[str] = None, device: str = "auto",
                 overrides: Optional[dict[str, Any]] = None, spec_overrides: Sequence[str] = (),
                 output: str = "labels", keep_image: bool = False):
        if output not in OUTPUTS:
            raise VitsegError(f"VitsegPredictor: output {output!r} is not one of {', '.join(OUTPUTS)}")
        self.device = resolve_device(device)
        weights = Path(weights) if weights is not None else None
        self.model = load_backend(backend, weights, spec, self.device, note=None, overrides=overrides,
                                  spec_overrides=list(spec_overrides),
                                  backbone_weights=Path(backbone_weights) if backbone_weights else None)
        self.settings = InferenceSettings.from_spec(self.model.spec, **(overrides or {}))
        self.settings.check_device(self.device)
        self.output, self.keep_image = output, keep_image

    def _image(self, batch: dict[str, Any], i: int, name: str) -> np.ndarray:
        if "image" in batch:
            image = np.asarray(batch["image"][i])
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise VitsegError(f"{name}: expected an RGB uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
            return np.ascontiguousarray(image)
        if "bytes" in batch:
            return decode_image(bytes(batch["bytes"][i]), name)
        return read_image(name)

    def _one(self, batch: dict[str, Any], i: int, name: str) -> tuple[Optional[np.ndarray], Any, str]:
        try:
            image = self._image(batch, i, name)
            pred = predict_array(self.model, image, self.settings, self.device)
        except Exception as err:  # one bad image must not stop the dataset
            return None, None, first_line(err)[:500]
        if pred.error:
            return None, None, pred.error
        return pred.labels, image, ""

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        column = next((c for c in ("image", "bytes", "path") if c in batch), None)
        if column is None:
            raise VitsegError("VitsegPredictor: a batch needs an 'image', 'bytes' or 'path' column")
        count = len(batch[column])
        names = [str(p) for p in batch["path"]] if "path" in batch else [f"row {i}" for i in range(count)]
        rows = [self._one(batch, i, names[i]) for i in range(count)]
        out = {k: v for k, v in batch.items() if k not in ("image", "bytes")}
        out["status"] = np.array(["ok" if not err else "error" for _, _, err in rows])
        out["error"] = np.array([err for _, _, err in rows])
        empty = np.zeros((0, 0), dtype=np.uint8)
        if self.output == "rle":
            out["rle"] = np.array([json.dumps(encode_classes(lab)) if lab is not None else "" for lab, _, _ in rows])
        else:
            out["labels"] = _ragged([lab if lab is not None else empty for lab, _, _ in rows])
        if self.keep_image:
            out["image"] = _ragged([img if img is not None else np.zeros((0, 0, 3), np.uint8) for _, img, _ in rows])
        return out


def _ragged(arrays: list[np.ndarray]) -> np.ndarray:
    """A batch column of arrays of different shapes (Ray stores it as a variable-shaped tensor column)."""
    column = np.empty(len(arrays), dtype=object)
    column[:] = arrays
    return column
