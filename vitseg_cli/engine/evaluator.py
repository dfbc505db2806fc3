"""The one scorer of segmentation quality, shared by `vitseg eval` and validation during training.

`SegEvaluator` follows the reset / process / evaluate protocol of a detectron2 `DatasetEvaluator`: `process` adds one
image's prediction and label to a confusion matrix (and returns that image's row), `evaluate` sums the matrices and
gathers the rows over ranks and returns the summary (aAcc, mIoU, mAcc, per-class scores) on rank 0.
`score_model` runs a model over dataset samples through the shared inference and feeds an evaluator, so validation
and eval score in the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np
import torch

from ..data.datasets import check_same_size
from ..errors import VitsegError
from ..metrics import ConfusionMatrix, image_scores, summarize
from .distributed import DistContext
from .inference import iter_predictions


@dataclass
class Scores:
    """What `SegEvaluator.evaluate` returns: the summary, the summed confusion matrix and the per-image rows (in
    dataset order, without their index)."""

    summary: dict
    matrix: np.ndarray
    per_image: list[dict]

    def headline(self) -> dict[str, float]:
        return {k: float(self.summary[k]) for k in ("aAcc", "mIoU", "mAcc")}


class SegEvaluator:
    """Confusion matrix + per-image scores over a stream of (prediction, label) pairs."""

    def __init__(self, num_classes: int, ignore_index: int, class_names: Optional[Sequence[str]] = None):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_names = list(class_names) if class_names is not None else None
        self.reset()

    def reset(self) -> None:
        self.matrix = ConfusionMatrix(self.num_classes, self.ignore_index)
        self.rows: list[dict] = []

    def process(self, index: int, key: str, pred: np.ndarray, label: np.ndarray,
                source: Optional[str] = None) -> dict:
        """Add one image; its row is {index, key, pixel_acc, mIoU, labelled_pixels}."""
        one = self.matrix.update(pred, label, source=source)
        acc, miou = image_scores(one)
        row = {"index": index, "key": key, "pixel_acc": acc, "mIoU": miou, "labelled_pixels": int(one.sum())}
        self.rows.append(row)
        return row

    def evaluate(self, ctx: Optional[DistContext] = None) -> Optional[Scores]:
        """The scores over every rank's images (a collective when `ctx` is active); None on ranks other than 0."""
        matrix, rows = self.matrix.matrix, self.rows
        if ctx is not None:
            matrix = ctx.sum_array(matrix)
            rows = [r for part in ctx.gather(rows) for r in part]
            if not ctx.is_main:
                return None
        rows = sorted((dict(r) for r in rows), key=lambda r: r["index"])
        for r in rows:
            r.pop("index", None)
        return Scores(summarize(matrix, self.class_names), matrix, rows)


# what a caller may do with each prediction besides scoring it: (dataset index, prediction, label)
OnPrediction = Callable[[int, Any, np.ndarray], None]


def score_model(model: Any, dataset: Any, indices: Iterable[int], settings: Any, device: torch.device,
                evaluator: SegEvaluator, *, workers: int = 0, keep_image: bool = False,
                on_prediction: Optional[OnPrediction] = None, progress: Any = None) -> None:
    """Predict `dataset.samples[i]` for each index with the shared inference and add each to `evaluator`; a
    prediction whose size differs from its label, or an unreadable image, is an error naming the file."""
    indices = list(indices)
    preds = iter_predictions(model, [dataset.samples[i].image for i in indices], settings, device,
                             workers=workers, keep_image=keep_image)
    for i, pred in zip(indices, preds):
        if pred.error:
            raise VitsegError(pred.error)
        label = dataset.read_label(i)
        source = dataset.label_source(i)
        check_same_size(label, pred.labels.shape, source)
        if on_prediction is not None:
            on_prediction(i, pred, label)
        evaluator.process(i, dataset.samples[i].key, pred.labels, label, source)
        if progress is not None:
            progress.advance()
