"""Local stand-ins for folders at fsspec URLs, for commands that read and write plain folders (eval, visualize): an
input prefix downloaded into a temporary folder (refused above a size cap), and an output folder written locally
then uploaded file by file, each as a whole object (`storage.put_file`), so no partial object is ever visible.
The temporary folders are removed afterwards; errors and records name the URL (credentials redacted), not them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator, Optional

from ..errors import VitsegError
from . import storage

DEFAULT_MAX_BYTES = 2 * 1024 ** 3  # a dataset prefix larger than this is refused rather than downloaded
MAX_BYTES_ENV = "VITSEG_STAGE_MAX_BYTES"


def max_stage_bytes() -> int:
    text = os.environ.get(MAX_BYTES_ENV, "")
    return int(text) if text.isdigit() else DEFAULT_MAX_BYTES


def _renamed(err: VitsegError, local: Path, url: str) -> VitsegError:
    return VitsegError(str(err).replace(str(local), storage.redact(url).rstrip("/")))


def _safe_target(root: Path, rel: str, url: str) -> Path:
    parts = PurePosixPath(rel).parts
    if not parts or any(p in ("..", "") or p.startswith("/") for p in parts):
        raise VitsegError(f"{storage.join(storage.redact(url), rel)}: object key leaves the prefix; not downloaded")
    return root.joinpath(*parts)


@contextmanager
def staged_input(source: Optional[str], option: str) -> Iterator[Optional[Path]]:
    """`source` as a local folder: itself when local (or None), else the prefix's objects downloaded into a
    temporary folder, removed on exit."""
    if source is None or not storage.is_url(str(source)):
        yield None if source is None else Path(source)
        return
    url = str(source).rstrip("/")
    listed = storage.list_files(url)
    if not listed:
        raise VitsegError(f"{option} {storage.redact(url)}: no objects under this prefix")
    total, cap = sum(listed.values()), max_stage_bytes()
    if total > cap:
        raise VitsegError(f"{option} {storage.redact(url)}: {total} bytes to download is above the {cap}-byte cap "
                          f"(raise it with {MAX_BYTES_ENV}=BYTES)")
    local = Path(tempfile.mkdtemp(prefix="vitseg-in-"))
    try:
        for rel in sorted(listed):
            target = _safe_target(local, rel, url)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(storage.read_bytes(storage.join(url, rel)))
        try:
            yield local
        except VitsegError as err:
            raise _renamed(err, local, url) from None
    finally:
        shutil.rmtree(local, ignore_errors=True)


@contextmanager
def staged_output(out: "str | Path") -> Iterator[Path]:
    """`out` as a local folder: itself when local, else a temporary folder whose files are uploaded whole to the
    same keys under the URL once the block finished without an error; removed on exit."""
    if not storage.is_url(str(out)):
        yield Path(out)
        return
    url = str(out).rstrip("/")
    storage.url_to_fs(url)  # a missing driver or a malformed URL fails before the work
    local = Path(tempfile.mkdtemp(prefix="vitseg-out-"))
    try:
        try:
            yield local
        except VitsegError as err:
            raise _renamed(err, local, url) from None
        for path in sorted(p for p in local.rglob("*") if p.is_file() and not p.name.endswith(".part")):
            storage.put_file(path, storage.join(url, path.relative_to(local).as_posix()))
    finally:
        shutil.rmtree(local, ignore_errors=True)


def _key(url: str) -> str:
    """The prefix a URL names, as `bucket/path/` (a glob's or a list file's folder for those)."""
    key = storage.redact(url).split("://", 1)[-1]
    if any(c in key for c in "*?[") or key.lower().endswith(".txt"):
        key = key[:min([i for i in (key.find(c) for c in "*?[") if i >= 0] or [len(key)])].rpartition("/")[0]
    return key.rstrip("/") + "/"


def refuse_url_out_inside(out: "str | Path", inputs: Iterable[tuple[str, Optional[str]]], nested: bool = True) -> None:
    """A URL --out must not be an input prefix (or, `nested`, below one), as a local --out must not; `inputs`:
    (option, source) pairs."""
    if not storage.is_url(str(out)):
        return
    where = _key(str(out))
    for option, source in inputs:
        if source is None or not storage.is_url(str(source)):
            continue
        base = _key(str(source))
        if where == base or (nested and where.startswith(base)):
            raise VitsegError(f"--out {storage.redact(out)}: is inside {option} {storage.redact(source)}, where the "
                              "outputs would mix with the inputs; choose an --out outside them")
