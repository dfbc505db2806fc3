"""`--out` as an fsspec URL (`s3://bucket/run/`): the run writes into a local staging folder, exactly as into a
local OUT, and every finished output file is uploaded whole to the same key under the URL, then dropped locally.

Before the run, the staging folder gets the prefix's records (the fingerprint `.vitseg-run.json`, `predict*.json`,
the manifests and RLE logs) and a listing of the objects already there: an input whose output objects all exist is
done. Output files a killed run left in staging (never uploaded) are deleted first, so they are redone. At the end
of the run every record this process wrote is uploaded whole. Uploads are whole-object writes (`data.storage`), so
no partial object is ever visible under the URL, and a run killed at any point resumes from what is there.

The staging folder is `$VITSEG_STAGING` (default `$VITSEG_HOME/staging`, `~/.cache/vitseg/staging`) /
`<digest of the URL, shard and rank>`, so that shards and ranks on one machine never share one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Iterable, Optional

from ..data import storage
from .outputs import OUTPUT_DIRS
from .tar_output import TAR_DIR

RECORDS_EVERY_S = 60.0  # the manifest and RLE logs are uploaded this often while outputs are, and at the end
RECORD_PATTERNS = (".vitseg-run.json", "predict*.json", "manifest*.jsonl", "manifest*.parquet", "rle/*.jsonl")


def staging_root() -> Path:
    if os.environ.get("VITSEG_STAGING"):
        return Path(os.environ["VITSEG_STAGING"]).expanduser()
    home = os.environ.get("VITSEG_HOME") or "~/.cache/vitseg"
    return Path(home).expanduser() / "staging"


def _is_record(rel: str) -> bool:
    return any(Path(rel).match(p) and rel.count("/") == p.count("/") for p in RECORD_PATTERNS)


class RemoteOutput:
    """The staging folder of one URL `--out` for one process (`part`: its shard and rank)."""

    def __init__(self, url: str, part: str = ""):
        self.url = url.rstrip("/")
        digest = hashlib.sha256(f"{storage.redact(self.url)}\0{part}".encode()).hexdigest()[:16]
        self.staging = staging_root() / f"{storage.local_name(self.url)[-60:]}-{digest}"
        self.existing: set[str] = set()
        self.bytes_written = 0
        self._lock = threading.Lock()
        self._records_lock = threading.Lock()
        self._started = self._records_at = time.time()

    def open(self) -> Path:
        """Prepare the staging folder (leftovers dropped, records downloaded) and list the objects there."""
        for kind in (*OUTPUT_DIRS, TAR_DIR):
            shutil.rmtree(self.staging / kind, ignore_errors=True)
        self.staging.mkdir(parents=True, exist_ok=True)
        listed = storage.list_files(self.url)
        self.existing = set(listed)
        for rel in sorted(r for r in listed if _is_record(r)):
            target = self.staging / rel
            if rel.endswith(".jsonl") and target.is_file() and target.stat().st_size >= listed[rel]:
                continue  # a log this machine's killed run went on appending to: the longer one
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(storage.read_bytes(storage.join(self.url, rel)))
        self._started = time.time()
        return self.staging

    def exists(self, path: Path) -> bool:
        """Whether a file of the staging folder exists, here or as an object under the URL."""
        path = Path(path)
        if path.exists():
            return True
        try:
            return path.relative_to(self.staging).as_posix() in self.existing
        except ValueError:
            return False

    def has(self, rel: str) -> bool:
        return rel in self.existing

    def publish(self, paths: Iterable[Path]) -> None:
        """Upload finished files (each whole) to their keys under the URL, then drop them locally."""
        for path in paths:
            path = Path(path)
            rel = path.relative_to(self.staging).as_posix()
            size = path.stat().st_size
            storage.put_file(path, storage.join(self.url, rel))
            path.unlink(missing_ok=True)
            with self._lock:
                self.bytes_written += size
                self.existing.add(rel)
        if time.time() - self._records_at >= RECORDS_EVERY_S and self._records_lock.acquire(blocking=False):
            try:  # so that a rerun elsewhere after a SIGKILL trusts all but the last minute's outputs
                self._records_at = time.time()
                self.publish_records()
            finally:
                self._records_lock.release()

    def publish_records(self) -> None:
        """Upload the records this process wrote since `open` (the fingerprint, predict.json, logs)."""
        for pattern in RECORD_PATTERNS:
            for path in sorted(self.staging.glob(pattern)):
                if path.is_file() and not path.name.endswith(".part") and path.stat().st_mtime >= self._started:
                    size = path.stat().st_size
                    storage.put_file(path, storage.join(self.url, path.relative_to(self.staging).as_posix()))
                    with self._lock:
                        self.bytes_written += size


def open_remote(out: "str | Path", part: str) -> Optional[RemoteOutput]:
    """The staging of `out` when it is a URL, opened; None for a local folder."""
    if not storage.is_url(str(out)):
        return None
    remote = RemoteOutput(str(out), part)
    remote.open()
    return remote
