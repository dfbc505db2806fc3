"""The label treatment (reduce_zero_label) a dataset is read with, decided in one place for eval and train.

The model's spec may state it (`data.reduce_zero_label`; the official presets do); a layout may fix it (ADE20K,
COCO-Stuff 10k and Pascal Context store class k as k+1 with 0 unlabelled; Cityscapes, VOC, COCO-Stuff 164k and
Mapillary store class k as k; a classes file may say either). Where both say something and they differ, no score
could be right: that is one error naming both. Where only one says, it is applied; where neither does, labels are
read as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from ..errors import VitsegError
from .dataset_base import SegDataset
from .datasets import open_dataset


def _word(value: bool) -> str:
    return "true" if value else "false"


def apply_label_treatment(ds: SegDataset, stated: Optional[bool], stated_by: str) -> SegDataset:
    """Set `ds.reduce_zero_label` from what `stated_by` states (None: nothing) and what the layout fixes."""
    fixed = ds.fixed_reduce
    if stated is not None and fixed is not None and stated != fixed:
        raise VitsegError(f"{ds.root}: {stated_by} states reduce_zero_label: {_word(stated)} but {ds.fixed_by} needs "
                          f"reduce_zero_label: {_word(fixed)}; the labels would be scored shifted by one (use the "
                          "model's own dataset format, or a model trained on these labels)")
    ds.reduce_zero_label = bool(stated if stated is not None else fixed)
    return ds


def open_dataset_for_spec(root: "str | Path", fmt: str, split: str, spec: Any, spec_name: str = "the model's spec",
                          **options: Any) -> SegDataset:
    """`open_dataset` with the label treatment the spec (`data.reduce_zero_label`) states applied and checked."""
    ds = open_dataset(root, fmt, split, **options)
    return apply_label_treatment(ds, spec.data.reduce_zero_label, spec_name)
