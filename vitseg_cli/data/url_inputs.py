"""A run's inputs when they live in an object store or in tar shards: fsspec URLs (a prefix, a glob, a `.txt` list
of URLs) and WebDataset shards (`data-{000..099}.tar`, local or URLs). Local paths go to `data.inputs`.

An object's output name is its key relative to the prefix (or to the glob's fixed part, or to the list's folder),
without extension, as for local files; a tar shard's samples are named `<shard>/<key>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import VitsegError
from . import storage
from .inputs import collect_inputs
from .io import is_image_path
from .tar_shards import is_tar_source, list_shards


@dataclass(frozen=True)
class UrlImage:
    """An image object: `url` to read it by, `rel` its output name, `size` its bytes (as listed)."""

    url: str
    rel: str
    size: int = 0
    source_rel: str = ""  # the key relative to its root, with extension: part of its recorded identity
    root: str = ""  # the prefix (or list's folder) the name is relative to, redacted

    @property
    def path(self) -> str:
        """The URL as shown and recorded: without a `user:password@` (read through `url`)."""
        return storage.redact(self.url)

    def identity(self, mode: str = "stat") -> dict:
        """Its key relative to the root and its size, as listed (objects have no cheap modification time here)."""
        return {"path": self.source_rel, "size": self.size}

    is_video = False
    is_tar = False


def is_scale_source(source: str) -> bool:
    return storage.is_url(source) or is_tar_source(source)


def collect_sources(sources: Sequence[str], out_dir: "str | Path", videos: bool = False, tars: bool = True) -> list:
    """Tar shards (unless not `tars`), URL objects, or (neither named) local files through `collect_inputs`; kinds
    are not mixed."""
    if not tars and any(map(is_tar_source, sources)):
        raise VitsegError(f"{storage.redact(next(filter(is_tar_source, sources)))}: tar shards are predict's input "
                          "only here; give image files, folders or URLs")
    tars = [s for s in sources if is_tar_source(s)]
    urls = [s for s in sources if storage.is_url(s) and not is_tar_source(s)]
    if tars and len(tars) != len(sources):
        raise VitsegError(f"{storage.redact(tars[0])}: tar shards cannot be mixed with other sources in one run")
    if tars:
        return list_shards(list(sources))
    if urls and len(urls) != len(sources):
        raise VitsegError(f"{storage.redact(urls[0])}: URL sources cannot be mixed with local ones in one run")
    if urls:
        return collect_url_inputs(urls)
    return collect_inputs(sources, Path(out_dir), videos=videos)


def _stem(rel: str) -> str:
    head, _, base = rel.rpartition("/")
    base = base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base
    return f"{head}/{base}" if head else base


def _root(source: str) -> str:
    """The folder part of a source: a prefix itself, a list's or a glob's folder."""
    if any(c in source.split("://", 1)[-1] for c in "*?[") or source.lower().endswith(".txt"):
        fixed = source.split("://", 1)[-1]
        cut = min([i for i in (fixed.find(c) for c in "*?[") if i >= 0] or [len(fixed)])
        return source[:len(source) - len(fixed)] + fixed[:cut].rpartition("/")[0]
    return source.rstrip("/")


def _listed(source: str) -> list[tuple[str, str, int]]:
    """(url, name relative to the source's root, size) of the image objects one source names."""
    if any(c in source.split("://", 1)[-1] for c in "*?["):
        fixed = source.split("://", 1)[-1]
        cut = min(i for i in (fixed.find(c) for c in "*?[") if i >= 0)
        root = source[:len(source) - len(fixed)] + fixed[:cut].rpartition("/")[0]
        return [(u, u[len(root):].lstrip("/"), 0) for u in storage.glob(source) if is_image_path(u)]
    if source.lower().endswith(".txt"):
        return _list_file(source)
    found = storage.list_files(source)
    if found:
        return [(storage.join(source, rel), rel, size) for rel, size in sorted(found.items()) if is_image_path(rel)]
    if storage.exists(source):
        return [(source, source.rstrip("/").rsplit("/", 1)[-1], 0)]
    raise VitsegError(f"{storage.redact(source)}: no such object or prefix")


def _list_file(source: str) -> list[tuple[str, str, int]]:
    try:
        lines = storage.read_bytes(source).decode("utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise VitsegError(f"{storage.redact(source)}: cannot read the list of images ({err})") from None
    root = source.rpartition("/")[0]
    out = []
    for line in (t.strip() for t in lines):
        if not line or line.startswith("#"):
            continue
        url = line if storage.is_url(line) else storage.join(root, line)
        rel = url[len(root):].lstrip("/") if url.startswith(root + "/") else url.rsplit("/", 1)[-1]
        out.append((url, rel, 0))
    return out


def collect_url_inputs(sources: Sequence[str]) -> list[UrlImage]:
    """The image objects the URL sources name, each with its output name; two objects with one name refused."""
    seen: dict[str, str] = {}
    inputs = []
    for source in sources:
        root = storage.redact(_root(source))
        for url, rel, size in _listed(source):
            name = _stem(rel)
            if name in seen:
                if seen[name] == url:
                    continue
                raise VitsegError(f"{storage.redact(url)} and {storage.redact(seen[name])} would both be written as "
                                  f"{name}: give them as separate runs with different --out")
            seen[name] = url
            inputs.append(UrlImage(url, name, size, rel, root if url.startswith(_root(source)) else
                                   storage.redact(url.rpartition("/")[0])))
    return inputs
