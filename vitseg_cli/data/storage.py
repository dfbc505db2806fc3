"""Files where they live: a local path or any fsspec URL (`s3://bucket/prefix`, `gs://`, `https://`,
`simplecache::s3://...`), behind one small set of functions: list, glob, read, exists, and whole-object writes.

A write never leaves a partial object visible: object stores (S3, GCS, Azure) make an object visible only once its
upload completed, so those are written in one put; any other filesystem gets a temporary name next to the target,
moved into place once whole. Credentials are those of the filesystem (environment, config files); URLs are shown
and recorded through `redact`, which drops a `user:password@` part, and storage options are never printed.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import IO, Any

from ..errors import VitsegError

# filesystems whose objects appear only when a put completed: no temporary key is needed (or wanted: a rename there
# is a copy)
_WHOLE_OBJECT_PROTOCOLS = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss", "r2"}
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_USERINFO = re.compile(r"(://)[^/@\s]*@")


def is_url(text: "str | Path") -> bool:
    """Whether `text` is an fsspec URL (`proto://...`, or a chain such as `simplecache::s3://...`) and not a path."""
    return isinstance(text, str) and (bool(_URL.match(text)) or ("::" in text and "://" in text))


def redact(text: "str | Path") -> str:
    """The URL with any `user:password@` removed (safe to print and to record)."""
    return _USERINFO.sub(r"\1", str(text))


def _fsspec():
    try:
        import fsspec
    except ImportError:  # pragma: no cover - fsspec comes with torch
        raise VitsegError("fsspec is needed for URL sources and outputs: pip install fsspec (and s3fs for s3://)")
    return fsspec


def url_to_fs(url: str) -> tuple[Any, str]:
    """(filesystem, path inside it) for a URL; a missing driver package is one line naming it."""
    try:
        return _fsspec().core.url_to_fs(url)
    except ImportError as err:
        raise VitsegError(f"{redact(url)}: {err.msg if hasattr(err, 'msg') else err}".splitlines()[0]) from None
    except ValueError as err:
        raise VitsegError(f"{redact(url)}: {err}") from None


def _fail(url: str, action: str, err: BaseException) -> VitsegError:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return VitsegError(f"{redact(url)}: cannot {action} ({redact(text)[:200]})")


def join(url: str, rel: str) -> str:
    """`url/rel`, for a URL or a local path."""
    if not is_url(url):
        return str(Path(url) / rel)
    return url.rstrip("/") + "/" + rel.lstrip("/")


def is_dir(url: str) -> bool:
    if not is_url(url):
        return Path(url).is_dir()
    fs, path = url_to_fs(url)
    try:
        return fs.isdir(path)
    except Exception as err:
        raise _fail(url, "list", err) from None


def exists(url: str) -> bool:
    if not is_url(url):
        return Path(url).exists()
    fs, path = url_to_fs(url)
    try:
        return fs.exists(path)
    except Exception as err:
        raise _fail(url, "look up", err) from None


def list_files(url: str) -> dict[str, int]:
    """Every file under the folder or prefix `url`, recursively: its path relative to `url` -> its size."""
    if not is_url(url):
        root = Path(url)
        return {p.relative_to(root).as_posix(): p.stat().st_size for p in root.rglob("*") if p.is_file()}
    fs, path = url_to_fs(url)
    base = path.rstrip("/")
    try:
        fs.invalidate_cache(base)  # a listing cached earlier in this process may be stale
        found = fs.find(base, detail=True, withdirs=False)
    except FileNotFoundError:
        return {}
    except Exception as err:
        raise _fail(url, "list", err) from None
    return {key[len(base):].lstrip("/"): int(info.get("size") or 0) for key, info in found.items()
            if key.startswith(base + "/") and info.get("type", "file") == "file"}


def glob(pattern: str) -> list[str]:
    """The URLs matching a glob URL (`s3://b/images/*.jpg`, `**` recursing), sorted."""
    fs, path = url_to_fs(pattern)
    prefix = pattern[:len(pattern) - len(pattern.split("://", 1)[1])] if "://" in pattern else ""
    try:
        return sorted(prefix + p for p in fs.glob(path) if fs.isfile(p))
    except Exception as err:
        raise _fail(pattern, "list", err) from None


def read_bytes(url: "str | Path") -> bytes:
    if not is_url(url):
        return Path(url).read_bytes()
    fs, path = url_to_fs(str(url))
    try:
        return fs.cat_file(path)
    except FileNotFoundError:
        raise VitsegError(f"{redact(url)}: no such object") from None
    except Exception as err:
        raise _fail(str(url), "read", err) from None


def open_read(url: "str | Path") -> IO[bytes]:
    """A binary file object, read sequentially (a tar shard streamed from an object store)."""
    if not is_url(url):
        return open(url, "rb")
    fs, path = url_to_fs(str(url))
    try:
        return fs.open(path, "rb")
    except FileNotFoundError:
        raise VitsegError(f"{redact(url)}: no such object") from None
    except Exception as err:
        raise _fail(str(url), "open", err) from None


def _temporary_key(path: str) -> str:
    head, _, name = path.rpartition("/")
    return f"{head}/.{name[:100]}.{uuid.uuid4().hex[:12]}.part" if head else f".{name}.{uuid.uuid4().hex}.part"


def write_bytes(url: str, payload: bytes) -> None:
    """Write a whole object: visible only once complete (see the module's docstring)."""
    fs, path = url_to_fs(url)
    whole = bool(set(_protocols(fs)) & _WHOLE_OBJECT_PROTOCOLS)
    try:
        if whole:
            fs.pipe_file(path, payload)
            return
        tmp = _temporary_key(path)
        fs.pipe_file(tmp, payload)
        fs.mv(tmp, path)
    except Exception as err:
        raise _fail(url, "write", err) from None


def put_file(local: "str | Path", url: str) -> None:
    """Upload a local file whole to `url` (its bytes are read at once: outputs are small)."""
    write_bytes(url, Path(local).read_bytes())


def remove(url: str) -> None:
    fs, path = url_to_fs(url)
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        return
    except Exception as err:
        raise _fail(url, "delete", err) from None


def _protocols(fs: Any) -> tuple[str, ...]:
    proto = getattr(fs, "protocol", ())
    return (proto,) if isinstance(proto, str) else tuple(proto)


def local_name(url: str) -> str:
    """A file-name-safe label of a URL, credentials removed (part of a local staging folder's name)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", redact(url))[-120:].strip("_") or "out"
