"""WebDataset tar shards as inputs: brace patterns (`data-{000..099}.tar`), local or fsspec URLs, read as a stream.

A shard is a tar file whose members are grouped into samples by key, as WebDataset does: a member's key is its
path up to the first dot of its base name, the rest is the field (`000017.jpg` -> key `000017`, field `jpg`;
`a/b.seg.png` -> key `a/b`, field `seg.png`); consecutive members with one key form one sample. A sample's image is
its first field that names an image format. Samples are read in order from one sequential pass over the shard, so a
shard in an object store is fetched once, never member by member.
"""

from __future__ import annotations

import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator, Optional

from ..errors import VitsegError
from . import storage
from .io import IMAGE_EXTENSIONS

_BRACE = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)$")
MAX_EXPANSION = 1_000_000


def expand_braces(pattern: str) -> list[str]:
    """`data-{000..003}.tar` -> data-000.tar .. data-003.tar (the zero padding kept); `{a,b}` lists; nested and
    several groups expand left to right."""
    match = _BRACE.search(pattern)
    if match is None:
        return [pattern]
    body = match[1]
    span = _RANGE.match(body)
    if span:
        low, high = int(span[1]), int(span[2])
        width = len(span[1]) if span[1].lstrip("-").startswith("0") else 0
        if abs(high - low) >= MAX_EXPANSION:
            raise VitsegError(f"{pattern}: the range {{{body}}} names more than {MAX_EXPANSION} shards")
        step = 1 if high >= low else -1
        choices = [str(n).zfill(width) for n in range(low, high + step, step)]
    elif "," in body:
        choices = body.split(",")
    else:  # not a brace group: kept as written
        return [pattern[:match.end()] + rest for rest in expand_braces(pattern[match.end():])]
    head, tail = pattern[:match.start()], pattern[match.end():]
    return [out for c in choices for out in expand_braces(head + c + tail)]


def is_tar_source(source: str) -> bool:
    """A `.tar` shard or a brace pattern of shards (`.tar`, `.tar.gz`, `.tgz`)."""
    name = source.split("?", 1)[0].lower()
    return name.endswith((".tar", ".tar.gz", ".tgz"))


@dataclass(frozen=True)
class TarShard:
    """One input shard: `url` (a path or URL), `name` (its output name: base name without `.tar`), `size` bytes."""

    url: str
    name: str
    size: int = 0

    @property
    def path(self) -> str:
        return storage.redact(self.url)

    @property
    def rel(self) -> str:
        return self.name

    @property
    def root(self) -> str:
        return storage.redact(self.url.rpartition("/")[0])

    def identity(self, mode: str = "stat") -> dict:
        return {"path": self.url.rsplit("/", 1)[-1], "size": self.size}

    is_video = False
    is_tar = True


def shard_name(url: str) -> str:
    base = url.rstrip("/").rsplit("/", 1)[-1]
    for suffix in (".tar.gz", ".tgz", ".tar"):
        if base.lower().endswith(suffix):
            return base[:-len(suffix)]
    return base


def list_shards(sources: list[str]) -> list[TarShard]:
    """The shards the sources name (brace patterns expanded), each checked to exist; two with one name refused
    (their outputs would collide)."""
    shards: list[TarShard] = []
    seen: dict[str, str] = {}
    for source in sources:
        for url in expand_braces(source):
            try:
                size = _size(url)
            except FileNotFoundError:
                raise VitsegError(f"{storage.redact(url)}: no such tar shard") from None
            name = shard_name(url)
            if name in seen and seen[name] != url:
                raise VitsegError(f"{storage.redact(url)} and {storage.redact(seen[name])}: two shards named {name} "
                                  "would write the same output shard; give them as separate runs with other --out")
            if name not in seen:
                seen[name] = url
                shards.append(TarShard(url, name, size))
    return shards


def _size(url: str) -> int:
    if not storage.is_url(url):
        path = Path(url)
        if not path.is_file():
            raise FileNotFoundError(url)
        return path.stat().st_size
    fs, path = storage.url_to_fs(url)
    try:
        return int(fs.size(path) or 0)
    except FileNotFoundError:
        raise
    except Exception as err:
        raise VitsegError(f"{storage.redact(url)}: cannot look up ({str(err).splitlines()[0][:200]})") from None


def split_member(name: str) -> Optional[tuple[str, str]]:
    """(key, field) of a member name, or None for a name with no field; a leading `./` (`tar cf x.tar ./a.jpg`) is
    not part of the key."""
    while name.startswith("./"):
        name = name[2:]
    head, _, base = name.rpartition("/")
    if "." not in base.lstrip("."):
        return None
    dot = base.index(".", 1 if base.startswith(".") else 0)
    key, field = base[:dot], base[dot + 1:]
    return (f"{head}/{key}" if head else key), field.lower()


def image_field(fields: dict[str, bytes]) -> Optional[str]:
    for field in fields:
        if "." + field.rsplit(".", 1)[-1] in IMAGE_EXTENSIONS:
            return field
    return None


def count_samples(shard: TarShard) -> int:
    """The number of samples of a local shard, from its headers (seeking past the data); 1 for a URL (unknown
    without reading it), for the progress bar only."""
    if storage.is_url(shard.url):
        return 1
    try:
        with tarfile.open(shard.url, "r:*") as tar:
            keys = {parts[0] for m in tar if m.isfile() and (parts := split_member(m.name))}
        return max(1, len(keys))
    except (tarfile.TarError, OSError, EOFError):
        return 1


class _Counting:
    """A read-only file wrapper that counts the bytes read through it."""

    def __init__(self, raw: IO[bytes]):
        self.raw, self.count = raw, 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.count += len(data)
        return data


def iter_samples(url: str) -> Iterator[tuple[str, dict[str, bytes], int]]:
    """(key, {field: bytes}, bytes read from the shard since the previous sample) for each sample, in order. A
    damaged shard raises `VitsegError` naming it after the samples read before the damage."""
    raw = storage.open_read(url)
    counting = _Counting(raw)
    key, fields, reported = None, {}, 0
    try:
        with tarfile.open(fileobj=counting, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                parts = split_member(member.name)
                if parts is None:
                    continue
                if key is not None and parts[0] != key:
                    yield key, fields, counting.count - reported
                    reported, fields = counting.count, {}
                key = parts[0]
                fields[parts[1]] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError) as err:
        raise VitsegError(f"{storage.redact(url)}: damaged tar shard ({str(err).splitlines()[0][:200]})") from None
    finally:
        raw.close()
    if key is not None:
        yield key, fields, counting.count - reported
