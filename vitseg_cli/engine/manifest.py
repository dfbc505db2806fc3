"""The manifest of a predict output folder: one JSON line per input a run wrote (or failed), the machine-readable
record of the run and what a resume trusts.

`OUT/manifest.jsonl`; a sharded or torchrun run writes `OUT/manifest-<part>.jsonl` per shard and rank instead, so
that no two processes ever append to one file (readers take every `manifest*.jsonl`). A line:

    {"name": rel, "input": path, "root": its root folder, "identity": {"path": path relative to the root, "size":
     bytes, "mtime_ns": ns, ["sha256": hex]}, "status": "ok" | "failed", "error": null | text,
     "outputs": {kind: path relative to OUT}, "classes": {class: pixel fraction}, "top1_mean": p, "top1_min": p,
     "frames": n (videos), "infer_s": s, "time": ISO-8601 UTC}

An input's identity is its path relative to its root, its size and its modification time (`--identity hash` adds
the sha256 of its bytes, and then the hash decides instead of the time). A line is written whole and flushed before
the last of its image's files lands, so every output file on disk has its line; an input's outputs are trusted by a
rerun only when the newest line for its name is "ok", lists them, and has the identity of the file now under that
name.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Optional, TextIO

import numpy as np

from ..data.inputs import InputImage
from .line_log import LineLog

IDENTITY_MODES = ("stat", "hash")
PREFIX = "manifest"


def manifest_name(part: Optional[str]) -> str:
    """`manifest.jsonl` for a lone process; `manifest-<part>.jsonl` for one shard or rank of several."""
    return f"{PREFIX}.jsonl" if part is None else f"{PREFIX}-{part}.jsonl"


def manifest_files(out: Path) -> list[Path]:
    return sorted(p for p in Path(out).glob(f"{PREFIX}*.jsonl") if p.is_file())


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def identity(item: InputImage, mode: str = "stat", hashes: Optional[dict[tuple, str]] = None) -> dict[str, Any]:
    """What tells this input's file from another under the same name (see the module's docstring). `hashes`: the
    sha256 of files already read, by (path, size, mtime_ns), reused while the file's stat is unchanged."""
    if not isinstance(item, InputImage):  # an object in a store or a tar shard: it says itself
        return item.identity(mode)
    st = os.stat(item.path)
    found: dict[str, Any] = {"path": item.source_rel or item.path.name, "size": st.st_size,
                             "mtime_ns": st.st_mtime_ns}
    if mode == "hash" and item.path.is_file():  # never opens a FIFO or a device
        key = (str(item.path), st.st_size, st.st_mtime_ns)
        digest = hashes.get(key) if hashes is not None else None
        found["sha256"] = digest or _sha256(item.path)
        if hashes is not None:
            hashes[key] = found["sha256"]
    return found


def same_identity(old: dict[str, Any], new: dict[str, Any]) -> bool:
    if old.get("path") != new.get("path") or old.get("size") != new.get("size"):
        return False
    if "sha256" in old and "sha256" in new:
        return old["sha256"] == new["sha256"]
    return old.get("mtime_ns") == new.get("mtime_ns")


def describe(ident: dict[str, Any]) -> str:
    digest = f", sha256 {ident['sha256'][:12]}" if "sha256" in ident else ""
    return f"{ident.get('path')} ({ident.get('size')} bytes{digest})"


def read_manifest(out: Path) -> dict[str, dict[str, Any]]:
    """Name -> the newest line for it (ok or failed), over every manifest part of `out`; a torn line (a killed
    run's) is ignored."""
    lines = []
    for path in manifest_files(out):
        for text in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                line = json.loads(text)
                if isinstance(line, dict) and isinstance(line.get("name"), str):
                    lines.append(line)
            except ValueError:
                continue
    lines.sort(key=lambda line: str(line.get("time", "")))
    return {line["name"]: line for line in lines}


def now() -> str:
    """UTC to the microsecond: lines of every part sort by it."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1e6) % 1_000_000:06d}Z"


def class_fractions(labels: np.ndarray, class_names: list[str]) -> dict[str, float]:
    """Class name -> the fraction of the pixels predicted as it, for each class present."""
    ids, counts = np.unique(labels, return_counts=True)
    total = max(1, labels.size)
    return {(class_names[i] if i < len(class_names) else str(int(i))): round(int(c) / total, 6)
            for i, c in zip(ids, counts)}


def image_line(item: InputImage, ident: dict[str, Any], outputs: dict[str, str], *, status: str = "ok",
               error: Optional[str] = None, labels: Optional[np.ndarray] = None, class_names: list[str] = (),
               top1: Optional[tuple[float, float]] = None, infer_s: Optional[float] = None,
               frames: Optional[int] = None) -> dict[str, Any]:
    line: dict[str, Any] = {"name": item.rel, "input": str(item.path), "root": image_root(item), "identity": ident,
                            "status": status, "error": error, "outputs": outputs}
    if labels is not None:
        line["classes"] = class_fractions(labels, list(class_names))
    if top1 is not None:
        line["top1_mean"], line["top1_min"] = round(top1[0], 6), round(top1[1], 6)
    if frames is not None:
        line["frames"] = frames
    if infer_s is not None:
        line["infer_s"] = round(infer_s, 4)
    line["time"] = now()
    return line


def image_root(item: InputImage) -> str:
    """The absolute folder the input's identity path is relative to."""
    if not isinstance(item, InputImage):  # an object in a store, a tar shard or one of its samples
        return item.root
    path = Path(os.path.abspath(item.path))
    depth = len(Path(item.source_rel).parts) if item.source_rel else 1
    return str(path.parents[depth - 1])


class ManifestLog(LineLog):
    """Appends lines to one manifest part; safe from the writer's threads. `echo`: also print each line (`--json`)."""

    def __init__(self, out: Path, part: Optional[str], echo: Optional[TextIO] = None,
                 on_line: Optional[Callable[[dict[str, Any]], None]] = None):
        super().__init__(Path(out) / manifest_name(part))
        self.echo = echo
        self.on_line = on_line

    def append(self, line: dict[str, Any]) -> None:
        text = json.dumps(line, separators=(",", ":"), default=str) + "\n"

        def then() -> None:
            if self.echo is not None:
                self.echo.write(text)
                self.echo.flush()
            if self.on_line is not None:
                self.on_line(line)

        self.write_line(text, then)
