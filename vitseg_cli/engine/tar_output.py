"""`--out-format tar`: one output shard per input shard, `OUT/shards/<shard>.tar`, in WebDataset form.

Per sample it holds `<key>.mask.png` (class indices, uint8 or uint16), `<key>.json` (`{"key", "height", "width",
"classes": {class name: pixel count}}` for the classes present) and, when saved, `<key>.color.png`,
`<key>.overlay.jpg`, `<key>.probs.npz`. A shard is written under a temporary name next to its place and renamed
when whole (or, for a URL `--out`, uploaded whole), so a killed run leaves no output shard for an unfinished input
shard and a rerun redoes exactly those.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
import uuid
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from ..data.io import encode_image
from ..viz import colorize, overlay
from .outputs import Prediction

TAR_DIR = "shards"
_FIELDS = {"color": "color.png", "overlay": "overlay.jpg", "probs": "probs.npz"}


def shard_path(out: Path, name: str) -> Path:
    return out / TAR_DIR / f"{name}.tar"


def sample_files(key: str, pred: Prediction, save: Sequence[str], class_names: Sequence[str], palette,
                 alpha: float, mask_dtype: type) -> dict[str, bytes]:
    """A sample's members (field -> bytes) for one prediction."""
    labels = pred.labels
    ids, counts = np.unique(labels, return_counts=True)
    names = [class_names[i] if i < len(class_names) else str(int(i)) for i in ids]
    info = {"key": key, "height": int(labels.shape[0]), "width": int(labels.shape[1]),
            "classes": {name: int(n) for name, n in zip(names, counts)}}
    files = {"mask.png": encode_image("m.png", labels.astype(mask_dtype, copy=False)),
             "json": (json.dumps(info, separators=(",", ":")) + "\n").encode()}
    if "color" in save:
        files["color.png"] = encode_image("c.png", colorize(labels, palette))
    if "overlay" in save and pred.image is not None:
        files["overlay.jpg"] = encode_image("o.jpg", overlay(pred.image, labels, palette, alpha))
    if "probs" in save and pred.probs is not None:
        buf = io.BytesIO()
        np.savez_compressed(buf, probs=pred.probs)
        files["probs.npz"] = buf.getvalue()
    return files


class TarShardWriter:
    """Adds samples to `<final>`'s temporary file; `finish` renames it into place (then calls `publish`, which
    uploads it for a URL --out), `abort` deletes it."""

    def __init__(self, final: Path, publish: Optional[Callable[[list[Path]], None]] = None):
        self.final, self.publish = Path(final), publish
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.final.parent / f".{self.final.name}.{uuid.uuid4().hex[:12]}.part"
        self.tar: Optional[tarfile.TarFile] = tarfile.open(self.tmp, "w")
        self.samples = 0

    def add(self, key: str, files: dict[str, bytes]) -> None:
        now = time.time()
        for field, payload in files.items():
            info = tarfile.TarInfo(f"{key}.{field}")
            info.size, info.mtime, info.mode = len(payload), now, 0o644
            self.tar.addfile(info, io.BytesIO(payload))
        self.samples += 1

    def finish(self) -> int:
        """Close and move into place; returns the shard's size in bytes."""
        self.tar.close()
        self.tar = None
        size = self.tmp.stat().st_size
        os.replace(self.tmp, self.final)
        if self.publish is not None:
            self.publish([self.final])
        return size

    def abort(self) -> None:
        if self.tar is not None:
            self.tar.close()
            self.tar = None
        self.tmp.unlink(missing_ok=True)


def remove_stale_shards(out: Path) -> int:
    """Delete temporary shards a killed run left (call only while no other process writes into `out`)."""
    folder = out / TAR_DIR
    removed = 0
    for tmp in folder.glob(".*.part") if folder.is_dir() else []:
        tmp.unlink(missing_ok=True)
        removed += 1
    return removed
