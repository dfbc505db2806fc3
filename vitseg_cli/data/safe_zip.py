"""Zip archives read within bounds: a small archive can inflate to gigabytes (a zip bomb).

Before anything is inflated, each member's size as the archive's directory declares it is checked against a limit
(the caller's: a release's known size, else VITSEG_ZIP_MAX_BYTES, default 64 GiB) and against its compressed size:
checkpoints hold float weights, which deflate hardly at all, so a member declaring more than MAX_RATIO times its
compressed size (plus 1 MiB) is refused. While a member is inflated, the bytes are counted too: a directory that
lies about a size is cut at the size it declared. Refusals are one `VitsegError` line naming the archive.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Iterable, Optional

from ..errors import VitsegError

MAX_BYTES_ENV = "VITSEG_ZIP_MAX_BYTES"
DEFAULT_MAX_BYTES = 64 << 30
MAX_RATIO = 100  # deflated float weights shrink by about 1.1x; a zip bomb by about 1000x
RATIO_SLACK = 1 << 20  # small text members (a README, a config) may compress well
CHUNK = 1 << 20


def max_bytes() -> int:
    """VITSEG_ZIP_MAX_BYTES: the most bytes one archive member may inflate to (default 64 GiB)."""
    text = os.environ.get(MAX_BYTES_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_BYTES
    try:
        value = int(float(text))
    except ValueError:
        value = 0
    if value <= 0:
        raise VitsegError(f"{MAX_BYTES_ENV}={text!r}: expected a positive number of bytes")
    return value


def check_members(archive_path: "str | Path", members: Iterable[zipfile.ZipInfo],
                  limit: Optional[int] = None) -> None:
    """Refuse the archive when a member's declared size passes `limit` (default `max_bytes()`) or MAX_RATIO times
    its compressed size, before anything is inflated."""
    limit = max_bytes() if limit is None else limit
    for info in members:
        if info.file_size > limit:
            raise VitsegError(f"{archive_path}: {info.filename} would inflate to {info.file_size} bytes, more than "
                              f"the {limit} allowed ({MAX_BYTES_ENV}); nothing was extracted")
        if info.file_size > MAX_RATIO * info.compress_size + RATIO_SLACK:
            raise VitsegError(f"{archive_path}: {info.filename} would inflate {info.compress_size} bytes to "
                              f"{info.file_size} (a zip bomb: weights do not compress {MAX_RATIO}x); nothing was "
                              "extracted")


def extract_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, archive_path: "str | Path",
                   limit: Optional[int] = None) -> None:
    """Inflate one member to `dest` (a new file), after `check_members`, counting the bytes as they come; on any
    refusal or error `dest` is removed."""
    check_members(archive_path, [info], limit)
    allowed = info.file_size
    written = 0
    try:
        with archive.open(info) as src, open(dest, "wb") as out:
            while block := src.read(CHUNK):
                written += len(block)
                if written > allowed:
                    raise VitsegError(f"{archive_path}: {info.filename} inflates past the {allowed} bytes its "
                                      "directory declares; nothing was extracted")
                out.write(block)
    except BaseException:
        Path(dest).unlink(missing_ok=True)
        raise
