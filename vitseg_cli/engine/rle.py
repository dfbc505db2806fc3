"""`--save rle`: every image's mask as COCO run-length encodings, one JSON line per image, appended as images finish.

`OUT/rle/<part>.jsonl` (one file per shard and rank, so that no two processes append to one file) holds lines
`{"input": rel, "height": H, "width": W, "classes": {"<id>": {"size": [H, W], "counts": "..."}}}`, one entry per
class present, encoded by pycocotools from the class's Fortran-ordered uint8 mask. Decode a line with
`pycocotools.mask.decode({"size": c["size"], "counts": c["counts"].encode()})`. A line is written whole (one write
under a lock, then flushed), and a run reads the lines already there so that a rerun skips those images.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from .line_log import LineLog

RLE_DIR = "rle"


def encode_classes(labels: np.ndarray) -> dict[str, dict]:
    """Class id (as a string) -> its COCO RLE, for each class present in the (H, W) label map."""
    classes = {}
    for cls in np.unique(labels):
        binary = np.asfortranarray(labels == cls, dtype=np.uint8)
        rle = mask_utils.encode(binary)
        classes[str(int(cls))] = {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}
    return classes


def rle_line(rel: str, labels: np.ndarray) -> str:
    height, width = labels.shape
    return json.dumps({"input": rel, "height": int(height), "width": int(width),
                       "classes": encode_classes(labels)}, separators=(",", ":")) + "\n"


def done_inputs(out: Path) -> set[str]:
    """The inputs whose line is in any `OUT/rle/*.jsonl` (any shard, rank or earlier run); a torn last line is not."""
    done = set()
    folder = out / RLE_DIR
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                done.add(json.loads(line)["input"])
            except (ValueError, KeyError, TypeError):
                continue
    return done


class RleLog(LineLog):
    """Appends lines to one `OUT/rle/<part>.jsonl`; safe to call from the writer's threads."""

    def __init__(self, out: Path, part: str):
        super().__init__(out / RLE_DIR / f"{part}.jsonl")

    def append(self, rel: str, labels: np.ndarray) -> None:
        self.write_line(rle_line(rel, labels))
