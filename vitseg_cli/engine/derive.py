"""Kinds added to a finished run from its saved masks, with no inference: `--save masks` first, `--save
masks,color,overlay,rle` later writes the colour maps, overlays (blended over the input image, read again) and RLE
lines of the images whose masks are there. Probabilities cannot be made from a mask: those images are predicted
again instead (`engine/resume.py` decides which).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from ..data.inputs import InputImage
from ..data.io import read_image, read_label
from ..errors import VitsegError
from .manifest import ManifestLog, image_line
from .outputs import output_paths, write_outputs
from .resume import listed_files
from .rle import RleLog


def derive_outputs(out: Path, item: InputImage, line: dict[str, Any], save: Sequence[str], *, palette,
                   alpha: float, class_names: Sequence[str], ident: dict[str, Any],
                   manifest: Optional[ManifestLog], rle: Optional[RleLog]) -> bool:
    """Write the asked kinds that `line`'s mask can give; False (nothing written) when the mask or the image cannot
    be read, so that the caller predicts the image instead."""
    listed = listed_files(out, line)
    kinds = [k for k in save if k in ("color", "overlay") and not (k in listed and listed[k].exists())]
    try:
        labels = read_label(listed["masks"])
        image = read_image(item.path) if "overlay" in kinds else None
    except (VitsegError, KeyError):
        return False
    if image is not None and image.shape[:2] != labels.shape:
        return False
    paths = output_paths(out, item.rel, kinds)
    outputs = {kind: path.relative_to(out).as_posix() for kind, path in listed.items() if path.exists()}
    outputs.update({kind: path.relative_to(out).as_posix() for kind, path in paths.items()})
    if rle is not None:  # given only when this image's RLE line is missing
        outputs["rle"] = rle.path.relative_to(out).as_posix()
    elif "rle" in (line.get("outputs") or {}):
        outputs["rle"] = str(line["outputs"]["rle"])
    top1 = (line["top1_mean"], line["top1_min"]) if "top1_mean" in line and "top1_min" in line else None
    new_line = image_line(item, ident, outputs, labels=labels, class_names=class_names, top1=top1)
    write_outputs(paths, labels, image=image, probs=None, palette=palette, alpha=alpha, mask_dtype=labels.dtype.type,
                  before_last=(lambda: manifest.append(new_line)) if manifest is not None else None)
    if rle is not None:
        rle.append(item.rel, labels)
    return True
